"""The image build.sh makes, run as a Lambda container image under AWS's Runtime Interface Emulator.

As AWS documents for images that do not carry the emulator: the binary is mounted into the
container and made its entrypoint, with the image's own command (`python openwhisk.py`) after it.
Every recorded sample goes in as API Gateway REST (v1), HTTP API (v2), function URL and ALB (with
and without multi-value headers) events; the response rebuilt from each result must equal the base
image's own server's answer. Needs the container engine: runs only with SMX_DOCKER=1, like
test_build.py, whose fixtures build the MAX-style base images.
"""

import http.client
import json
import os
import subprocess
import time
from typing import Dict, Iterator, Tuple

import pytest

from lambda_events import INVOCATIONS, KINDS, event_for, forwarded_headers, header, http_response, script_name_of
from samples import SampleRequest, check_expected, example_model_dirs, load_samples, media_type, target
from support import ROOT, free_port, lambda_emulator
from test_build import (NONROOT_MODEL, Container, base_images, docker, registry, run_build,  # noqa: F401
                        start_container, summary_rows)

IMAGE_TAG = "lambda-test"


@pytest.fixture(scope="module")
def rie_binary() -> str:
    return lambda_emulator()


@pytest.fixture(scope="module")
def lambda_images(base_images: Dict[str, str]) -> Iterator[Dict[str, str]]:  # noqa: F811
    """build.sh's images of the example models, built locally (no push)."""
    models = sorted(base_images)
    result = run_build(env={"MODELS": " ".join(models), "PUSH": "0", "TAG": IMAGE_TAG})
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    rows = summary_rows(result.stdout)
    images = dict((model, rows[model][0]) for model in models)
    try:
        yield images
    finally:
        docker("rmi", "--force", *images.values(), check=False)


def invoke(port: int, event: object, timeout: float = 120) -> Tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", INVOCATIONS, body=json.dumps(event).encode("utf-8"),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def start_function(image: str, rie: str) -> Container:
    """The image under the emulator; returns once an invocation is answered (the model is loaded)."""
    container_id = docker("run", "--detach", "--publish", "127.0.0.1::8080", "--volume", rie + ":/aws-lambda-rie:ro",
                          "--entrypoint", "/aws-lambda-rie", image, "python", "openwhisk.py").strip()
    port = int(docker("port", container_id, "8080/tcp").split()[0].rsplit(":", 1)[1])
    deadline = time.time() + 120
    while True:
        try:
            # docker's port proxy accepts before the emulator listens: only an answer counts.
            status, _ = invoke(port, {"warm-up": True})
            if status == 200:
                return Container(container_id, port)
        except (OSError, http.client.HTTPException):
            pass
        if time.time() > deadline:
            raise AssertionError("the function in %s did not answer within 120 s:\n%s" % (
                image, docker("logs", container_id, check=False)))
        time.sleep(0.3)


@pytest.fixture(scope="module")
def functions(lambda_images: Dict[str, str], base_images: Dict[str, str],  # noqa: F811
              rie_binary: str) -> Iterator[Dict[str, Tuple[Container, Container]]]:
    """Per model: the Lambda function under the emulator, and the base image's own server (5000)."""
    started = []  # type: List[str]
    containers = {}
    try:
        for model, image in sorted(lambda_images.items()):
            function = start_function(image, rie_binary)
            started.append(function.container_id)
            own = start_container(base_images[model], 5000, "/model/metadata")
            started.append(own.container_id)
            containers[model] = (function, own)
        yield containers
    finally:
        if started:
            docker("rm", "--force", *started, check=False)


def send_own(port: int, sample: SampleRequest, kind: str) -> Tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        headers = dict(forwarded_headers(kind, list(sample.headers.items())))
        connection.request(sample.method, target(sample), body=sample.body or None, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def test_every_sample_as_every_event_kind_answers_like_the_models_own_server(
        functions: Dict[str, Tuple[Container, Container]]) -> None:
    checked = 0
    swagger_base = {}  # type: Dict[str, str]
    for model_dir in example_model_dirs():
        model = os.path.basename(model_dir)
        function, own = functions[model]
        for sample in load_samples(model_dir):
            for kind in KINDS:
                where = "%s %s as %s" % (model, sample.name, kind)
                event = event_for(kind, sample.method, sample.path, sample.query, list(sample.headers.items()),
                                  sample.body)
                status, body = invoke(function.port, event)
                assert status == 200, (where, body[:500])
                status, headers, body = http_response(json.loads(body.decode("utf-8")))
                content_type = header(headers, "Content-Type")
                check_expected(sample, status, content_type, body)
                direct = send_own(own.port, sample, kind)
                assert (status, media_type(content_type)) == (direct[0], media_type(direct[1])), where
                prefix = script_name_of(kind)
                if media_type(content_type) == "application/json":
                    lambda_json, direct_json = json.loads(body.decode("utf-8")), json.loads(direct[2].decode("utf-8"))
                    if isinstance(direct_json, dict) and "basePath" in direct_json:
                        # The function's app is mounted under the stage, and its Swagger document says so;
                        # the own server (no proxy in front) is mounted at the root. flask-restplus builds
                        # the document once, on its first request: the first kind served fixes basePath
                        # (a deployed function gets one kind, from one prefix).
                        first = swagger_base.setdefault(model, prefix or "/")
                        assert lambda_json.pop("basePath") == first, where
                        direct_json.pop("basePath")
                    assert lambda_json == direct_json, where
                else:
                    # Pages link to the app's routes under the mount prefix (the Swagger UI does), and
                    # with the scheme the gateway says the client used (https).
                    page = body.replace(b"https://", b"http://").replace(prefix.encode("ascii"), b"") if prefix \
                        else body.replace(b"https://", b"http://")
                    assert page == direct[2], where
                checked += 1
    assert checked >= 3 * len(KINDS) * len(functions)


SAM_TEMPLATE = """AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Globals:
  Api:
    BinaryMediaTypes: ['*~1*']
Resources:
  Model:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      ImageUri: {image}
      MemorySize: 1024
      Timeout: 60
      Events:
        Root:
          Type: Api
          Properties:
            Path: /
            Method: ANY
        Proxy:
          Type: Api
          Properties:
            Path: /{{proxy+}}
            Method: ANY
"""


@pytest.fixture(scope="module")
def sam() -> str:
    """The `sam` command of AWS SAM CLI, in a virtualenv of its own (scripts/lambda-rie.sh --sam)."""
    result = subprocess.run([os.path.join(ROOT, "scripts", "lambda-rie.sh"), "--sam"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=900)
    if result.returncode != 0:
        pytest.fail("scripts/lambda-rie.sh --sam could not install the SAM CLI:\n" + result.stderr[-3000:])
    return result.stdout.strip()


def send(port: int, sample: SampleRequest, timeout: float = 120) -> Tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        # Accept as curl sends it: a REST API returns a base64 body as binary only when the request's
        # Accept matches one of its binary media types.
        connection.request(sample.method, target(sample), body=sample.body or None,
                           headers=dict(sample.headers, Host="127.0.0.1", Accept="*/*"))
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def sam_apis(sam: str, lambda_images: Dict[str, str], functions: Dict[str, Tuple[Container, Container]],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, int]]:
    """Per model: `sam local start-api` serving the image behind an emulated REST API, with warm containers."""
    processes = {}  # type: Dict[str, Tuple[subprocess.Popen, str]]
    ports = {}
    rapid_images = []  # type: List[str]
    try:
        for model, image in sorted(lambda_images.items()):
            if model == NONROOT_MODEL:
                # SAM cannot: it layers its emulator onto the image with a RUN step (mv, chmod) that
                # runs as the image's USER, and a non-root user may not write there. Lambda itself
                # runs any image as its own user, so this is SAM's limit, not the image's.
                continue
            directory = tmp_path_factory.mktemp("sam-" + model)
            (directory / "template.yaml").write_text(SAM_TEMPLATE.format(image=image))
            port = free_port()
            log_path = str(directory / "sam.log")
            with open(log_path, "wb") as log:
                processes[model] = (subprocess.Popen(
                    [sam, "local", "start-api", "--port", str(port), "--host", "127.0.0.1", "--skip-pull-image",
                     "--warm-containers", "EAGER"], cwd=str(directory), stdout=log, stderr=subprocess.STDOUT,
                    env=dict(os.environ, SAM_CLI_TELEMETRY="0")), log_path)
            ports[model] = port
            # SAM layers its emulator onto the image as <repository>:rapid-<arch>.
            rapid_images.append(image.rsplit(":", 1)[0] + ":rapid-x86_64")
        deadline = time.time() + 300
        for model, port in ports.items():
            while True:
                try:
                    metadata = [sample for sample in load_samples(os.path.join(ROOT, "examples", model))
                                if sample.path == "/model/metadata"][0]
                    if send(port, metadata, timeout=30)[0] == 200:
                        break
                except (OSError, http.client.HTTPException):
                    pass
                process, log_path = processes[model]
                if process.poll() is not None or time.time() > deadline:
                    with open(log_path, encoding="utf-8", errors="replace") as log:
                        raise AssertionError("sam local start-api did not serve %s:\n%s" % (model, log.read()[-3000:]))
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
        docker("rmi", "--force", *rapid_images, check=False)


def test_sam_local_start_api_serves_every_sample_like_the_models_own_server(
        sam_apis: Dict[str, int], functions: Dict[str, Tuple[Container, Container]]) -> None:
    """End to end through AWS's own tools: SAM CLI emulates API Gateway (a REST API with binary media
    types */*, so payload 1.0 events with base64 bodies) in front of the image under its emulator."""
    checked = 0
    for model_dir in example_model_dirs():
        model = os.path.basename(model_dir)
        if model not in sam_apis:
            continue  # the non-root image, see sam_apis
        _, own = functions[model]
        for sample in load_samples(model_dir):
            status, content_type, body = send(sam_apis[model], sample)
            check_expected(sample, status, content_type, body)
            direct = send(own.port, sample)
            assert (status, media_type(content_type)) == (direct[0], media_type(direct[1])), sample.name
            if media_type(content_type) == "application/json":
                assert json.loads(body.decode("utf-8")) == json.loads(direct[2].decode("utf-8")), sample.name
            else:
                assert body == direct[2], sample.name
            checked += 1
    assert sam_apis and checked >= 3 * len(sam_apis)
