"""build.sh, the Dockerfile and examples/catalogue.json.

Input validation, --dry-run, injection attempts, the catalogue and the linters run anywhere.
The rest needs a real container engine and a loopback registry, and runs only with SMX_DOCKER=1
(set up with `eval "$(scripts/container-engine.sh start)"`): it builds MAX-style base images of
the example models (tests/docker/max-base.Dockerfile), runs build.sh against them, checks what
reached the registry, pulls the images back and drives each one through local_endpoint.py,
comparing every sample answer with the model's own server running from its base image.
"""
import base64
import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest

from samples import SampleRequest, check_expected, example_model_dirs, load_samples, media_type, target
from support import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_SH = os.path.join(ROOT, "build.sh")
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
CATALOGUE = os.path.join(ROOT, "examples", "catalogue.json")
BASE_DOCKERFILE = os.path.join(ROOT, "tests", "docker", "max-base.Dockerfile")
LOCAL_ENDPOINT = os.path.join(ROOT, "local_endpoint.py")
SHELL_SCRIPTS = [BUILD_SH] + sorted(
    os.path.join(ROOT, "scripts", name) for name in os.listdir(os.path.join(ROOT, "scripts")) if name.endswith(".sh"))

# The inputs build.sh reads from the environment: cleared so the caller's own (USERNAME is
# often set by login shells and sudo) cannot leak into a test.
BUILD_VARIABLES = ("MODELS", "USERNAME", "REGISTRY", "TAG", "BASE_REPO", "BASE_IMAGE_TEMPLATE", "PUSH",
                   "PLATFORMS", "PLATFORM", "ENGINE", "FAIL_FAST", "DRY_RUN", "DEPLOY_DIR", "MAX_INSTANCES")
MODEL_NAME = re.compile(r"^max-[a-z0-9]+([._-][a-z0-9]+)*$")
SEED_MODELS = ("max-facial-emotion-classifier", "max-image-resolution-enhancer", "max-human-pose-estimator")
DEFAULT_LIMITS = ("512", "60000")
DEFAULT_BASE_REPO = "quay.io/codait"
DEPLOY_PLATFORMS = ("openwhisk", "cloudrun", "knative", "lambda", "codeengine")
# The first words of each platform's deploy command, as build.sh prints it.
DEPLOY_PREFIXES = {
    "openwhisk": ["wsk", "action", "create"],
    "cloudrun": ["gcloud", "run", "deploy"],
    "knative": ["kn", "service", "create"],
    "lambda": ["aws", "lambda", "create-function"],
    "codeengine": ["ibmcloud", "ce", "application", "create"],
}
SHELLCHECK_EXTRA_CHECKS = "check-extra-masked-returns,check-set-e-suppressed"  # SC2312, SC2310
# This one gets a non-root USER and an ENTRYPOINT that starts the model's own server.
NONROOT_MODEL = "max-example-text-sentiment"
TEST_USERNAME = "smx-test"
ENDPOINT_NAMESPACE = "guest"


def shim_version() -> str:
    with open(os.path.join(ROOT, "serverless_max", "__init__.py"), encoding="utf-8") as shim:
        return re.search(r'^__version__ = "([^"]+)"$', shim.read(), re.MULTILINE).group(1)


class Run(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def run_build(*args: str, env: Optional[Dict[str, str]] = None, script: str = BUILD_SH,
              timeout: float = 900) -> Run:
    environment = {key: value for key, value in os.environ.items() if key not in BUILD_VARIABLES}
    environment.update(env or {})
    completed = subprocess.run([script] + list(args), env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    return Run(completed.returncode, completed.stdout, completed.stderr)


def commands(stdout: str) -> List[List[str]]:
    """The commands build.sh printed ("+ docker build ..."), split as the shell would."""
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def option_values(command: List[str], option: str) -> List[str]:
    return [command[i + 1] for i, word in enumerate(command[:-1]) if word == option]


def summary_rows(stdout: str) -> Dict[str, List[str]]:
    """Summary table rows by model: [image, seconds, digest or error]."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("MODEL "))
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        model, image, seconds, result = line.split(None, 3)
        rows[model] = [image, seconds, result]
    return rows


def deploy_commands(stdout: str) -> Dict[str, Dict[str, List[str]]]:
    """The printed deploy commands: platform -> image -> the command's words."""
    found = {}  # type: Dict[str, Dict[str, List[str]]]
    for words in (line.split() for line in stdout.splitlines()):
        for platform, prefix in DEPLOY_PREFIXES.items():
            if words[:len(prefix)] == prefix:
                image = next(word for i, word in enumerate(words) if i and words[i - 1] in ("--docker", "--image")) \
                    if platform != "lambda" else option_values(words, "--code")[0].split("=", 1)[1]
                found.setdefault(platform, {})[image] = words
    return found


def next_steps(stdout: str) -> Dict[str, List[str]]:
    """The printed OpenWhisk commands by action name."""
    return {words[3]: words for words in deploy_commands(stdout).get("openwhisk", {}).values()}


def assert_usage_error(result: Run, *fragments: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


# ------------------------------------------------------------------------------ validation

UNREACHABLE_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/smx/docker.sock"}


@pytest.mark.parametrize("env, args, fragment", [
    ({}, [], "no models given"),
    ({"MODELS": " , "}, [], "no models given"),
    ({"MODELS": "Max-Object-Detector", "USERNAME": "me"}, [], "is not a MAX model name"),
    ({"MODELS": "object-detector", "USERNAME": "me"}, [], "starting with max-"),
    ({"MODELS": "max-a/b", "USERNAME": "me"}, [], "is not a MAX model name"),
    ({"MODELS": "max-a"}, [], "USERNAME is required to push"),
    ({"MODELS": "max-a", "USERNAME": "Me Myself"}, [], "is not a registry account name"),
    ({"MODELS": "max-a", "USERNAME": "me", "REGISTRY": "https://quay.io"}, [], "is not a registry host"),
    ({"MODELS": "max-a", "USERNAME": "me", "TAG": "-v1"}, [], "is not a valid image tag"),
    ({"MODELS": "max-a", "USERNAME": "me", "TAG": "x" * 129}, [], "is not a valid image tag"),
    ({"MODELS": "max-a", "USERNAME": "me", "TAG": "v1\nv2"}, [], "'v1\\nv2' is not a valid image tag"),
    ({"MODELS": "max-a", "USERNAME": "me", "BASE_REPO": "Quay.io/codait/"}, [], "is not an image repository"),
    ({"MODELS": "max-a", "USERNAME": "me", "BASE_IMAGE_TEMPLATE": "my reg/{model}"}, [], "may only hold"),
    ({"MODELS": "max-a", "USERNAME": "me", "BASE_IMAGE_TEMPLATE": "{model}::v2"}, [], "not an image reference"),
    ({"MODELS": "max-a max-b", "USERNAME": "me", "BASE_IMAGE_TEMPLATE": "quay.io/codait/max-ocr:latest"}, [],
     "has no {model}"),
    ({"MODELS": "max-a", "USERNAME": "me", "REGISTRY": "localhost:70000"}, [], "a port is 1 to 65535"),
    ({"MODELS": "max-a", "USERNAME": "me", "REGISTRY": "localhost:0"}, [], "a port is 1 to 65535"),
    ({"MODELS": "max-a", "USERNAME": "me", "PLATFORM": "heroku"}, [], "PLATFORM 'heroku' is not one of"),
    ({"MODELS": "max-a", "USERNAME": "me"}, ["--platform", ","], "PLATFORM is empty"),
    ({"MODELS": "max-a", "USERNAME": "me", "ENGINE": "rkt"}, [], "ENGINE must be docker or podman"),
    ({"MODELS": "max-a", "USERNAME": "me", "PUSH": "maybe"}, [], "PUSH must be"),
    ({"MODELS": "max-a", "USERNAME": "me", "PLATFORMS": "amd64"}, [], "is not a list like"),
    ({"MODELS": "max-a", "PLATFORMS": "linux/amd64"}, ["--no-push"], "drop --no-push"),
    ({"MODELS": "max-a", "USERNAME": "me", "ENGINE": "podman", "PLATFORMS": "linux/arm64"}, [],
     "PLATFORMS needs docker buildx"),
    ({}, ["--models"], "--models needs a value"),
    ({}, ["--colour"], "unknown option '--colour'"),
    ({"MODELS": "max-a", "USERNAME": "me"}, ["--dry-run=no"], "--dry-run takes no value"),
])
def test_invalid_input_is_one_line_and_exit_2(env: Dict[str, str], args: List[str], fragment: str) -> None:
    assert_usage_error(run_build(*args, env=env), fragment)


ABSURD = "a" * 100000


@pytest.mark.parametrize("variable, value", [
    ("MODELS", "max-" + ABSURD),
    ("MODELS", " ".join("max-m%d" % i for i in range(2000))),
    ("USERNAME", ABSURD),
    ("REGISTRY", ABSURD + ".example"),
    ("TAG", ABSURD),
    ("BASE_REPO", "quay.io/" + ABSURD),
    ("BASE_IMAGE_TEMPLATE", "quay.io/" + ABSURD + "/{model}"),
    ("PLATFORMS", ",".join(["linux/amd64"] * 10000)),
    ("PLATFORM", ",".join(["lambda"] * 10000)),
    ("PUSH", ABSURD),
    ("FAIL_FAST", ABSURD),
    ("ENGINE", ABSURD),
])
def test_values_of_absurd_length_are_refused_in_one_short_line(variable: str, value: str) -> None:
    env = {"MODELS": "max-a", "USERNAME": "me"}
    env[variable] = value
    result = run_build("--dry-run", env=env)
    assert_usage_error(result, "characters long")
    assert len(result.stderr) < 300


def test_an_absurdly_long_option_is_named_in_one_short_line() -> None:
    for args in (["--" + ABSURD], ["--" + ABSURD + "=1"], ["--dry-run=" + ABSURD]):
        result = run_build(*args, env={"MODELS": "max-a", "USERNAME": "me"})
        assert_usage_error(result)
        assert len(result.stderr) < 300


def test_a_long_image_name_is_refused_though_each_part_is_valid() -> None:
    account = "-".join(["part"] * 30)  # 149 characters, a valid name component
    result = run_build("--dry-run", env={"MODELS": "max-" + "-".join(["part"] * 20), "USERNAME": account,
                                         "REGISTRY": "registry.example.com:5000"})
    assert_usage_error(result, "the image name", "characters long")


def test_an_unreadable_shim_version_ends_the_run_with_2_even_with_a_tag(tmp_path: Any) -> None:
    script = standalone_copy(str(tmp_path))
    shim = tmp_path / "serverless_max" / "__init__.py"
    shim.write_text(shim.read_text().replace("__version__ = ", "VERSION = "))
    for env in ({"TAG": "v1"}, {}):
        env.update(MODELS="max-ocr", USERNAME="me")
        result = run_build("--dry-run", script=script, env=env)
        assert_usage_error(result, "cannot read __version__")


def test_no_run_exits_0_after_printing_an_error(tmp_path: Any) -> None:
    """Whatever fails, an 'error:' line on stderr never comes with exit status 0."""
    script = standalone_copy(str(tmp_path))
    shim = tmp_path / "serverless_max" / "__init__.py"
    shim.write_text(shim.read_text().replace("__version__ = ", "VERSION = "))
    cases = [({"TAG": "v1"}, script), ({"BASE_IMAGE_TEMPLATE": "x/{model}@sha256:" + "0" * 63}, BUILD_SH),
             ({"PLATFORM": "all,"}, BUILD_SH), ({"REGISTRY": "a:99999"}, BUILD_SH)]
    for extra, path in cases:
        env = dict(MODELS="max-ocr", USERNAME="me", **extra)
        result = run_build("--dry-run", script=path, env=env)
        if "error:" in result.stderr:
            assert result.returncode == 2, (extra, result)


def test_unreachable_engine_says_what_to_do() -> None:
    result = run_build(env=dict(UNREACHABLE_ENGINE, MODELS="max-a", USERNAME="me"))
    assert_usage_error(result, "docker")
    assert "start it" in result.stderr or "install it" in result.stderr


def test_help_documents_every_input() -> None:
    result = run_build("--help")
    assert result.returncode == 0 and result.stderr == ""
    for variable in BUILD_VARIABLES:
        assert variable in result.stdout
    for option in ("--models", "--username", "--registry", "--tag", "--base-repo", "--base-image", "--push",
                   "--no-push", "--platforms", "--engine", "--fail-fast", "--dry-run"):
        assert option in result.stdout


MARKER_PLACEHOLDER = "MARKER"
INJECTIONS = [
    ("MODELS", "x;touch MARKER"),
    ("MODELS", "max-a;touch MARKER"),
    ("MODELS", "max-a$(touch MARKER)"),
    ("MODELS", "max-a`touch MARKER`"),
    ("MODELS", "max-a\ntouch MARKER"),
    ("MODELS", "max-a&&touch MARKER"),
    ("MODELS", "max-a|touch MARKER"),
    ("MODELS", "max-a>MARKER"),
    ("TAG", "v1;touch MARKER"),
    ("TAG", "$(touch MARKER)"),
    ("USERNAME", "me`touch MARKER`"),
    ("USERNAME", "me/../$(touch MARKER)"),
    ("REGISTRY", "localhost:5000;touch MARKER"),
    ("BASE_REPO", "codait$(touch MARKER)"),
    ("BASE_IMAGE_TEMPLATE", "{model};touch MARKER"),
    ("BASE_IMAGE_TEMPLATE", "codait/{model}:$(touch MARKER)"),
    ("PLATFORMS", "linux/amd64;touch MARKER"),
    ("ENGINE", "docker;touch MARKER"),
    ("PUSH", "1;touch MARKER"),
    ("PLATFORM", "all;touch MARKER"),
    ("PLATFORM", "lambda $(touch MARKER)"),
]


@pytest.mark.parametrize("variable, value", INJECTIONS)
@pytest.mark.parametrize("through", ["environment", "option"])
def test_no_command_runs_through_any_input(tmp_path: Any, variable: str, value: str, through: str) -> None:
    marker = str(tmp_path / "pwned")
    value = value.replace(MARKER_PLACEHOLDER, marker)
    env = dict(UNREACHABLE_ENGINE, MODELS="max-a", USERNAME="me")
    args = []  # type: List[str]
    option = {"MODELS": "--models", "USERNAME": "--username", "REGISTRY": "--registry", "TAG": "--tag",
              "BASE_REPO": "--base-repo", "BASE_IMAGE_TEMPLATE": "--base-image", "PLATFORMS": "--platforms",
              "PLATFORM": "--platform", "ENGINE": "--engine"}.get(variable)
    if through == "option" and option:
        args = [option, value]
    else:
        env[variable] = value
    # The working directory is the marker's, so a relative redirection would land there too.
    environment = {key: val for key, val in os.environ.items() if key not in BUILD_VARIABLES}
    environment.update(env)
    completed = subprocess.run([BUILD_SH] + args, env=environment, cwd=str(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert completed.returncode == 2, completed
    assert os.listdir(str(tmp_path)) == [], "something ran: %s" % os.listdir(str(tmp_path))


# --------------------------------------------------------------------------------- dry run

def test_dry_run_prints_every_build_and_push_without_running_them() -> None:
    result = run_build("--dry-run", env=dict(UNREACHABLE_ENGINE, MODELS="max-object-detector, max-unlisted-model",
                                             USERNAME="me"))
    assert result.returncode == 0, result
    assert result.stderr == ""
    tag = "%s-%s" % (shim_version(), time.strftime("%Y%m%d", time.gmtime()))
    printed = commands(result.stdout)
    builds = [command for command in printed if command[:2] == ["docker", "build"]]
    pushes = [command for command in printed if command[:2] == ["docker", "push"]]
    assert len(printed) == 4 and len(builds) == 2 and len(pushes) == 2
    for model, build, push in zip(["max-object-detector", "max-unlisted-model"], builds, pushes):
        image = "me/%s:%s" % (model, tag)
        build_args = option_values(build, "--build-arg")
        assert "model=" + model in build_args
        assert "base_image=%s/%s:latest" % (DEFAULT_BASE_REPO, model) in build_args
        assert not any(word.startswith("org.opencontainers.image.base.digest=") for word in build)
        assert "version=" + shim_version() in build_args
        assert any(re.match(r"^created=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", arg) for arg in build_args)
        assert option_values(build, "--tag") == [image]
        assert option_values(build, "--file") == [DOCKERFILE]
        assert build[-1] == ROOT
        assert push == ["docker", "push", image]
    assert "[1/2] max-object-detector: building me/max-object-detector:%s" % tag in result.stdout
    assert "[2/2] max-unlisted-model: building" in result.stdout
    rows = summary_rows(result.stdout)
    assert sorted(rows) == ["max-object-detector", "max-unlisted-model"]
    assert rows["max-object-detector"][0] == "me/max-object-detector:" + tag
    steps = next_steps(result.stdout)
    catalogue = {entry["name"]: entry for entry in load_catalogue()["models"]}
    detector = catalogue["max-object-detector"]
    assert steps["max-object-detector"] == [
        "wsk", "action", "create", "max-object-detector", "--docker", "me/max-object-detector:" + tag,
        "--web", "raw", "-m", str(detector["memory_mb"]), "-t", str(detector["timeout_ms"]), "--concurrency", "1"]
    assert steps["max-unlisted-model"][-6:-2] == ["-m", DEFAULT_LIMITS[0], "-t", DEFAULT_LIMITS[1]]


def test_dry_run_registry_base_template_and_options_over_environment() -> None:
    result = run_build("--dry-run", "--models=max-b max-b,max-c", "--registry", "localhost:5000", "-t", "v7",
                       "--base-image", "myreg.example:5000/team/{model}:v2",
                       env={"MODELS": "max-a", "USERNAME": "me"})
    assert result.returncode == 0, result
    builds = [command for command in commands(result.stdout) if command[1] == "build"]
    assert [option_values(build, "--tag") for build in builds] == [
        ["localhost:5000/me/max-b:v7"], ["localhost:5000/me/max-c:v7"]]
    assert "base_image=myreg.example:5000/team/max-b:v2" in option_values(builds[0], "--build-arg")


def test_dry_run_base_repo_no_push_and_podman() -> None:
    result = run_build("--dry-run", "--no-push", "--base-repo", "codait",
                       env={"MODELS": "max-ocr", "ENGINE": "podman", "TAG": "t1"})
    assert result.returncode == 0, result
    (build,) = commands(result.stdout)
    assert build[:2] == ["podman", "build"]
    assert "base_image=codait/max-ocr:latest" in option_values(build, "--build-arg")
    assert option_values(build, "--tag") == ["max-ocr:t1"]


def test_dry_run_base_pinned_by_digest_is_labelled_with_it() -> None:
    digest = "sha256:" + "ab12" * 16
    result = run_build("--dry-run", "--base-image", "quay.io/codait/{model}@" + digest,
                       env={"MODELS": "max-ocr max-object-detector", "USERNAME": "me", "TAG": "t1"})
    assert result.returncode == 0, result
    builds = [command for command in commands(result.stdout) if command[1] == "build"]
    assert len(builds) == 2
    for model, build in zip(["max-ocr", "max-object-detector"], builds):
        assert "base_image=quay.io/codait/%s@%s" % (model, digest) in option_values(build, "--build-arg")
        assert option_values(build, "--label") == ["org.opencontainers.image.base.digest=" + digest]
    assert "from quay.io/codait/max-ocr@%s" % digest in result.stdout


def test_dry_run_platforms_build_and_push_through_buildx() -> None:
    result = run_build("--dry-run", env={"MODELS": "max-ocr", "USERNAME": "me", "TAG": "t1",
                                         "PLATFORMS": "linux/amd64,linux/arm64"})
    assert result.returncode == 0, result
    (build,) = commands(result.stdout)
    assert build[:5] == ["docker", "buildx", "build", "--platform", "linux/amd64,linux/arm64"]
    assert "--push" in build and option_values(build, "--tag") == ["me/max-ocr:t1"]


def expected_deploy_commands(model: str, image: str, memory_mb: int, timeout_ms: int,
                             name: Optional[str] = None, max_instances: int = 10) -> Dict[str, List[str]]:
    """What build.sh prints per platform, the limits converted to each one's units and bounds, and
    one request per container with at most max_instances containers."""
    name = name or model.replace(".", "-").replace("_", "-")
    seconds = -(-timeout_ms // 1000)
    codeengine_cpu, codeengine_memory = next(
        (cpu, memory) for cpu, memory, limit in [("0.25", "0.5G", 512), ("0.5", "1G", 1024), ("1", "2G", 2048),
                                                 ("1", "4G", 4096), ("2", "8G", 8192), ("4", "16G", 16384),
                                                 ("8", "32G", 32768)] if memory_mb <= limit)
    return {
        "openwhisk": ["wsk", "action", "create", model, "--docker", image, "--web", "raw",
                      "-m", str(memory_mb), "-t", str(timeout_ms), "--concurrency", "1"],
        "cloudrun": ["gcloud", "run", "deploy", name, "--image", image, "--port", "8080",
                     "--memory", "%dMi" % min(max(memory_mb, 128), 32768), "--timeout", str(min(seconds, 3600))]
        + next((["--cpu", cpu] for cpu, above in [("8", 24576), ("6", 16384), ("4", 8192), ("2", 4096)]
                if memory_mb > above), [])
        + ["--concurrency", "1", "--min-instances", "0", "--max-instances", str(max_instances), "--cpu-boost"],
        "knative": ["kn", "service", "create", name, "--image", image, "--port", "8080",
                    "--limit", "memory=%dMi" % memory_mb, "--timeout", str(min(seconds, 600)),
                    "--concurrency-limit", "1", "--scale-min", "0", "--scale-max", str(max_instances)],
        "lambda": ["aws", "lambda", "create-function", "--function-name", name, "--package-type", "Image",
                   "--code", "ImageUri=" + image, "--memory-size", str(min(max(memory_mb, 128), 10240)),
                   "--timeout", str(min(seconds, 900)), "--role", "$LAMBDA_ROLE_ARN"],
        "codeengine": ["ibmcloud", "ce", "application", "create", "--name", name[:35], "--image", image,
                       "--port", "8080", "--cpu", codeengine_cpu, "--memory", codeengine_memory,
                       "--request-timeout", str(min(seconds, 600)),
                       "--concurrency", "1", "--min-scale", "0", "--max-scale", str(max_instances)],
    }


def test_dry_run_prints_the_deploy_command_of_every_platform() -> None:
    result = run_build("--dry-run", env={"MODELS": "max-object-detector max-unlisted.model", "USERNAME": "me",
                                         "TAG": "t1"})
    assert result.returncode == 0, result
    printed = deploy_commands(result.stdout)
    assert sorted(printed) == sorted(DEPLOY_PLATFORMS)
    detector = {entry["name"]: entry for entry in load_catalogue()["models"]}["max-object-detector"]
    expected = [
        expected_deploy_commands("max-object-detector", "me/max-object-detector:t1", detector["memory_mb"],
                                 detector["timeout_ms"]),
        expected_deploy_commands("max-unlisted.model", "me/max-unlisted.model:t1", int(DEFAULT_LIMITS[0]),
                                 int(DEFAULT_LIMITS[1]), name="max-unlisted-model"),
    ]
    for platform in DEPLOY_PLATFORMS:
        assert sorted(printed[platform].values()) == sorted(commands[platform] for commands in expected)
    lines = result.stdout.splitlines()
    headings = [line for line in lines if line and not line.startswith((" ", "+", "[", "MODEL", "max-"))]
    assert any("Amazon ECR" in line and "docker push" in line for line in headings)
    assert any("-m 512 -t 300000" in line for line in headings)
    assert "aws lambda create-function-url-config --function-name max-object-detector --auth-type AWS_IAM" in lines[
        [i for i, line in enumerate(lines) if "create-function --function-name max-object-detector" in line][0] + 1]


@pytest.mark.parametrize("chosen, expected", [
    ("lambda", ["lambda"]),
    ("cloudrun,knative", ["cloudrun", "knative"]),
    ("all", list(DEPLOY_PLATFORMS)),
    ("openwhisk codeengine", ["openwhisk", "codeengine"]),
])
@pytest.mark.parametrize("through", ["option", "environment"])
def test_platform_chooses_whose_deploy_commands_are_printed(chosen: str, expected: List[str], through: str) -> None:
    env = {"MODELS": "max-ocr", "USERNAME": "me", "TAG": "t1"}
    args = ["--dry-run"]
    if through == "option":
        args += ["--platform", chosen]
    else:
        env["PLATFORM"] = chosen
    result = run_build(*args, env=env)
    assert result.returncode == 0, result
    assert sorted(deploy_commands(result.stdout)) == sorted(expected)


def test_limits_are_converted_to_each_platforms_units_and_bounds(tmp_path: Any) -> None:
    script = standalone_copy(str(tmp_path))
    os.mkdir(str(tmp_path / "examples"))
    limits = {"max-huge-model": (20000, 4000000), "max-tiny-model": (100, 500), "max-mid-model": (3000, 90500),
              "max-chinese-phonetic-similarity-estimator": (512, 60000)}
    catalogue = {"models": [{"name": name, "memory_mb": memory, "timeout_ms": timeout}
                            for name, (memory, timeout) in limits.items()]}
    (tmp_path / "examples" / "catalogue.json").write_text(json.dumps(catalogue))
    result = run_build("--dry-run", script=script, env={"MODELS": " ".join(limits), "USERNAME": "me", "TAG": "t1"})
    assert result.returncode == 0, result
    printed = deploy_commands(result.stdout)
    for model, (memory, timeout) in limits.items():
        image = "me/%s:t1" % model
        for platform, command in expected_deploy_commands(model, image, memory, timeout).items():
            assert printed[platform][image] == command, (platform, model)
    assert option_values(printed["cloudrun"]["me/max-huge-model:t1"], "--cpu") == ["6"]
    assert option_values(printed["cloudrun"]["me/max-mid-model:t1"], "--cpu") == []
    huge = printed["lambda"]["me/max-huge-model:t1"]
    assert option_values(huge, "--memory-size") == ["10240"] and option_values(huge, "--timeout") == ["900"]
    codeengine_name = option_values(printed["codeengine"]["me/max-chinese-phonetic-similarity-estimator:t1"], "--name")
    assert codeengine_name == ["max-chinese-phonetic-similarity-est"]


def test_latest_tag_works_but_warns() -> None:
    result = run_build("--dry-run", env={"MODELS": "max-ocr", "USERNAME": "me", "TAG": "latest"})
    assert result.returncode == 0, result
    assert "cold start" in result.stderr and len(result.stderr.splitlines()) == 1


def standalone_copy(directory: str) -> str:
    """build.sh with its Dockerfile and shim, but no examples/catalogue.json."""
    for name in ("build.sh", "Dockerfile", "openwhisk.py"):
        shutil.copy2(os.path.join(ROOT, name), directory)
    shutil.copytree(os.path.join(ROOT, "serverless_max"), os.path.join(directory, "serverless_max"))
    return os.path.join(directory, "build.sh")


def test_limits_fall_back_to_defaults_without_a_catalogue(tmp_path: Any) -> None:
    script = standalone_copy(str(tmp_path))
    result = run_build("--dry-run", script=script, env={"MODELS": "max-object-detector", "USERNAME": "me"})
    assert result.returncode == 0, result
    assert next_steps(result.stdout)["max-object-detector"][-6:-2] == ["-m", DEFAULT_LIMITS[0], "-t", DEFAULT_LIMITS[1]]


def test_a_broken_catalogue_warns_and_falls_back(tmp_path: Any) -> None:
    script = standalone_copy(str(tmp_path))
    os.mkdir(str(tmp_path / "examples"))
    (tmp_path / "examples" / "catalogue.json").write_text('{"models": [{"name": "max-ocr"')
    result = run_build("--dry-run", script=script, env={"MODELS": "max-ocr", "USERNAME": "me"})
    assert result.returncode == 0, result
    assert "warning: cannot read limits" in result.stderr
    assert next_steps(result.stdout)["max-ocr"][-6:-2] == ["-m", DEFAULT_LIMITS[0], "-t", DEFAULT_LIMITS[1]]


# ------------------------------------------------------------------------------- catalogue

def load_catalogue() -> Dict[str, Any]:
    with open(CATALOGUE, encoding="utf-8") as catalogue:
        return json.load(catalogue)


def test_catalogue_entries_are_complete_and_usable_by_build_sh() -> None:
    entries = load_catalogue()["models"]
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names))
    for entry in entries:
        assert MODEL_NAME.match(entry["name"]), entry["name"]
        assert entry["input"]["kind"] in ("multipart", "json", "query")
        if entry["input"]["kind"] == "multipart":
            assert re.match(r"^[a-z_]+$", entry["input"]["field"])
        assert entry["output"]["kind"] in ("json", "image/png", "image/jpeg", "audio/wav")
        assert isinstance(entry["memory_mb"], int) and 128 <= entry["memory_mb"] <= 4096
        assert isinstance(entry["timeout_ms"], int) and 1000 <= entry["timeout_ms"] <= 600000
        assert entry["sample_curl"].startswith("curl ") and "$ACTION_URL" in entry["sample_curl"]
        assert entry["verified"] in ("tests", "documented")
        routes = entry["routes"]
        assert re.match(r"^(GET|POST) /model/predict$", routes["predict"])
        assert routes["metadata"] == "GET /model/metadata"
        assert routes.get("labels", "GET /model/labels") == "GET /model/labels"
        assert all(re.match(r"^(GET|POST) /", extra) for extra in routes["extras"])
        if entry["verified"] == "documented":
            assert entry["base_image"] == "%s/%s:latest" % (DEFAULT_BASE_REPO, entry["name"])
            assert entry["api_source"] is None or entry["api_source"].startswith("IBM/MAX-")
        if "result_size" in entry:
            result_size = entry["result_size"]
            assert result_size["over_default_limit"] is True
            assert result_size["why"] and result_size["input_under_limit"]
            assert "SERVERLESS_MAX_RESULT_LIMIT" in result_size["raise"]
            assert "whisk.activation.payload.max" in result_size["raise"]
    for seed in SEED_MODELS:
        assert seed in names
    marked = {entry["name"] for entry in entries if "result_size" in entry}
    assert {"max-image-resolution-enhancer", "max-image-segmenter"} <= marked


def test_catalogue_routes_of_the_examples_are_the_ones_their_samples_reach() -> None:
    entries = {entry["name"]: entry for entry in load_catalogue()["models"] if entry["verified"] == "tests"}
    for model_dir in example_model_dirs():
        entry = entries[os.path.basename(model_dir)]
        answered = {"%s %s" % (sample.method, sample.path) for sample in load_samples(model_dir)
                    if 200 <= int(sample.expect.get("status", 200)) < 300}
        routes = [entry["routes"]["predict"], entry["routes"]["metadata"]] + \
            [entry["routes"][key] for key in ("labels",) if key in entry["routes"]]
        for route in routes:
            assert route in answered, (entry["name"], route, sorted(answered))


def test_catalogue_marks_exactly_the_tested_examples() -> None:
    tested = sorted(entry["name"] for entry in load_catalogue()["models"] if entry["verified"] == "tests")
    assert tested == sorted(os.path.basename(directory) for directory in example_model_dirs())
    for name in tested:
        assert os.path.isfile(os.path.join(ROOT, "examples", name, "app.py"))


# ---------------------------------------------------------------------------------- linters

def find_tool(name: str) -> Optional[str]:
    """A linter beside this Python (a venv's bin, which may not be on PATH) or on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.access(beside, os.X_OK) else shutil.which(name)


def require_tool(name: str, install_hint: str) -> str:
    tool = find_tool(name)
    if tool is None:
        message = "%s is not installed (%s)" % (name, install_hint)
        # The container run (SMX_DOCKER=1) is the one whose environment promises every tool.
        if os.environ.get("SMX_DOCKER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return tool


def shellcheck_run(*paths: str) -> "subprocess.CompletedProcess[str]":
    """shellcheck's default checks plus those for masked exit statuses (SC2312, SC2310)."""
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    return subprocess.run([shellcheck, "--external-sources", "--enable=" + SHELLCHECK_EXTRA_CHECKS] + list(paths),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)


def test_shell_scripts_are_shellcheck_clean() -> None:
    completed = shellcheck_run(*SHELL_SCRIPTS)
    assert completed.returncode == 0, completed.stdout


def test_shellcheck_reports_masked_statuses(tmp_path: Any) -> None:
    """The checks the scripts are held to are really on: a masked status is reported."""
    script = tmp_path / "masked.sh"
    script.write_text('#!/usr/bin/env bash\nset -e\nlookup() { false; }\nlookup || true\n'
                      'printf "%s\\n" "$(date)-$(lookup)"\n')
    completed = shellcheck_run(str(script))
    assert completed.returncode != 0
    assert "SC2310" in completed.stdout and "SC2312" in completed.stdout, completed.stdout


def test_dockerfiles_are_hadolint_clean() -> None:
    hadolint = require_tool("hadolint", "scripts/setup-venv.sh current (requirements/test.txt installs it)")
    completed = subprocess.run([hadolint, DOCKERFILE, BASE_DOCKERFILE], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True)
    assert completed.returncode == 0, completed.stdout


def test_dockerfile_resets_the_entrypoint_and_uses_exec_form() -> None:
    with open(DOCKERFILE, encoding="utf-8") as dockerfile:
        instructions = [line.strip() for line in dockerfile if line.strip() and not line.startswith("#")]
    assert "ENTRYPOINT []" in instructions
    assert 'CMD ["python", "openwhisk.py"]' in instructions
    assert "EXPOSE 8080" in instructions
    assert "COPY openwhisk.py ./" in instructions
    assert "COPY serverless_max/ ./serverless_max/" in instructions
    assert not any(line.startswith("WORKDIR") or line.startswith("USER") for line in instructions)


def test_dockerfile_describes_every_platform_it_serves() -> None:
    with open(DOCKERFILE, encoding="utf-8") as dockerfile:
        text = dockerfile.read()
    description = re.search(r'org\.opencontainers\.image\.description="([^"]+)"', text).group(1)
    for platform in ("OpenWhisk", "Knative", "Cloud Run", "Code Engine", "AWS Lambda"):
        assert platform in description


def test_build_context_holds_only_the_runtime() -> None:
    """.dockerignore lets in openwhisk.py and the serverless_max package, without bytecode."""
    with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as ignore:
        rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    assert "!openwhisk.py" in rules and "!serverless_max/" in rules
    assert any("__pycache__" in rule for rule in rules) and any(".pyc" in rule for rule in rules)
    assert rules.index("!serverless_max/") < min(i for i, rule in enumerate(rules) if "__pycache__" in rule)


def container_skip_reason(environ: Dict[str, str], version_info: Tuple[int, ...]) -> Optional[str]:
    """Why the container tests are skipped here, or None when they run."""
    if environ.get("SMX_DOCKER") == "1":
        return None
    if tuple(version_info[:2]) < (3, 7):
        return ("container tests run on the current era only: scripts/test.sh sets SMX_DOCKER=1 there, "
                "not on this oldest era (Python %d.%d)" % tuple(version_info[:2]))
    return "needs a container engine: eval \"$(scripts/container-engine.sh start)\" and set SMX_DOCKER=1"


def test_the_oldest_era_says_container_tests_run_on_the_current_era_only() -> None:
    reason = container_skip_reason({}, (3, 6, 15))
    assert reason is not None and "current era only" in reason and "needs a container engine" not in reason
    assert "needs a container engine" in (container_skip_reason({"SMX_DOCKER": "0"}, (3, 11, 7)) or "")
    assert container_skip_reason({"SMX_DOCKER": "1"}, (3, 6, 15)) is None


# ============================================================ with a real container engine

def docker(*args: str, timeout: float = 600, check: bool = True) -> str:
    completed = subprocess.run(["docker"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=timeout)
    if check and completed.returncode != 0:
        raise AssertionError("docker %s failed (%d):\n%s%s" % (
            " ".join(args), completed.returncode, completed.stdout[-3000:], completed.stderr[-3000:]))
    return completed.stdout


@pytest.fixture(scope="module")
def registry() -> str:
    """The loopback registry's host:port, once the engine and the registry are known to answer."""
    skip_reason = container_skip_reason(dict(os.environ), tuple(sys.version_info))
    if skip_reason:
        pytest.skip(skip_reason)
    # Asked for, so a missing engine is a failure, never a skip.
    if shutil.which("docker") is None:
        pytest.fail("SMX_DOCKER=1 but there is no docker client: run scripts/container-engine.sh start")
    info = subprocess.run(["docker", "info"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=60)
    if info.returncode != 0:
        pytest.fail("SMX_DOCKER=1 but the engine does not answer (DOCKER_HOST=%s): %s" % (
            os.environ.get("DOCKER_HOST"), info.stdout.strip()[-500:]))
    address = os.environ.get("SMX_REGISTRY", "")
    if not address:
        pytest.fail("SMX_REGISTRY is not set: eval \"$(scripts/container-engine.sh start)\"")
    try:
        urllib.request.urlopen("http://%s/v2/" % address, timeout=10).close()
    except (OSError, ValueError) as error:
        pytest.fail("the registry at %s does not answer: %s" % (address, error))
    return address


def build_base_image(model_dir: str, context_root: str) -> str:
    """quay.io/codait/<model>:latest, laid out as MAX images are, built from the example's directory."""
    model = os.path.basename(model_dir)
    context = os.path.join(context_root, model)
    os.mkdir(context)
    shutil.copytree(model_dir, os.path.join(context, "app"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(os.path.join(model_dir, "requirements.txt"), context)
    # Only this test image carries the host's CA bundle: PyPI is behind a TLS-intercepting proxy here.
    shutil.copy(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt",
                os.path.join(context, "ca-bundle.crt"))
    image = "%s/%s:latest" % (DEFAULT_BASE_REPO, model)
    target_stage = "max-image-nonroot" if model == NONROOT_MODEL else "max-image"
    docker("build", "--quiet", "--target", target_stage, "--tag", image, "--file", BASE_DOCKERFILE, context)
    return image


@pytest.fixture(scope="module")
def base_images(registry: str) -> Dict[str, str]:
    """The example models' MAX-style base images, by model name."""
    directories = example_model_dirs()
    assert directories, "no example models under examples/"
    context_root = tempfile.mkdtemp(prefix="smx-base-")
    try:
        return {os.path.basename(directory): build_base_image(directory, context_root) for directory in directories}
    finally:
        shutil.rmtree(context_root)


class Built(NamedTuple):
    run: Run
    tag: str
    images: Dict[str, str]  # model -> pushed image reference


@pytest.fixture(scope="module")
def built(registry: str, base_images: Dict[str, str]) -> Iterator[Built]:
    """build.sh run once over every example model, pushing to the loopback registry."""
    models = sorted(base_images)
    result = run_build(env={"MODELS": ", ".join(models), "USERNAME": TEST_USERNAME, "REGISTRY": registry})
    # The default tag: the shim's version and the UTC date of the build.
    tag = "%s-%s" % (shim_version(), time.strftime("%Y%m%d", time.gmtime()))
    images = {model: "%s/%s/%s:%s" % (registry, TEST_USERNAME, model, tag) for model in models}
    try:
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
        yield Built(result, tag, images)
    finally:
        # By id: a pulled image is also known by its digest, which a tag-only removal leaves behind.
        image_ids = docker("image", "inspect", "--format", "{{.Id}}", *images.values(), check=False).split()
        docker("rmi", "--force", *image_ids or list(images.values()), check=False)


def registry_get(registry: str, path: str, accept: str = "") -> Tuple[Dict[str, str], bytes]:
    request = urllib.request.Request("http://%s/v2/%s" % (registry, path), headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(response.headers.items()), response.read()


MANIFEST_TYPES = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.manifest.v1+json"])


def test_build_reports_progress_summary_and_next_steps(built: Built) -> None:
    output = built.run.stdout
    models = sorted(built.images)
    for index, model in enumerate(models, 1):
        assert "[%d/%d] %s: building %s from %s/%s:latest" % (
            index, len(models), model, built.images[model], DEFAULT_BASE_REPO, model) in output
        assert "[%d/%d] %s: pushing" % (index, len(models), model) in output
    rows = summary_rows(output)
    catalogue = {entry["name"]: entry for entry in load_catalogue()["models"]}
    printed = deploy_commands(output)
    assert sorted(printed) == sorted(DEPLOY_PLATFORMS)
    for model, image in built.images.items():
        assert rows[model][0] == image
        assert re.match(r"^sha256:[0-9a-f]{64}$", rows[model][2]), rows[model]
        assert int(rows[model][1]) >= 0
        expected = expected_deploy_commands(model, image, catalogue[model]["memory_mb"], catalogue[model]["timeout_ms"])
        for platform, command in expected.items():
            assert printed[platform][image] == command


def test_registry_holds_each_image_with_its_tag_digest_and_labels(registry: str, built: Built) -> None:
    rows = summary_rows(built.run.stdout)
    for model, image in built.images.items():
        repository = "%s/%s" % (TEST_USERNAME, model)
        _, tags = registry_get(registry, repository + "/tags/list")
        assert built.tag in json.loads(tags.decode("utf-8"))["tags"]
        headers, manifest_bytes = registry_get(registry, "%s/manifests/%s" % (repository, built.tag), MANIFEST_TYPES)
        assert headers["Docker-Content-Digest"] == rows[model][2]
        manifest = json.loads(manifest_bytes.decode("utf-8"))
        _, config_bytes = registry_get(registry, "%s/blobs/%s" % (repository, manifest["config"]["digest"]))
        config = json.loads(config_bytes.decode("utf-8"))["config"]
        labels = config["Labels"]
        assert labels["org.opencontainers.image.title"] == model
        assert labels["org.opencontainers.image.version"] == shim_version()
        assert labels["org.opencontainers.image.base.name"] == "%s/%s:latest" % (DEFAULT_BASE_REPO, model)
        # A base built locally has no registry digest, so none is claimed.
        assert "org.opencontainers.image.base.digest" not in labels
        assert "AWS Lambda" in labels["org.opencontainers.image.description"]
        assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", labels["org.opencontainers.image.created"])
        assert labels["org.opencontainers.image.revision"]
        assert config["Cmd"] == ["python", "openwhisk.py"]
        assert not config.get("Entrypoint")
        assert "8080/tcp" in config["ExposedPorts"]
        # Inherited from the model image: the shim runs where app.py is, as the image's own user.
        assert config["WorkingDir"] == "/workspace"
        assert config.get("User", "") == ("1001" if model == NONROOT_MODEL else "")


class Container(NamedTuple):
    container_id: str
    port: int


def published_port(container_id: str, container_port: int) -> int:
    mapping = docker("port", container_id, "%d/tcp" % container_port).split()[0]
    return int(mapping.rsplit(":", 1)[1])


def wait_for_http(container_id: str, port: int, path: str, seconds: float = 90) -> None:
    """Until an HTTP answer comes back through the published port (any status: the server is up).

    A TCP connect alone proves nothing here: docker's port proxy accepts before the server listens.
    """
    deadline = time.time() + seconds
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", path)
            connection.getresponse().read()
            return
        except (OSError, http.client.HTTPException):
            if time.time() > deadline:
                raise AssertionError("no HTTP answer from container %s within %.0f s:\n%s" % (
                    container_id[:12], seconds, docker("logs", container_id, check=False)))
            time.sleep(0.2)
        finally:
            connection.close()


def start_container(image: str, container_port: int, probe_path: str) -> Container:
    container_id = docker("run", "--detach", "--publish", "127.0.0.1::%d" % container_port, image).strip()
    port = published_port(container_id, container_port)
    wait_for_http(container_id, port, probe_path)
    return Container(container_id, port)


@pytest.fixture(scope="module")
def pulled(built: Built) -> Dict[str, str]:
    """The built images, removed locally and pulled back from the registry."""
    docker("rmi", *built.images.values())
    for image in built.images.values():
        assert subprocess.run(["docker", "image", "inspect", image], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode != 0
    rows = summary_rows(built.run.stdout)
    for model, image in built.images.items():
        docker("pull", image)
        repository = image.rsplit(":", 1)[0]
        pulled_digests = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", image))
        assert "%s@%s" % (repository, rows[model][2]) in pulled_digests
    return built.images


@pytest.fixture(scope="module")
def running(pulled: Dict[str, str], base_images: Dict[str, str]) -> Iterator[Dict[str, Tuple[Container, Container]]]:
    """Per model: the action container (the shim on 8080) and the base image's own server (5000)."""
    started = []  # type: List[str]
    containers = {}
    try:
        for model, image in sorted(pulled.items()):
            # A GET answers 405 from the shim: never /init, which the endpoint must send first.
            action = start_container(image, 8080, "/")
            started.append(action.container_id)
            own = start_container(base_images[model], 5000, "/model/metadata")
            started.append(own.container_id)
            containers[model] = (action, own)
        yield containers
    finally:
        if started:
            docker("rm", "--force", *started, check=False)


@pytest.fixture(scope="module")
def endpoint(running: Dict[str, Tuple[Container, Container]]) -> Iterator[int]:
    """The port of local_endpoint.py, in front of every action container as OpenWhisk's controller is."""
    port = free_port()
    actions = ["%s=http://127.0.0.1:%d" % (model, action.port) for model, (action, _) in sorted(running.items())]
    process = subprocess.Popen([sys.executable, LOCAL_ENDPOINT] + actions + ["--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    output = []  # type: List[str]
    ready = threading.Event()

    def drain() -> None:
        # Keeps reading to the end: activation logs must never fill the pipe and stall the endpoint.
        for line in process.stdout:
            output.append(line)
            if line.strip() == "ready":
                ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if not ready.wait(60):
            raise AssertionError("local_endpoint.py did not print ready within 60 s:\n" + "".join(output))
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)


def send(port: int, sample: SampleRequest, prefix: str = "") -> Tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(sample.method, prefix + target(sample), body=sample.body or None, headers=sample.headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def test_pulled_actions_answer_like_the_models_own_api(
        endpoint: int, running: Dict[str, Tuple[Container, Container]]) -> None:
    checked = 0
    for model_dir in example_model_dirs():
        model = os.path.basename(model_dir)
        _, own = running[model]
        prefix = "/api/v1/web/%s/default/%s" % (ENDPOINT_NAMESPACE, model)
        for sample in load_samples(model_dir):
            through_action = send(endpoint, sample, prefix)
            direct = send(own.port, sample)
            check_expected(sample, *through_action)
            check_expected(sample, *direct)
            where = "%s %s" % (model, sample.name)
            assert through_action[0] == direct[0], where
            assert media_type(through_action[1]) == media_type(direct[1]), where
            if media_type(direct[1]) == "application/json":
                action_json = json.loads(through_action[2].decode("utf-8"))
                direct_json = json.loads(direct[2].decode("utf-8"))
                if isinstance(direct_json, dict) and "basePath" in direct_json:
                    # The action's app is mounted under the web action URL, and its Swagger document says so.
                    assert action_json.pop("basePath") == prefix, where
                    direct_json.pop("basePath")
                assert action_json == direct_json, where
            else:
                # Pages link to the app's own routes under the mount prefix (the Swagger UI does).
                assert through_action[2].replace(prefix.encode("ascii"), b"") == direct[2], where
            checked += 1
    assert checked >= 3 * len(running)


def test_action_containers_end_every_activation_log(
        endpoint: int, running: Dict[str, Tuple[Container, Container]]) -> None:
    for model, (action, _) in running.items():
        completed = subprocess.run(["docker", "logs", action.container_id], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, universal_newlines=True, check=True)
        sentinel = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
        assert sentinel in completed.stdout and sentinel in completed.stderr, model


FAILURE_TEST_IMAGE = "max-example-digit-classifier:failure-test"


@pytest.fixture(scope="module")
def local_base_template(registry: str, base_images: Dict[str, str]) -> Iterator[str]:
    """A base-image template on the loopback registry: present models are tagged locally, any
    other name fails at once (the registry answers 'manifest unknown') instead of reaching out."""
    template = "%s/smx-base/{model}:latest" % registry
    tags = [template.replace("{model}", model) for model in base_images]
    for image, tag in zip(base_images.values(), tags):
        docker("tag", image, tag)
    yield template
    docker("rmi", *tags + [FAILURE_TEST_IMAGE], check=False)


def image_labels(image: str) -> Dict[str, str]:
    return json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", image))


def test_the_base_digest_is_recorded_when_the_engine_knows_it(registry: str, local_base_template: str) -> None:
    model = "max-example-digit-classifier"
    base = local_base_template.replace("{model}", model)
    docker("push", base)  # now the engine holds the base's registry digest
    repository = base.rsplit(":", 1)[0]
    digests = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", base))
    (base_digest,) = [entry.split("@", 1)[1] for entry in digests if entry.split("@", 1)[0] == repository]
    built_images = []
    try:
        for tag, template in (("base-by-tag", local_base_template), ("base-by-digest", repository.replace(
                model, "{model}") + "@" + base_digest)):
            result = run_build(env={"MODELS": model, "PUSH": "0", "TAG": tag, "BASE_IMAGE_TEMPLATE": template})
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            image = "%s:%s" % (model, tag)
            built_images.append(image)
            labels = image_labels(image)
            assert labels["org.opencontainers.image.base.digest"] == base_digest, tag
            assert labels["org.opencontainers.image.base.name"] == template.replace("{model}", model)
    finally:
        docker("rmi", *built_images, check=False)


def test_the_image_holds_the_runtime_beside_app_py(pulled: Dict[str, str]) -> None:
    package = os.path.isdir(os.path.join(ROOT, "serverless_max"))
    for image in pulled.values():
        listing = docker("run", "--rm", "--entrypoint", "ls", image, "-A").split()
        assert "app.py" in listing and "openwhisk.py" in listing, (image, listing)
        if package:
            files = docker("run", "--rm", "--entrypoint", "find", image, "serverless_max").split()
            assert "serverless_max/__init__.py" in files, (image, files)
            assert not any("__pycache__" in name or name.endswith(".pyc") for name in files), files


def test_one_failing_model_does_not_stop_the_others(local_base_template: str) -> None:
    result = run_build(env={"MODELS": "max-missing-model max-example-digit-classifier", "PUSH": "0",
                            "TAG": "failure-test", "BASE_IMAGE_TEMPLATE": local_base_template})
    assert result.returncode == 1, result
    rows = summary_rows(result.stdout)
    assert rows["max-missing-model"][2] == "error: build failed"
    assert rows["max-example-digit-classifier"][0] == FAILURE_TEST_IMAGE
    assert re.match(r"^sha256:[0-9a-f]{64} \(local id\)$", rows["max-example-digit-classifier"][2])
    assert "[1/2] max-missing-model: FAILED" in result.stdout
    assert "[2/2] max-example-digit-classifier: done" in result.stdout
    assert list(next_steps(result.stdout)) == ["max-example-digit-classifier"]
    assert result.stderr.splitlines()[-1] == "error: 1 of 2 models failed"


def test_fail_fast_stops_at_the_first_failure(local_base_template: str) -> None:
    result = run_build("--fail-fast", env={"MODELS": "max-missing-model max-example-digit-classifier",
                                           "PUSH": "0", "TAG": "failure-test",
                                           "BASE_IMAGE_TEMPLATE": local_base_template})
    assert result.returncode == 1, result
    assert list(summary_rows(result.stdout)) == ["max-missing-model"]
    assert "[2/2]" not in result.stdout


def test_pushing_to_a_registry_without_login_is_refused(registry: str, tmp_path: Any) -> None:
    result = run_build(env={"MODELS": "max-example-digit-classifier", "USERNAME": "me",
                            "REGISTRY": "registry.invalid:5000", "DOCKER_CONFIG": str(tmp_path)})
    assert_usage_error(result, "not logged in to registry.invalid:5000", "docker login registry.invalid:5000")
    hub = run_build(env={"MODELS": "max-example-digit-classifier", "USERNAME": "me", "DOCKER_CONFIG": str(tmp_path)})
    assert_usage_error(hub, "not logged in to docker.io", "docker login")


def test_a_login_in_the_docker_config_is_accepted(local_base_template: str, tmp_path: Any) -> None:
    auth = base64.b64encode(b"me:secret").decode("ascii")
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"registry.invalid:5000": {"auth": auth}}}))
    # Past the login check the build itself fails (its base is missing), before any push.
    result = run_build(env={"MODELS": "max-missing-model", "USERNAME": "me", "REGISTRY": "registry.invalid:5000",
                            "DOCKER_CONFIG": str(tmp_path), "BASE_IMAGE_TEMPLATE": local_base_template})
    assert result.returncode == 1, result
    assert summary_rows(result.stdout)["max-missing-model"][2] == "error: build failed"
