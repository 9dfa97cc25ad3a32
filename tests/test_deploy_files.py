"""The deployment files build.sh --deploy-dir writes (scripts/deploy_files.py), proven by the platforms' own tools.

- Knative and Cloud Run services: validated against Knative Serving's own CRD schema
  (tests/data/knative-serving-service-v1.23.0.schema.json, the openAPIV3Schema of
  config/core/300-resources/service.yaml at knative-v1.23.0), with unknown fields refused as
  `kubectl apply --validate=strict` refuses them, and Cloud Run's documented fields and bounds.
- SAM template: `sam validate --lint` and cfn-lint, from the SAM CLI scripts/lambda-rie.sh --sam installs.
- OpenWhisk manifest: wskdeploy's documented fields (parsers/yamlparser.go, specification/html/spec_actions.md).

With a container engine (SMX_DOCKER=1), each file is run: the image under docker with the env, port,
command and resource limits the Knative and Cloud Run files declare (the `docker run` is derived from
the file); the SAM template under `sam local start-lambda` with function URL events; the manifest
deployed by `local_endpoint.py --manifest`. Every example sample must answer as recorded.
"""

import copy
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from support import ROOT, free_port
from samples import SampleRequest, check_expected, example_model_dirs, load_samples, target

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import deploy_files  # noqa: E402

DEPLOY_FILES = os.path.join(ROOT, "scripts", "deploy_files.py")
CATALOGUE = os.path.join(ROOT, "examples", "catalogue.json")
KNATIVE_SCHEMA = os.path.join(ROOT, "tests", "data", "knative-serving-service-v1.23.0.schema.json")
BUILD_SH = os.path.join(ROOT, "build.sh")
LOCAL_ENDPOINT = os.path.join(ROOT, "local_endpoint.py")
FILE_NAMES = ["knative-service.yaml", "cloudrun-service.yaml", "lambda-template.yaml", "openwhisk-manifest.yaml",
              "NEXT-STEPS.txt"]
DIGEST = "sha256:" + "0123abcd" * 8
# Example models and catalogue models with large limits: every file kind, every bound.
MODELS = [os.path.basename(directory) for directory in example_model_dirs()] + [
    "max-image-resolution-enhancer", "max-object-detector", "max-ocr"]


def write_files(out: str, model: str, image: str, *extra: str, catalogue: str = CATALOGUE,
                python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, DEPLOY_FILES, "write", "--catalogue", catalogue, "--out", out, "--model", model,
                           "--image", image] + list(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)


def catalogue_entry(model: str) -> Dict[str, Any]:
    with open(CATALOGUE, encoding="utf-8") as catalogue:
        return next(entry for entry in json.load(catalogue)["models"] if entry["name"] == model)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: Any) -> str:
    """Every model's files, for an image on Docker Hub pinned by digest."""
    out = str(tmp_path_factory.mktemp("deploy"))
    for model in MODELS:
        result = write_files(out, model, "me/%s:1.0" % model, "--digest", DIGEST, "--max-instances", "7")
        assert result.returncode == 0, result.stderr
    return out


def load_yaml(path: str) -> Any:
    yaml = pytest.importorskip("yaml")
    with open(path, encoding="utf-8") as stream:
        return yaml.safe_load(stream)


# --------------------------------------------------------------------------- the writer itself

def test_every_file_is_written_and_reported(generated: str) -> None:
    for model in MODELS:
        assert sorted(os.listdir(os.path.join(generated, model))) == sorted(FILE_NAMES)
    assert sorted(os.listdir(generated)) == sorted(MODELS)  # no staging directory left behind


def test_a_model_missing_from_the_catalogue_is_an_error_and_nothing_is_written(tmp_path: Any) -> None:
    result = write_files(str(tmp_path), "max-not-listed", "me/max-not-listed:1")
    assert result.returncode == 2
    assert result.stderr.startswith("error: max-not-listed is not in ") and "memory_mb" in result.stderr
    assert os.listdir(str(tmp_path)) == []


def test_bad_limits_in_the_catalogue_are_an_error(tmp_path: Any) -> None:
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(json.dumps({"models": [{"name": "max-a", "memory_mb": "lots", "timeout_ms": 1000}]}))
    result = write_files(str(tmp_path / "out"), "max-a", "me/max-a:1", catalogue=str(catalogue))
    assert result.returncode == 2 and "positive whole numbers" in result.stderr
    assert not (tmp_path / "out" / "max-a").exists()


def test_values_beyond_a_platforms_bounds_are_warned_naming_the_bound(tmp_path: Any) -> None:
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(json.dumps({"models": [{"name": "max-huge", "memory_mb": 40000, "timeout_ms": 4000000}]}))
    result = write_files(str(tmp_path), "max-huge", "me/max-huge:1", catalogue=str(catalogue))
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.splitlines()
    for fragment in ("lambda: memory 40000 MB is above the platform's maximum 10240 MB",
                     "lambda: timeout 4000 s is above the platform's maximum 900 s",
                     "cloudrun: memory 40000 MiB is above the platform's maximum 32768 MiB",
                     "cloudrun: timeout 4000 s is above the platform's maximum 3600 s",
                     "knative: timeout 4000 s is above the platform's maximum 600 s",
                     "codeengine: timeout 4000 s is above the platform's maximum 600 s",
                     "openwhisk: memory 40000 MB is above a stock deployment's maximum 512 MB",
                     "openwhisk: timeout 600000 ms is above a stock deployment's maximum 300000 ms"):
        assert any(fragment in line for line in warnings), (fragment, warnings)
    assert all(line.startswith("warning: max-huge: ") for line in warnings)


@pytest.mark.parametrize("image, platforms", [
    ("localhost:5000/me/max-ocr:1", ["every platform: localhost:5000 is a loopback registry"]),
    ("quay.io/me/max-ocr:1", ["cloudrun: Cloud Run pulls from", "lambda: Lambda runs images from Amazon ECR only",
                              "openwhisk: a stock OpenWhisk pulls docker actions from Docker Hub"]),
    ("me/max-ocr:1", ["lambda: Lambda runs images from Amazon ECR only"]),
    ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/max-ocr:1", ["cloudrun: Cloud Run pulls from", "openwhisk:"]),
    ("europe-docker.pkg.dev/p/r/max-ocr:1", ["lambda:", "openwhisk:"]),
])
def test_an_image_a_platform_cannot_pull_is_warned(tmp_path: Any, image: str, platforms: List[str]) -> None:
    result = write_files(str(tmp_path), "max-ocr", image)
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.splitlines()
    for fragment in platforms:
        assert any(fragment in line for line in warnings), (fragment, warnings)
    assert len(warnings) == len(platforms), warnings


def test_files_are_replaced_whole_or_left_as_they_were(tmp_path: Any, monkeypatch: Any) -> None:
    out = str(tmp_path)
    assert write_files(out, "max-ocr", "me/max-ocr:1").returncode == 0
    target_dir = os.path.join(out, "max-ocr")
    before = {name: open(os.path.join(target_dir, name)).read() for name in FILE_NAMES}
    files = [(name, "new " + name) for name in FILE_NAMES]
    real_open = open
    written = []

    def failing_open(path: str, *args: Any, **kwargs: Any) -> Any:
        written.append(path)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(deploy_files, "open", failing_open, raising=False)
    with pytest.raises(OSError):
        deploy_files.write_atomically(target_dir, files)
    monkeypatch.undo()
    assert {name: open(os.path.join(target_dir, name)).read() for name in FILE_NAMES} == before
    assert os.listdir(out) == ["max-ocr"]
    deploy_files.write_atomically(target_dir, files)
    assert {name: open(os.path.join(target_dir, name)).read() for name in FILE_NAMES} == dict(files)
    assert os.listdir(out) == ["max-ocr"]


def test_the_image_is_pinned_by_digest_when_known(generated: str, tmp_path: Any) -> None:
    knative = open(os.path.join(generated, "max-ocr", "knative-service.yaml")).read()
    assert '"me/max-ocr@%s"' % DIGEST in knative
    assert write_files(str(tmp_path), "max-ocr", "me/max-ocr:1").returncode == 0
    assert '"me/max-ocr:1"' in open(str(tmp_path / "max-ocr" / "knative-service.yaml")).read()
    bad = write_files(str(tmp_path), "max-ocr", "me/max-ocr:1", "--digest", "sha256:xyz")
    assert bad.returncode == 2 and "--digest must be" in bad.stderr


@pytest.mark.parametrize("value", ["a\nb: c", "#x", "yes", "true", "1", "- x", "{x}", "k: v", "\u00e9\"'\\"])
def test_the_yaml_writer_keeps_every_string_a_string(value: str) -> None:
    yaml = pytest.importorskip("yaml")
    document = {"s": value, value: [value, {"n": 1, "b": True, value: value}], "e": {}, "l": []}
    assert yaml.safe_load(deploy_files.yaml_document(["a comment"], document)) == document


# ------------------------------------------------------------------ Knative: its own CRD schema

def strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused, as the API server's strict field validation refuses them
    (it prunes what the schema does not declare unless x-kubernetes-preserve-unknown-fields is set)."""
    if isinstance(schema, dict):
        schema = dict((key, strict(value)) for key, value in schema.items())
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields") \
                and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def knative_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    with open(KNATIVE_SCHEMA, encoding="utf-8") as schema_file:
        schema = strict(json.load(schema_file))
    return jsonschema.Draft4Validator(schema)


def schema_errors(validator: Any, document: Any) -> List[str]:
    return ["%s: %s" % ("/".join(str(part) for part in error.absolute_path), error.message)
            for error in validator.iter_errors(document)]


@pytest.mark.parametrize("name", ["knative-service.yaml", "cloudrun-service.yaml"])
def test_services_are_valid_against_knative_servings_crd_schema(generated: str, knative_validator: Any,
                                                                name: str) -> None:
    for model in MODELS:
        service = load_yaml(os.path.join(generated, model, name))
        assert schema_errors(knative_validator, service) == [], (model, name)
        assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
        assert re.match(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", service["metadata"]["name"])


def test_the_strict_schema_refuses_what_the_cluster_would(generated: str, knative_validator: Any) -> None:
    """The check bites: a misspelt field, a string where a number goes, a bad quantity."""
    service = load_yaml(os.path.join(generated, "max-ocr", "knative-service.yaml"))
    for path, value in ((["spec", "template", "spec", "containerConcurency"], 1),
                        (["spec", "template", "spec", "timeoutSeconds"], "120"),
                        (["spec", "template", "spec", "containers", 0, "resources", "limits", "memory"], "2 GB")):
        broken = copy.deepcopy(service)
        node = broken
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        assert schema_errors(knative_validator, broken), path


def test_knative_service_is_set_for_horizontal_scale(generated: str) -> None:
    for model in MODELS:
        entry = catalogue_entry(model)
        template = load_yaml(os.path.join(generated, model, "knative-service.yaml"))["spec"]["template"]
        assert template["metadata"]["annotations"] == {
            "autoscaling.knative.dev/min-scale": "0", "autoscaling.knative.dev/max-scale": "7",
            "autoscaling.knative.dev/metric": "concurrency", "autoscaling.knative.dev/target": "1"}
        spec = template["spec"]
        assert spec["containerConcurrency"] == 1
        assert spec["timeoutSeconds"] == min(-(-entry["timeout_ms"] // 1000), 600)
        (container,) = spec["containers"]
        assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
        memory = "%dMi" % entry["memory_mb"]
        assert container["resources"] == {"requests": {"cpu": "1", "memory": memory},
                                          "limits": {"cpu": "1", "memory": memory}}
        # The runtime opens the port once the model has loaded: a TCP probe is the readiness check.
        assert container["readinessProbe"] == {"tcpSocket": {"port": 8080}}
        assert "env" not in container and "command" not in container and "args" not in container


# ------------------------------------------------------------ Cloud Run: its documented fields

# Cloud Run's service YAML reference (cloud.google.com/run/docs/reference/yaml/v1): the revision
# annotations it documents, and the container fields it accepts.
CLOUDRUN_REVISION_ANNOTATIONS = {
    "autoscaling.knative.dev/minScale", "autoscaling.knative.dev/maxScale", "run.googleapis.com/cpu-throttling",
    "run.googleapis.com/startup-cpu-boost", "run.googleapis.com/sessionAffinity",
    "run.googleapis.com/cloudsql-instances", "run.googleapis.com/execution-environment",
    "run.googleapis.com/vpc-access-connector", "run.googleapis.com/vpc-access-egress",
    "run.googleapis.com/network-interfaces", "run.googleapis.com/encryption-key",
    "run.googleapis.com/container-dependencies"}
CLOUDRUN_CONTAINER_FIELDS = {"name", "image", "command", "args", "env", "ports", "resources", "volumeMounts",
                             "startupProbe", "livenessProbe", "workingDir"}
# Cloud Run's CPU and memory table: CPUs -> (least, most) memory in MiB.
CLOUDRUN_CPU_MEMORY = {"1": (128, 4096), "2": (128, 8192), "4": (2048, 16384), "6": (4096, 24576),
                       "8": (4096, 32768)}


def mebibytes(quantity: str) -> int:
    number, unit = re.match(r"^([0-9]+)(Mi|Gi)$", quantity).groups()
    return int(number) * (1024 if unit == "Gi" else 1)


def test_cloudrun_service_uses_documented_fields_within_their_bounds(generated: str) -> None:
    for model in MODELS:
        entry = catalogue_entry(model)
        service = load_yaml(os.path.join(generated, model, "cloudrun-service.yaml"))
        assert set(service["metadata"]) == {"name"} and len(service["metadata"]["name"]) <= 49
        template = service["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert set(annotations) <= CLOUDRUN_REVISION_ANNOTATIONS
        assert annotations == {"autoscaling.knative.dev/minScale": "0", "autoscaling.knative.dev/maxScale": "7",
                               "run.googleapis.com/startup-cpu-boost": "true",
                               "run.googleapis.com/execution-environment": "gen2"}
        spec = template["spec"]
        assert set(spec) == {"containerConcurrency", "timeoutSeconds", "containers"}
        assert spec["containerConcurrency"] == 1  # Cloud Run's default is 80
        assert spec["timeoutSeconds"] == min(-(-entry["timeout_ms"] // 1000), 3600)
        (container,) = spec["containers"]
        assert set(container) <= CLOUDRUN_CONTAINER_FIELDS
        assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
        limits = container["resources"]["limits"]
        assert set(container["resources"]) == {"limits"} and set(limits) == {"cpu", "memory"}
        least, most = CLOUDRUN_CPU_MEMORY[limits["cpu"]]
        memory = mebibytes(limits["memory"])
        # The second generation needs at least 512 MiB.
        assert max(least, 512) <= memory <= most and memory == max(entry["memory_mb"], 512)
        probe = container["startupProbe"]
        assert probe["tcpSocket"] == {"port": 8080}
        # A startup probe may run for 240 s at most.
        assert probe["periodSeconds"] * probe["failureThreshold"] <= 240
        assert probe["timeoutSeconds"] <= probe["periodSeconds"]


# ------------------------------------------------------------------- SAM: sam validate, cfn-lint

@pytest.fixture(scope="module")
def sam() -> str:
    """The `sam` command of AWS SAM CLI, in a virtualenv of its own (scripts/lambda-rie.sh --sam)."""
    if sys.version_info < (3, 7):
        pytest.skip("the SAM CLI checks run on the current era (its installer needs Python 3.9+)")
    result = subprocess.run([os.path.join(ROOT, "scripts", "lambda-rie.sh"), "--sam"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=900)
    if result.returncode != 0:
        pytest.fail("scripts/lambda-rie.sh --sam could not install the SAM CLI:\n" + result.stderr[-3000:])
    return result.stdout.strip()


def sam_tool(sam: str, name: str) -> str:
    return os.path.join(os.path.dirname(sam), name)


SAM_ENV = dict(os.environ, SAM_CLI_TELEMETRY="0", AWS_DEFAULT_REGION="us-east-1")


def run_tool(command: List[str], cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=300, env=SAM_ENV, cwd=cwd)


def test_sam_templates_pass_sam_validate_lint_and_cfn_lint(generated: str, sam: str) -> None:
    templates = [os.path.join(generated, model, "lambda-template.yaml") for model in MODELS]
    linted = run_tool([sam_tool(sam, "cfn-lint")] + templates)
    assert linted.returncode == 0, linted.stdout
    for template in templates:
        validated = run_tool([sam, "validate", "--lint", "--template", template])
        assert validated.returncode == 0 and "is a valid SAM Template" in validated.stdout, validated.stdout


@pytest.mark.parametrize("find, replace", [
    ('PackageType: "Image"', 'PackageType: "Images"'),
    ("AuthType:", "AuthMode:"),
])
def test_the_sam_linters_refuse_a_broken_template(generated: str, sam: str, tmp_path: Any, find: str,
                                                  replace: str) -> None:
    """The check bites. (Neither tool checks MemorySize or Timeout against Lambda's maxima: the
    writer does, see test_values_beyond_a_platforms_bounds_are_warned_naming_the_bound.)"""
    text = open(os.path.join(generated, "max-ocr", "lambda-template.yaml")).read()
    assert find in text
    broken = tmp_path / "template.yaml"
    broken.write_text(text.replace(find, replace))
    assert run_tool([sam_tool(sam, "cfn-lint"), str(broken)]).returncode != 0
    assert run_tool([sam, "validate", "--lint", "--template", str(broken)]).returncode != 0


def test_sam_template_declares_an_image_function_with_a_function_url(generated: str) -> None:
    for model in MODELS:
        entry = catalogue_entry(model)
        template = load_yaml(os.path.join(generated, model, "lambda-template.yaml"))
        assert template["Transform"] == "AWS::Serverless-2016-10-31"
        parameters = template["Parameters"]
        assert parameters["ImageUri"]["Default"] == "me/%s@%s" % (model, DIGEST)
        assert parameters["FunctionUrlAuthType"]["Default"] == "AWS_IAM"
        assert set(parameters["FunctionUrlAuthType"]["AllowedValues"]) == {"AWS_IAM", "NONE"}
        properties = template["Resources"]["Model"]["Properties"]
        assert template["Resources"]["Model"]["Type"] == "AWS::Serverless::Function"
        assert properties["PackageType"] == "Image" and properties["ImageUri"] == {"Ref": "ImageUri"}
        assert properties["MemorySize"] == min(max(entry["memory_mb"], 128), 10240)
        assert properties["Timeout"] == min(-(-entry["timeout_ms"] // 1000), 900)
        assert properties["FunctionUrlConfig"] == {"AuthType": {"Ref": "FunctionUrlAuthType"}}
        assert template["Outputs"]["FunctionUrl"]["Value"] == {"Fn::GetAtt": ["ModelUrl", "FunctionUrl"]}


def test_the_sam_deploy_line_is_accepted_by_sam_cli(generated: str, sam: str) -> None:
    """Offline: the line in NEXT-STEPS.txt passes the SAM CLI's own option checks (an image function
    needs an image repository) and stops only where AWS is first called, for want of credentials."""
    steps = open(os.path.join(generated, "max-ocr", "NEXT-STEPS.txt")).read().splitlines()
    line = next(line for line in steps if line.startswith("sam deploy "))
    line = line.replace("$AWS_ACCOUNT_ID", "123456789012").replace("$AWS_REGION", "eu-west-1")
    environment = dict(SAM_ENV, AWS_EC2_METADATA_DISABLED="true", AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                       AWS_CONFIG_FILE=os.devnull)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        environment.pop(name, None)
    result = subprocess.run([sam] + line.split()[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=300, env=environment)
    assert result.returncode != 0 and "Unable to locate credentials" in result.stdout, result.stdout[-2000:]
    assert "Missing option" not in result.stdout


# -------------------------------------------------------------------- OpenWhisk: wskdeploy's fields

# parsers/yamlparser.go (apache/openwhisk-wskdeploy): the keys of Action and of Limits it reads;
# only timeout, memorySize and logSize reach the platform (composeActionLimits).
WSKDEPLOY_ACTION_KEYS = {"location", "version", "function", "code", "runtime", "namespace", "credential",
                         "exposedUrl", "web-export", "web", "main", "docker", "native", "conductor", "limits",
                         "inputs", "outputs", "description", "annotations", "include", "exclude"}
WSKDEPLOY_APPLIED_LIMITS = {"timeout", "memorySize", "logSize"}


def test_openwhisk_manifest_uses_wskdeploys_fields(generated: str) -> None:
    for model in MODELS:
        entry = catalogue_entry(model)
        path = os.path.join(generated, model, "openwhisk-manifest.yaml")
        manifest = load_yaml(path)
        assert list(manifest) == ["packages"] and list(manifest["packages"]) == ["default"]
        action = manifest["packages"]["default"]["actions"][model]
        assert set(action) <= WSKDEPLOY_ACTION_KEYS
        assert action["docker"] == "me/%s@%s" % (model, DIGEST)
        assert action["web"] == "raw"  # webaction.go: web-export, raw-http and final set
        assert set(action["limits"]) <= WSKDEPLOY_APPLIED_LIMITS
        # wskdeploy's documented ranges; the header says what a stock deployment needs raised.
        assert action["limits"] == {"memorySize": max(entry["memory_mb"], 128), "timeout": entry["timeout_ms"]}
        assert 128 <= action["limits"]["memorySize"] <= 2048 and 100 <= action["limits"]["timeout"] <= 600000
        text = open(path).read()
        assert ("operator must raise whisk.memory.max" in text) == (entry["memory_mb"] > 512)


def test_next_steps_deploy_each_file_with_its_platforms_tool(generated: str) -> None:
    for model in MODELS:
        directory = os.path.join(generated, model)
        steps = open(os.path.join(directory, "NEXT-STEPS.txt")).read().splitlines()
        expected_prefixes = [
            "kubectl apply -f %s/knative-service.yaml" % directory,
            "gcloud run services replace %s/cloudrun-service.yaml --region $REGION" % directory,
            "ibmcloud ce application create --name ",
            "aws ecr create-repository --repository-name %s" % model,
            "docker push $AWS_ACCOUNT_ID.dkr.ecr.$AWS_REGION.amazonaws.com/%s:1.0" % model,
            "sam deploy --template-file %s/lambda-template.yaml" % directory,
            "sam deploy --template-file %s/lambda-template.yaml --stack-name %s --region $AWS_REGION "
            "--capabilities CAPABILITY_IAM --image-repository $AWS_ACCOUNT_ID.dkr.ecr.$AWS_REGION.amazonaws.com/%s "
            "--parameter-overrides ImageUri=$AWS_ACCOUNT_ID.dkr.ecr.$AWS_REGION.amazonaws.com/%s:1.0 "
            "FunctionUrlAuthType=AWS_IAM" % (directory, model, model, model),
            "wskdeploy -m %s/openwhisk-manifest.yaml" % directory,
            "wsk action update %s --docker me/%s@%s --web raw" % (model, model, DIGEST),
        ]
        for prefix in expected_prefixes:
            assert any(line.startswith(prefix) for line in steps), (model, prefix)
        codeengine = next(line for line in steps if line.startswith("ibmcloud ce application create")).split()
        for option, value in (("--concurrency", "1"), ("--min-scale", "0"), ("--max-scale", "7"), ("--port", "8080")):
            assert codeengine[codeengine.index(option) + 1] == value
        assert next(line for line in steps if line.startswith("wsk action update")).endswith("--concurrency 1")


def test_the_writer_runs_on_the_oldest_python(tmp_path: Any) -> None:
    """It runs on the user's machine, whatever its python3: the oldest era included."""
    result = write_files(str(tmp_path), "max-ocr", "me/max-ocr:1", python=sys.executable)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(str(tmp_path / "max-ocr"))) == sorted(FILE_NAMES)


# ------------------------------------------------------------------------------ build.sh options

def run_build(*args: str, env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    environment = dict((key, value) for key, value in os.environ.items()
                       if key not in ("MODELS", "USERNAME", "REGISTRY", "TAG", "DEPLOY_DIR", "MAX_INSTANCES",
                                      "PUSH", "DRY_RUN", "PLATFORM", "PLATFORMS", "ENGINE", "BASE_REPO",
                                      "BASE_IMAGE_TEMPLATE", "FAIL_FAST"))
    environment.update(env or {})
    return subprocess.run([BUILD_SH] + list(args), env=environment, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300)


def test_dry_run_shows_every_file_it_would_write_and_writes_none(tmp_path: Any) -> None:
    out = tmp_path / "deploy"
    result = run_build("--dry-run", "--deploy-dir", str(out), "--max-instances", "4",
                       env={"MODELS": "max-object-detector max-example-digit-classifier", "USERNAME": "me",
                            "TAG": "t1"})
    assert result.returncode == 0, result.stderr
    assert not out.exists()
    for model in ("max-object-detector", "max-example-digit-classifier"):
        for name in FILE_NAMES:
            assert "would write %s:\n" % os.path.join(str(out), model, name) in result.stdout
    assert '        autoscaling.knative.dev/max-scale: "4"' in result.stdout
    assert "Next: deploy with the files" in result.stdout
    assert "  %s/max-object-detector/" % out in result.stdout
    # Docker Hub images: Lambda needs ECR, and the example's 256 MB is raised to Cloud Run's gen2 minimum.
    assert "warning: max-object-detector: lambda: Lambda runs images from Amazon ECR only" in result.stderr
    assert "cloudrun: memory 256 MiB is below the platform's minimum 512 MiB" in result.stderr


def test_deploy_dir_refuses_a_model_missing_from_the_catalogue_before_building(tmp_path: Any) -> None:
    result = run_build("--deploy-dir", str(tmp_path / "deploy"),
                       env={"MODELS": "max-ocr max-not-listed", "USERNAME": "me", "DOCKER_HOST": "unix:///nonexistent"})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: max-not-listed is not in ") and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "deploy").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--max-instances", "0"], "MAX_INSTANCES must be a whole number"),
    (["--max-instances", "1e3"], "MAX_INSTANCES must be a whole number"),
    (["--deploy-dir", "-x"], "starts with '-'"),
])
def test_deploy_options_refuse_bad_values(args: List[str], fragment: str) -> None:
    result = run_build("--dry-run", *args, env={"MODELS": "max-ocr", "USERNAME": "me"})
    assert result.returncode == 2 and fragment in result.stderr, result.stderr


def test_deploy_dir_that_is_a_file_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "file"
    path.write_text("")
    result = run_build("--dry-run", "--deploy-dir", str(path), env={"MODELS": "max-ocr", "USERNAME": "me"})
    assert result.returncode == 2 and "exists and is not a directory" in result.stderr


def test_printed_openwhisk_command_above_stock_limits_says_what_to_raise() -> None:
    result = run_build("--dry-run", "--platform", "openwhisk",
                       env={"MODELS": "max-image-resolution-enhancer max-ocr", "USERNAME": "me", "TAG": "t1"})
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    enhancer = lines.index(next(line for line in lines if line.startswith("wsk action create max-image-resolution")))
    assert lines[enhancer + 1].startswith("# above a stock deployment's -m 512 -t 300000: the operator must raise")
    ocr = lines.index(next(line for line in lines if line.startswith("wsk action create max-ocr")))
    assert not any(line.startswith("#") for line in lines[ocr + 1:])


# ------------------------------------------------------------------- local_endpoint.py --manifest

def endpoint_error(manifest: str, tmp_path: Any) -> str:
    path = tmp_path / "manifest.yaml"
    path.write_text(manifest)
    result = subprocess.run([sys.executable, LOCAL_ENDPOINT, "--manifest", str(path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert result.returncode == 2, result
    return result.stderr


@pytest.mark.parametrize("manifest, fragment", [
    ("project: {}\n", "declares no packages"),
    ("packages: {p: {actions: {}}}\n", "declares no actions"),
    ("packages: {default: {actions: {a: {function: a.py, web: raw}}}}\n", "docker actions only"),
    ("packages: {default: {actions: {a: {docker: me/a, web: no}}}}\n", "is not a web action (web: false)"),
    ("packages: {default: {actions: {a: {docker: me/a}}}}\n", "is not a web action"),
    ("packages: {default: {actions: {a: {docker: me/a, annotations: }}}}\n", "is not a web action (web: no)"),
    ("packages: {default: {actions: {a: {docker: me/a, web: raw, limits: {memorySize: 4096}}}}}\n",
     "limits.memorySize must be a whole number of MB from 128 to 2048"),
    ("packages: {default: {actions: {a: {docker: me/a, web: raw, limits: {timeout: '1000'}}}}}\n",
     "limits.timeout must be"),
    ("packages: [\n", "cannot read the manifest"),
])
def test_endpoint_refuses_a_manifest_it_cannot_deploy(manifest: str, fragment: str, tmp_path: Any) -> None:
    pytest.importorskip("yaml")
    stderr = endpoint_error(manifest, tmp_path)
    assert stderr.startswith("local_endpoint.py: error: ") and fragment in stderr, stderr


# ================================================================ with a real container engine

from test_build import base_images, docker, registry, wait_for_http  # noqa: E402,F401

DEPLOY_USERNAME = "smx-deploy"
DEPLOY_TAG = "deploy-test"
EXAMPLES = [os.path.basename(directory) for directory in example_model_dirs()]
# SAM layers its emulator onto the image with a RUN step as the image's USER; this example's is not
# root, so SAM cannot (Lambda itself can: it runs any image as its own user).
NONROOT_MODEL = "max-example-text-sentiment"


@pytest.fixture(scope="module")
def deployed(registry: str, base_images: Dict[str, str], tmp_path_factory: Any) -> Iterator[Tuple[str, Dict[str, str]]]:  # noqa: F811
    """build.sh over the example models, pushing to the loopback registry, with --deploy-dir: the
    directory of the files and each model's pushed image."""
    out = str(tmp_path_factory.mktemp("deployed") / "deploy")
    result = run_build("--deploy-dir", out, "--max-instances", "3",
                       env={"MODELS": " ".join(EXAMPLES), "USERNAME": DEPLOY_USERNAME, "REGISTRY": registry,
                            "TAG": DEPLOY_TAG}, cwd=ROOT)
    images = dict((model, "%s/%s/%s:%s" % (registry, DEPLOY_USERNAME, model, DEPLOY_TAG)) for model in EXAMPLES)
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        # A loopback registry: every platform is told it cannot pull from there.
        assert "every platform: %s is a loopback registry" % registry in result.stderr
        yield out, images
    finally:
        image_ids = docker("image", "inspect", "--format", "{{.Id}}", *images.values(), check=False).split()
        docker("rmi", "--force", *image_ids or list(images.values()), check=False)


def test_the_files_pin_the_pushed_image_by_its_digest(deployed: Tuple[str, Dict[str, str]]) -> None:
    out, images = deployed
    for model, image in images.items():
        repository = image.rsplit(":", 1)[0]
        digests = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", image))
        (pinned,) = [entry for entry in digests if entry.split("@", 1)[0] == repository]
        service = load_yaml(os.path.join(out, model, "knative-service.yaml"))
        assert service["spec"]["template"]["spec"]["containers"][0]["image"] == pinned
        manifest = load_yaml(os.path.join(out, model, "openwhisk-manifest.yaml"))
        assert manifest["packages"]["default"]["actions"][model]["docker"] == pinned


def docker_memory(quantity: str) -> str:
    number, unit = re.match(r"^([0-9]+)(Mi|Gi)$", quantity).groups()
    return "%dm" % (int(number) * (1024 if unit == "Gi" else 1))


def docker_run_of(service: Dict[str, Any]) -> Tuple[List[str], int]:
    """`docker run` arguments that start the service's container as Knative (and Cloud Run) would: its
    port in PORT, the K_* variables the platform sets, its env, command, args and resource limits."""
    name = service["metadata"]["name"]
    (container,) = service["spec"]["template"]["spec"]["containers"]
    (port,) = [entry["containerPort"] for entry in container["ports"]]
    variables = [("PORT", str(port)), ("K_SERVICE", name), ("K_CONFIGURATION", name), ("K_REVISION", name + "-00001")]
    variables += [(entry["name"], entry["value"]) for entry in container.get("env", [])]
    limits = container["resources"]["limits"]
    arguments = ["run", "--detach", "--publish", "127.0.0.1::%d" % port, "--memory", docker_memory(limits["memory"]),
                 "--memory-swap", docker_memory(limits["memory"]), "--cpus", limits["cpu"]]
    for variable, value in variables:
        arguments += ["--env", "%s=%s" % (variable, value)]
    command = container.get("command") or []
    if command:
        arguments += ["--entrypoint", command[0]]
    arguments.append(container["image"])
    return arguments + command[1:] + container.get("args", []), port


def probe_passes(container_id: str, probe: Dict[str, Any]) -> bool:
    """The file's TCP probe, from inside the container's network namespace as the kubelet's."""
    check = ("import socket, sys\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=1).close()\n"
             "except OSError:\n    sys.exit(1)\n" % probe["tcpSocket"]["port"])
    return subprocess.run(["docker", "exec", container_id, "python", "-c", check], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=60).returncode == 0


def send(port: int, sample: SampleRequest, prefix: str = "", timeout: float = 120) -> Tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(sample.method, prefix + target(sample), body=sample.body or None, headers=sample.headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("name", ["knative-service.yaml", "cloudrun-service.yaml"])
def test_each_service_file_runs_as_declared_and_every_sample_answers(
        deployed: Tuple[str, Dict[str, str]], name: str) -> None:
    out, _ = deployed
    for model in EXAMPLES:
        service = load_yaml(os.path.join(out, model, name))
        (container,) = service["spec"]["template"]["spec"]["containers"]
        probe = container.get("readinessProbe") or container["startupProbe"]
        arguments, port = docker_run_of(service)
        container_id = docker(*arguments).strip()
        try:
            inspected = json.loads(docker("inspect", container_id))[0]["HostConfig"]
            assert inspected["Memory"] == int(docker_memory(container["resources"]["limits"]["memory"])[:-1]) << 20
            assert inspected["NanoCpus"] == int(float(container["resources"]["limits"]["cpu"]) * 1e9)
            deadline = time.time() + probe.get("periodSeconds", 1) * probe.get("failureThreshold", 120)
            while not probe_passes(container_id, probe):
                assert time.time() < deadline, docker("logs", container_id, check=False)
                time.sleep(0.5)
            published = int(docker("port", container_id, "%d/tcp" % port).split()[0].rsplit(":", 1)[1])
            wait_for_http(container_id, published, "/model/metadata")
            timeout = service["spec"]["template"]["spec"]["timeoutSeconds"]
            for sample in load_samples(os.path.join(ROOT, "examples", model)):
                check_expected(sample, *send(published, sample, timeout=timeout))
            logs = subprocess.run(["docker", "logs", container_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True, timeout=60)
            assert "serving http (K_SERVICE is set)" in logs.stderr.splitlines()[0]
        finally:
            docker("rm", "--force", container_id, check=False)


# ----------------------------------------------------------------- SAM: sam local start-lambda

@pytest.fixture(scope="module")
def sam_functions(sam: str, deployed: Tuple[str, Dict[str, str]]) -> Iterator[Dict[str, int]]:
    """Per model: `sam local start-lambda` serving the generated template, the built image passed as the
    ImageUri parameter (as NEXT-STEPS.txt passes the ECR copy), with a warm container. SAM runs only
    local images: it takes any localhost or 127.0.0.1 reference for ECR, so the image gets a local name."""
    out, pushed = deployed
    images = dict((model, "%s/%s:%s" % (DEPLOY_USERNAME, model, DEPLOY_TAG)) for model in EXAMPLES
                  if model != NONROOT_MODEL)
    processes = {}  # type: Dict[str, Tuple[subprocess.Popen, str]]
    ports = {}
    try:
        for model in images:
            docker("tag", pushed[model], images[model])
            port = free_port()
            log_path = os.path.join(out, model + "-sam.log")
            with open(log_path, "wb") as log:
                processes[model] = (subprocess.Popen(
                    [sam, "local", "start-lambda", "--template", os.path.join(out, model, "lambda-template.yaml"),
                     "--parameter-overrides", "ImageUri=" + images[model], "--port", str(port),
                     "--host", "127.0.0.1", "--skip-pull-image", "--warm-containers", "EAGER"],
                    cwd=out, stdout=log, stderr=subprocess.STDOUT, env=SAM_ENV), log_path)
            ports[model] = port
        deadline = time.time() + 300
        for model, port in ports.items():
            while True:
                try:
                    status, _ = invoke_function(port, {"warm-up": True}, timeout=30)
                    if status == 200:
                        break
                except (OSError, http.client.HTTPException):
                    pass
                process, log_path = processes[model]
                if process.poll() is not None or time.time() > deadline:
                    with open(log_path, encoding="utf-8", errors="replace") as log:
                        raise AssertionError("sam local start-lambda did not serve %s:\n%s" % (model, log.read()[-3000:]))
                time.sleep(1)
        yield ports
    finally:
        for process, _ in processes.values():
            process.terminate()  # SAM removes its warm containers as it stops
        for process, _ in processes.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        docker("rmi", *list(images.values()) + [image.rsplit(":", 1)[0] + ":rapid-x86_64" for image in images.values()],
               check=False)


def invoke_function(port: int, event: Any, timeout: float = 120) -> Tuple[int, bytes]:
    """The Lambda Invoke API that sam local start-lambda serves, for the template's function Model."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/2015-03-31/functions/Model/invocations", body=json.dumps(event).encode("utf-8"))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_sam_runs_the_template_and_every_sample_answers_through_a_function_url_event(
        sam_functions: Dict[str, int]) -> None:
    from lambda_events import function_url, header, http_response
    checked = 0
    for model, port in sam_functions.items():
        for sample in load_samples(os.path.join(ROOT, "examples", model)):
            event = function_url(sample.method, sample.path, sample.query, list(sample.headers.items()), sample.body)
            status, body = invoke_function(port, event)
            assert status == 200, (model, sample.name, body[:500])
            status, headers, data = http_response(json.loads(body.decode("utf-8")))
            check_expected(sample, status, header(headers, "Content-Type"), data)
            checked += 1
    assert checked >= 3 * len(sam_functions)


# ------------------------------------------------------- OpenWhisk: local_endpoint.py --manifest

@pytest.fixture(scope="module")
def manifest_endpoint(deployed: Tuple[str, Dict[str, str]]) -> Iterator[Tuple[int, List[str]]]:
    """local_endpoint.py deploying every example's manifest (one endpoint per manifest, as wskdeploy
    deploys one manifest at a time): the ports and everything it printed."""
    out, _ = deployed
    pytest.importorskip("yaml")
    started = []  # type: List[Tuple[subprocess.Popen, List[str], threading.Thread]]
    ports = {}
    try:
        for model in EXAMPLES:
            port = free_port()
            process = subprocess.Popen([sys.executable, LOCAL_ENDPOINT, "--manifest",
                                        os.path.join(out, model, "openwhisk-manifest.yaml"), "--port", str(port)],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
            output = []  # type: List[str]
            ready = threading.Event()

            def drain(process: subprocess.Popen = process, output: List[str] = output,
                      ready: threading.Event = ready) -> None:
                for line in process.stdout:
                    output.append(line)
                    if line.strip() == "ready":
                        ready.set()

            reader = threading.Thread(target=drain, daemon=True)
            reader.start()
            started.append((process, output, reader))
            if not ready.wait(180):
                raise AssertionError("local_endpoint.py --manifest did not get ready:\n" + "".join(output))
            ports[model] = port
        yield ports, started
    finally:
        for process, _, reader in started:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            reader.join(5)


def test_the_manifest_deploys_on_the_local_endpoint_and_every_sample_answers(
        manifest_endpoint: Tuple[Dict[str, int], Any], deployed: Tuple[str, Dict[str, str]]) -> None:
    ports, started = manifest_endpoint
    out, _ = deployed
    for model, port in ports.items():
        prefix = "/api/v1/web/guest/default/%s" % model
        for sample in load_samples(os.path.join(ROOT, "examples", model)):
            check_expected(sample, *send(port, sample, prefix))
    # Each action ran in its own container, limited to the manifest's memory.
    containers = docker("ps", "--filter", "name=smx-endpoint-", "--format", "{{.Names}}").split()
    for model in ports:
        limit = load_yaml(os.path.join(out, model, "openwhisk-manifest.yaml"))["packages"]["default"]["actions"][
            model]["limits"]["memorySize"]
        (name,) = [name for name in containers if name.startswith("smx-endpoint-%s-" % model)]
        assert int(docker("inspect", "--format", "{{.HostConfig.Memory}}", name).strip()) == limit << 20


def test_the_endpoint_removes_the_manifests_containers_when_it_stops(
        manifest_endpoint: Tuple[Dict[str, int], Any]) -> None:
    _, started = manifest_endpoint
    for process, _, _ in started:
        process.terminate()
        process.wait(60)
    assert docker("ps", "--all", "--filter", "name=smx-endpoint-", "--format", "{{.Names}}").split() == []


ECHO_MANIFEST = """packages:
  default:
    actions:
      echo:
        docker: "{image}"
        web: raw
        limits:
          memorySize: 256
          timeout: 1500
"""


@pytest.fixture(scope="module")
def echo_endpoint(registry: str, tmp_path_factory: Any) -> Iterator[Tuple[int, List[str]]]:  # noqa: F811
    """The test app with a /slow route, built by build.sh, deployed from a manifest with a 1.5 s time limit."""
    from test_image_http import build_echo_base_image
    pytest.importorskip("yaml")
    context_root = str(tmp_path_factory.mktemp("echo-base"))
    build_echo_base_image(context_root)
    image = "%s/max-test-echo:%s" % (DEPLOY_USERNAME, DEPLOY_TAG)
    result = run_build("--no-push", env={"MODELS": "max-test-echo", "USERNAME": DEPLOY_USERNAME, "TAG": DEPLOY_TAG})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    manifest = tmp_path_factory.mktemp("echo-manifest") / "manifest.yaml"
    manifest.write_text(ECHO_MANIFEST.format(image=image))
    port = free_port()
    process = subprocess.Popen([sys.executable, LOCAL_ENDPOINT, "--manifest", str(manifest), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    output = []  # type: List[str]
    ready = threading.Event()

    def drain() -> None:
        for line in process.stdout:
            output.append(line)
            if line.strip() == "ready":
                ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert ready.wait(180), "".join(output)
        yield port, output
    finally:
        process.terminate()
        process.wait(60)
        reader.join(5)
        docker("rmi", image, check=False)  # the base stays: other image tests share it


def post_slow(port: int, seconds: float, results: Optional[List[Tuple[int, bytes]]] = None) -> Tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/api/v1/web/guest/default/echo/slow?seconds=%g" % seconds, body=b"tag")
        response = connection.getresponse()
        answer = response.status, response.read()
    finally:
        connection.close()
    if results is not None:
        results.append(answer)
    return answer


def test_the_endpoint_enforces_the_manifests_time_limit_and_one_activation_at_a_time(
        echo_endpoint: Tuple[int, List[str]]) -> None:
    port, output = echo_endpoint
    assert post_slow(port, 0.1)[0] == 200
    # Two at once: the second waits for the container, and its wait is not in its time limit.
    results = []  # type: List[Tuple[int, bytes]]
    started = time.monotonic()
    threads = [threading.Thread(target=post_slow, args=(port, 1.0, results)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [status for status, _ in results] == [200, 200]
    assert time.monotonic() - started >= 2.0
    # Over the limit: a developer error (400), the container replaced, the next activation served.
    started = time.monotonic()
    status, body = post_slow(port, 5)
    assert status == 400 and b"There was an error processing your request." in body
    assert time.monotonic() - started < 4.5
    assert any("The action exceeded its time limits of 1500 milliseconds." in line for line in output), output
    assert post_slow(port, 0.1)[0] == 200
