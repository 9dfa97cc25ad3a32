#!/usr/bin/env python3
"""Writes each platform's deployment file for a model built by build.sh, set for horizontal scale.

    deploy_files.py check --catalogue examples/catalogue.json MODEL...
    deploy_files.py write --catalogue examples/catalogue.json --out DIR --model MODEL --image REF
                          [--digest sha256:...] [--max-instances N] [--dry-run]

`write` creates DIR/MODEL/ with:
  knative-service.yaml   Knative Serving Service (serving.knative.dev/v1)
  cloudrun-service.yaml  the same schema with Cloud Run's annotations (gcloud run services replace)
  lambda-template.yaml   AWS SAM template: an image function with a function URL
  openwhisk-manifest.yaml  wskdeploy manifest: a raw web action from the image
  NEXT-STEPS.txt         the commands that deploy the files, Code Engine's included

A MAX model is one CPU-bound Flask process, so every file gives each container one request at a
time and lets the platform add containers (up to a bound) and remove them all when idle. Memory and
timeout come from the catalogue. The files appear all at once or not at all: they are written to a
temporary directory beside DIR/MODEL and moved into place. Warnings name the platform bound a value
crosses; errors (exit 2) name what to fix. Standard library only; Python 3.6 and later.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

CONTAINER_PORT = 8080
DEFAULT_MAX_INSTANCES = 10
# One request per container: the model's process computes one prediction at a time.
CONTAINER_CONCURRENCY = 1
EXIT_USAGE = 2

# Platform bounds (each platform's documented quotas).
KNATIVE_MAX_TIMEOUT_S = 600  # max-revision-timeout-seconds, the default cluster setting
CLOUDRUN_MAX_TIMEOUT_S = 3600
CLOUDRUN_MIN_MEMORY_MB = 512  # the second generation execution environment's minimum
CLOUDRUN_MAX_MEMORY_MB = 32768
CODEENGINE_MAX_TIMEOUT_S = 600
LAMBDA_MIN_MEMORY_MB = 128
LAMBDA_MAX_MEMORY_MB = 10240
LAMBDA_MAX_TIMEOUT_S = 900
OPENWHISK_MIN_MEMORY_MB = 128
OPENWHISK_STOCK_MAX_MEMORY_MB = 512  # whisk.memory.max in a stock deployment
OPENWHISK_STOCK_MAX_TIMEOUT_MS = 300000  # whisk.time-limit.max
# Cloud Run's CPUs for a memory limit: (more than MB, CPUs); 1 CPU up to 4 GiB.
CLOUDRUN_CPUS = ((24576, 8), (16384, 6), (8192, 4), (4096, 2))
# Code Engine's CPU/memory pairs: the smallest that holds the model.
CODEENGINE_SIZES = (("0.25", "0.5G", 512), ("0.5", "1G", 1024), ("1", "2G", 2048), ("1", "4G", 4096),
                    ("2", "8G", 8192), ("4", "16G", 16384), ("8", "32G", 32768))

ECR_HOST = re.compile(r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# Registries Cloud Run pulls from without a remote repository in Artifact Registry.
CLOUDRUN_HOSTS = re.compile(r"^(docker\.io|index\.docker\.io|registry-1\.docker\.io|gcr\.io|[a-z]+\.gcr\.io"
                            r"|[a-z0-9-]+-docker\.pkg\.dev)$")
LOOPBACK_HOSTS = re.compile(r"^(localhost|127\.[0-9.]+|\[::1\])(:[0-9]+)?$")
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


class UsageError(Exception):
    pass


# ---------------------------------------------------------------------------------------- YAML

PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
YAML_WORDS = frozenset(["y", "n", "yes", "no", "on", "off", "true", "false", "null"])


def _scalar(value: Any) -> str:
    """A YAML scalar: booleans and integers plain, every string double-quoted (JSON's escapes are
    YAML's), so no value is ever read back as another type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def _key(key: str) -> str:
    return key if PLAIN_KEY.match(key) and key.lower() not in YAML_WORDS else json.dumps(key)


def to_yaml(value: Any, indent: int = 0) -> List[str]:
    """Block-style YAML lines for nested dicts, lists and scalars."""
    pad = " " * indent
    lines = []  # type: List[str]
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append("%s%s:" % (pad, _key(key)))
                lines.extend(to_yaml(item, indent + 2))
            else:
                lines.append("%s%s: %s" % (pad, _key(key), _flow(item)))
    else:
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = to_yaml(item, indent + 2)
                lines.append("%s- %s" % (pad, nested[0][indent + 2:]))
                lines.extend(nested[1:])
            else:
                lines.append("%s- %s" % (pad, _flow(item)))
    return lines


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def yaml_document(header: List[str], value: Any) -> str:
    return "".join("# %s\n" % line if line else "#\n" for line in header) + "\n".join(to_yaml(value)) + "\n"


# ------------------------------------------------------------------------------------- inputs

def read_catalogue(path: str) -> Dict[str, Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as catalogue:
            entries = json.load(catalogue)["models"]
        return dict((entry["name"], entry) for entry in entries)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError("cannot read the catalogue %s: %s" % (path, error))


def limits_of(catalogue: Dict[str, Dict[str, Any]], model: str, catalogue_path: str) -> Tuple[int, int]:
    entry = catalogue.get(model)
    if entry is None:
        raise UsageError("%s is not in %s, so its memory and timeout are unknown: add an entry with memory_mb "
                         "and timeout_ms, or leave out --deploy-dir" % (model, catalogue_path))
    memory, timeout = entry.get("memory_mb"), entry.get("timeout_ms")
    if not isinstance(memory, int) or isinstance(memory, bool) or memory <= 0 \
            or not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
        raise UsageError("%s in %s needs positive whole numbers memory_mb and timeout_ms, not %r and %r"
                         % (model, catalogue_path, memory, timeout))
    return memory, timeout


def registry_host(image: str) -> str:
    """The registry part of a reference, as docker reads it (docker.io when the first part is no host)."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def platform_name(model: str, length: int) -> str:
    """The model's name as the platforms accept it: lowercase letters, digits and '-'."""
    return re.sub(r"[._]", "-", model)[:length].rstrip("-")


class Plan(object):
    """One model's values for every platform, and the warnings about them."""

    def __init__(self, model: str, image: str, digest: str, memory_mb: int, timeout_ms: int, max_instances: int):
        self.model = model
        self.image = image
        # Pinned by digest when known: every new container runs exactly the image that was tested.
        repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        self.pinned = image if "@" in image else ("%s@%s" % (repository, digest) if digest else image)
        self.memory_mb = memory_mb
        self.timeout_ms = timeout_ms
        self.seconds = -(-timeout_ms // 1000)
        self.max_instances = max_instances
        self.host = registry_host(image)
        self.warnings = []  # type: List[str]

    def bounded(self, platform: str, what: str, value: int, low: int, high: int, unit: str, note: str = "") -> int:
        if value < low:
            self.warnings.append("%s: %s %d %s is below the platform's minimum %d %s; the file says %d%s"
                                 % (platform, what, value, unit, low, unit, low, note))
            return low
        if value > high:
            self.warnings.append("%s: %s %d %s is above the platform's maximum %d %s; the file says %d%s"
                                 % (platform, what, value, unit, high, unit, high, note))
            return high
        return value

    def check_registry(self) -> None:
        if LOOPBACK_HOSTS.match(self.host):
            self.warnings.append("every platform: %s is a loopback registry, which no platform can pull from; push "
                                 "the image to a registry the platform reaches and change the image in the files"
                                 % self.host)
            return
        if not CLOUDRUN_HOSTS.match(self.host):
            self.warnings.append("cloudrun: Cloud Run pulls from Artifact Registry, Container Registry or Docker Hub, "
                                 "not %s: copy the image there (or add an Artifact Registry remote repository)"
                                 % self.host)
        if not ECR_HOST.match(self.host):
            self.warnings.append("lambda: Lambda runs images from Amazon ECR only, not %s: push it there with the "
                                 "commands in NEXT-STEPS.txt, which pass the ECR reference to the template" % self.host)
        if self.host != "docker.io":
            self.warnings.append("openwhisk: a stock OpenWhisk pulls docker actions from Docker Hub; the invokers of "
                                 "this deployment must be able to pull from %s" % self.host)


# ------------------------------------------------------------------------------------- files

def knative_service(plan: Plan) -> str:
    name = platform_name(plan.model, 63)
    timeout = plan.bounded("knative", "timeout", plan.seconds, 1, KNATIVE_MAX_TIMEOUT_S, "s",
                           " (or raise max-revision-timeout-seconds in config-defaults)")
    memory = "%dMi" % plan.memory_mb
    service = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
        "spec": {"template": {
            "metadata": {"annotations": {
                "autoscaling.knative.dev/min-scale": "0",
                "autoscaling.knative.dev/max-scale": str(plan.max_instances),
                # Scale on requests in flight, one per container.
                "autoscaling.knative.dev/metric": "concurrency",
                "autoscaling.knative.dev/target": str(CONTAINER_CONCURRENCY),
            }},
            "spec": {
                "containerConcurrency": CONTAINER_CONCURRENCY,
                "timeoutSeconds": timeout,
                "containers": [{
                    "image": plan.pinned,
                    "ports": [{"name": "http1", "containerPort": CONTAINER_PORT}],
                    "resources": {"requests": {"cpu": "1", "memory": memory},
                                  "limits": {"cpu": "1", "memory": memory}},
                    # The runtime opens its port only once the model has loaded.
                    "readinessProbe": {"tcpSocket": {"port": CONTAINER_PORT}},
                }],
            },
        }},
    }
    return yaml_document([
        "Knative Serving Service for %s (kubectl apply -f this file)." % plan.model,
        "Scale: one request per container (containerConcurrency 1, autoscaling target 1), no container",
        "when idle (min-scale 0), at most %d (max-scale). The readiness probe is a TCP connect on" % plan.max_instances,
        "port %d: the runtime listens only once the model has loaded." % CONTAINER_PORT,
    ], service)


def cloudrun_cpu(memory_mb: int) -> str:
    return next((str(cpus) for above, cpus in CLOUDRUN_CPUS if memory_mb > above), "1")


def cloudrun_service(plan: Plan) -> str:
    name = platform_name(plan.model, 49)
    memory = plan.bounded("cloudrun", "memory", plan.memory_mb, CLOUDRUN_MIN_MEMORY_MB, CLOUDRUN_MAX_MEMORY_MB, "MiB")
    timeout = plan.bounded("cloudrun", "timeout", plan.seconds, 1, CLOUDRUN_MAX_TIMEOUT_S, "s")
    # Cloud Run's startup probe may last 240 s at most: 48 tries 5 s apart.
    service = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {
            "metadata": {"annotations": {
                "autoscaling.knative.dev/minScale": "0",
                "autoscaling.knative.dev/maxScale": str(plan.max_instances),
                "run.googleapis.com/startup-cpu-boost": "true",
                "run.googleapis.com/execution-environment": "gen2",
            }},
            "spec": {
                "containerConcurrency": CONTAINER_CONCURRENCY,
                "timeoutSeconds": timeout,
                "containers": [{
                    "image": plan.pinned,
                    "ports": [{"name": "http1", "containerPort": CONTAINER_PORT}],
                    "resources": {"limits": {"cpu": cloudrun_cpu(memory), "memory": "%dMi" % memory}},
                    "startupProbe": {"tcpSocket": {"port": CONTAINER_PORT}, "periodSeconds": 5,
                                     "timeoutSeconds": 5, "failureThreshold": 48},
                }],
            },
        }},
    }
    return yaml_document([
        "Google Cloud Run service for %s (gcloud run services replace this file --region REGION)." % plan.model,
        "Scale: one request per instance (containerConcurrency 1; Cloud Run's default is 80), no instance",
        "when idle (minScale 0), at most %d (maxScale); the CPU is boosted while the model loads" % plan.max_instances,
        "(startup-cpu-boost), and the startup probe waits for the port the runtime opens once it has.",
    ], service)


def codeengine_command(plan: Plan) -> str:
    name = platform_name(plan.model, 35)
    cpu, memory = next(((cpu, memory) for cpu, memory, limit in CODEENGINE_SIZES if plan.memory_mb <= limit),
                       CODEENGINE_SIZES[-1][:2])
    if plan.memory_mb > CODEENGINE_SIZES[-1][2]:
        plan.warnings.append("codeengine: memory %d MB is above the largest size, %s; the command says %s"
                             % (plan.memory_mb, memory, memory))
    timeout = plan.bounded("codeengine", "timeout", plan.seconds, 1, CODEENGINE_MAX_TIMEOUT_S, "s")
    return ("ibmcloud ce application create --name %s --image %s --port %d --cpu %s --memory %s "
            "--request-timeout %d --concurrency %d --concurrency-target %d --min-scale 0 --max-scale %d"
            % (name, plan.pinned, CONTAINER_PORT, cpu, memory, timeout, CONTAINER_CONCURRENCY,
               CONTAINER_CONCURRENCY, plan.max_instances))


def lambda_template(plan: Plan) -> str:
    memory = plan.bounded("lambda", "memory", plan.memory_mb, LAMBDA_MIN_MEMORY_MB, LAMBDA_MAX_MEMORY_MB, "MB")
    timeout = plan.bounded("lambda", "timeout", plan.seconds, 1, LAMBDA_MAX_TIMEOUT_S, "s")
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": "%s as an AWS Lambda container image function with a function URL" % plan.model,
        "Parameters": {
            "ImageUri": {"Type": "String", "Default": plan.pinned,
                         "Description": "The image in Amazon ECR, in the function's region and account"},
            "FunctionUrlAuthType": {"Type": "String", "Default": "AWS_IAM", "AllowedValues": ["AWS_IAM", "NONE"],
                                    "Description": "AWS_IAM: callers sign requests (SigV4); NONE: a public URL"},
            "MaxConcurrency": {"Type": "String", "Default": "", "AllowedPattern": "^[0-9]*$",
                               "Description": "Reserved concurrency: the most instances at once (empty: the "
                                              "account's unreserved pool)"},
        },
        "Conditions": {"HasMaxConcurrency": {"Fn::Not": [{"Fn::Equals": [{"Ref": "MaxConcurrency"}, ""]}]}},
        "Resources": {"Model": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "PackageType": "Image",
                "ImageUri": {"Ref": "ImageUri"},
                "Architectures": ["x86_64"],
                "MemorySize": memory,
                "Timeout": timeout,
                "ReservedConcurrentExecutions": {"Fn::If": ["HasMaxConcurrency", {"Ref": "MaxConcurrency"},
                                                            {"Ref": "AWS::NoValue"}]},
                "FunctionUrlConfig": {"AuthType": {"Ref": "FunctionUrlAuthType"}},
            },
        }},
        "Outputs": {
            "FunctionUrl": {"Description": "The model's API: append its routes (e.g. model/metadata)",
                            "Value": {"Fn::GetAtt": ["ModelUrl", "FunctionUrl"]}},
            "FunctionName": {"Value": {"Ref": "Model"}},
        },
    }
    return yaml_document([
        "AWS SAM template for %s (sam deploy; see NEXT-STEPS.txt for the ECR push before it)." % plan.model,
        "Scale: Lambda gives each instance one request at a time and starts instances as requests",
        "arrive, none when idle; MaxConcurrency (reserved concurrency) bounds them when set.",
    ], template)


def openwhisk_manifest(plan: Plan) -> str:
    timeout = plan.bounded("openwhisk", "timeout", plan.timeout_ms, 100, 600000, "ms")
    if plan.memory_mb < OPENWHISK_MIN_MEMORY_MB:
        plan.warnings.append("openwhisk: memory %d MB is below the minimum 128 MB; the manifest says 128"
                             % plan.memory_mb)
    memory = max(plan.memory_mb, OPENWHISK_MIN_MEMORY_MB)
    header = [
        "Apache OpenWhisk manifest for %s (wskdeploy -m this file)." % plan.model,
        "Scale: one activation per container (the platform default, which wskdeploy cannot change);",
        "the invokers start a container per concurrent activation, up to the namespace's limits.",
    ]
    if memory > OPENWHISK_STOCK_MAX_MEMORY_MB or timeout > OPENWHISK_STOCK_MAX_TIMEOUT_MS:
        header.append("A stock deployment allows at most %d MB and %d ms: the operator must raise "
                      "whisk.memory.max / whisk.time-limit.max (and the invokers' user memory) first."
                      % (OPENWHISK_STOCK_MAX_MEMORY_MB, OPENWHISK_STOCK_MAX_TIMEOUT_MS))
    if memory > OPENWHISK_STOCK_MAX_MEMORY_MB:
        plan.warnings.append("openwhisk: memory %d MB is above a stock deployment's maximum %d MB: the operator must "
                             "raise whisk.memory.max (CONFIG_whisk_memory_max) to deploy it"
                             % (memory, OPENWHISK_STOCK_MAX_MEMORY_MB))
    if timeout > OPENWHISK_STOCK_MAX_TIMEOUT_MS:
        plan.warnings.append("openwhisk: timeout %d ms is above a stock deployment's maximum %d ms: the operator "
                             "must raise whisk.time-limit.max" % (timeout, OPENWHISK_STOCK_MAX_TIMEOUT_MS))
    manifest = {"packages": {"default": {"actions": {plan.model: {
        "docker": plan.pinned,
        "web": "raw",
        "limits": {"memorySize": memory, "timeout": timeout},
    }}}}}
    return yaml_document(header, manifest)


def next_steps(plan: Plan, directory: str) -> str:
    """The commands that deploy the files, per platform."""
    model = plan.model
    cloudrun = platform_name(model, 49)
    lambda_name = platform_name(model, 64)
    tag = plan.image.rsplit(":", 1)[1] if ":" in plan.image.rsplit("/", 1)[-1] else "latest"
    ecr = "$AWS_ACCOUNT_ID.dkr.ecr.$AWS_REGION.amazonaws.com"
    lines = [
        "# %s: deploy the files in %s. Each platform gives a container one request at a time and" % (model, directory),
        "# adds containers as requests arrive (at most %d), none when idle." % plan.max_instances,
        "",
        "# Knative Serving",
        "kubectl apply -f %s/knative-service.yaml" % directory,
        "kubectl get ksvc %s   # its URL" % platform_name(model, 63),
        "",
        "# Google Cloud Run (the image must be in Artifact Registry, Container Registry or Docker Hub)",
        "gcloud run services replace %s/cloudrun-service.yaml --region $REGION" % directory,
        "gcloud run services describe %s --region $REGION --format 'value(status.url)'" % cloudrun,
        "",
        "# IBM Code Engine (in the selected project)",
        codeengine_command(plan),
        "",
        "# AWS Lambda: the image goes to Amazon ECR first (AWS_ACCOUNT_ID, AWS_REGION set)",
        "aws ecr create-repository --repository-name %s --region $AWS_REGION" % model,
        "aws ecr get-login-password --region $AWS_REGION | docker login --username AWS --password-stdin %s" % ecr,
        "docker tag %s %s/%s:%s" % (plan.image, ecr, model, tag),
        "docker push %s/%s:%s" % (ecr, model, tag),
        # sam deploy wants an image repository for an image function; the image is in it already.
        "sam deploy --template-file %s/lambda-template.yaml --stack-name %s --region $AWS_REGION "
        "--capabilities CAPABILITY_IAM --image-repository %s/%s "
        "--parameter-overrides ImageUri=%s/%s:%s FunctionUrlAuthType=AWS_IAM"
        % (directory, lambda_name, ecr, model, ecr, model, tag),
        "aws cloudformation describe-stacks --stack-name %s --region $AWS_REGION "
        "--query \"Stacks[0].Outputs[?OutputKey=='FunctionUrl'].OutputValue\" --output text" % lambda_name,
        "",
        "# Apache OpenWhisk: with wskdeploy, or the same action with wsk",
        "wskdeploy -m %s/openwhisk-manifest.yaml" % directory,
        "wsk action update %s --docker %s --web raw -m %d -t %d --concurrency %d"
        % (model, plan.pinned, max(plan.memory_mb, OPENWHISK_MIN_MEMORY_MB), min(max(plan.timeout_ms, 100), 600000),
           CONTAINER_CONCURRENCY),
        "wsk action get %s --url" % model,
    ]
    return "\n".join(lines) + "\n"


FILES = (
    ("knative-service.yaml", knative_service),
    ("cloudrun-service.yaml", cloudrun_service),
    ("lambda-template.yaml", lambda_template),
    ("openwhisk-manifest.yaml", openwhisk_manifest),
)


def render(plan: Plan, directory: str) -> List[Tuple[str, str]]:
    plan.check_registry()
    files = [(name, make(plan)) for name, make in FILES]
    files.append(("NEXT-STEPS.txt", next_steps(plan, directory)))
    return files


def write_atomically(target: str, files: List[Tuple[str, str]]) -> None:
    """DIR/MODEL holds every file or, if anything fails, what it held before."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix="." + os.path.basename(target) + ".", dir=parent)
    previous = None  # type: Optional[str]
    try:
        for name, text in files:
            with open(os.path.join(staging, name), "w", encoding="utf-8") as output:
                output.write(text)
        os.chmod(staging, 0o755)
        if os.path.lexists(target):
            previous = tempfile.mkdtemp(prefix="." + os.path.basename(target) + ".old.", dir=parent)
            os.rmdir(previous)
            os.rename(target, previous)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if previous is not None and not os.path.lexists(target):
            os.rename(previous, target)
            previous = None
        raise
    finally:
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)


# --------------------------------------------------------------------------------- command line

def positive(text: str) -> int:
    if not re.match(r"^[0-9]{1,6}$", text) or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number from 1 to 999999, not %r" % text)
    return int(text)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deploy_files.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    check = commands.add_parser("check", help="exit 2 unless every model has limits in the catalogue")
    check.add_argument("--catalogue", required=True)
    check.add_argument("models", nargs="+", metavar="MODEL")
    write = commands.add_parser("write", help="write one model's files into OUT/MODEL")
    write.add_argument("--catalogue", required=True)
    write.add_argument("--out", required=True, metavar="DIR")
    write.add_argument("--model", required=True)
    write.add_argument("--image", required=True, metavar="REF")
    write.add_argument("--digest", default="", help="the image's registry digest, sha256:...")
    write.add_argument("--max-instances", type=positive, default=DEFAULT_MAX_INSTANCES, metavar="N")
    write.add_argument("--dry-run", action="store_true", help="print the files instead of writing them")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("a command is needed: check or write")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        catalogue = read_catalogue(args.catalogue)
        if args.command == "check":
            for model in args.models:
                limits_of(catalogue, model, args.catalogue)
            return 0
        memory_mb, timeout_ms = limits_of(catalogue, args.model, args.catalogue)
        if args.digest and not DIGEST.match(args.digest):
            raise UsageError("--digest must be sha256: and 64 hex digits, not %r" % args.digest)
        plan = Plan(args.model, args.image, args.digest, memory_mb, timeout_ms, args.max_instances)
        target = os.path.join(args.out, args.model)
        files = render(plan, target)
        for warning in plan.warnings:
            sys.stderr.write("warning: %s: %s\n" % (args.model, warning))
        if args.dry_run:
            for name, text in files:
                sys.stdout.write("would write %s:\n" % os.path.join(target, name))
                sys.stdout.write("".join("    %s\n" % line if line else "\n" for line in text.splitlines()))
            return 0
        write_atomically(target, files)
        for name, _ in files:
            sys.stdout.write("wrote %s\n" % os.path.join(target, name))
        return 0
    except UsageError as error:
        sys.stderr.write("error: %s\n" % error)
        return EXIT_USAGE
    except OSError as error:
        sys.stderr.write("error: cannot write the deployment files of %s into %s: %s\n"
                         % (args.model, args.out, error))
        return 1


if __name__ == "__main__":
    sys.exit(main())
