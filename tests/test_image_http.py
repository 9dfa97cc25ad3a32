"""The image build.sh makes, run by the docker engine as Knative and Cloud Run run it.

Each container gets PORT, K_SERVICE and K_REVISION, as those platforms set them, and is sent every
recorded example sample with curl; the answers must equal the model's own server's, running from
the same base image. `docker stop` (SIGTERM) during a slow request must still complete it, and a
probe polling the port must see nothing until the model has loaded.

Needs a container engine: runs only with SMX_DOCKER=1, as tests/test_build.py
(`eval "$(scripts/container-engine.sh env)"`). Nothing is pushed.
"""

import http.client
import os
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any, Dict, Iterator, List, NamedTuple, Tuple

import pytest

from samples import SampleRequest, check_expected, curl_args, example_model_dirs, load_samples, target
from support import ECHO_APP
from test_build import (BASE_DOCKERFILE, DEFAULT_BASE_REPO, build_base_image, docker, published_port, run_build,
                        wait_for_http)

MODEL_DIRS = example_model_dirs()
SAMPLES = [sample for model_dir in MODEL_DIRS for sample in load_samples(model_dir)]
SAMPLE_IDS = ["%s/%s" % (os.path.basename(sample.model_dir), sample.name) for sample in SAMPLES]
ECHO_MODEL = os.path.basename(ECHO_APP)
USERNAME = "smx-http-test"
TAG = "http-test"
# Not 8080: the runtime must listen where PORT says.
CONTAINER_PORT = 9090


class Container(NamedTuple):
    container_id: str
    port: int  # published on 127.0.0.1


@pytest.fixture(scope="module")
def engine() -> None:
    if os.environ.get("SMX_DOCKER") != "1":
        pytest.skip("needs a container engine: eval \"$(scripts/container-engine.sh env)\" and set SMX_DOCKER=1")
    if shutil.which("docker") is None:
        pytest.fail("SMX_DOCKER=1 but there is no docker client: run scripts/container-engine.sh start")
    info = subprocess.run(["docker", "info"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=60)
    if info.returncode != 0:
        pytest.fail("SMX_DOCKER=1 but the engine does not answer: " + info.stdout.strip()[-500:])


def build_echo_base_image(context_root: str) -> str:
    """quay.io/codait/max-test-echo:latest: the test app (a /slow route, a load delay) as a MAX-style image."""
    context = os.path.join(context_root, ECHO_MODEL)
    os.mkdir(context)
    shutil.copytree(ECHO_APP, os.path.join(context, "app"), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with open(os.path.join(context, "requirements.txt"), "w") as requirements:
        requirements.write("# maxfw and Flask come with the base\n")
    shutil.copy(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt",
                os.path.join(context, "ca-bundle.crt"))
    image = "%s/%s:latest" % (DEFAULT_BASE_REPO, ECHO_MODEL)
    docker("build", "--quiet", "--target", "max-image", "--tag", image, "--file", BASE_DOCKERFILE, context)
    return image


@pytest.fixture(scope="module")
def images(engine: None) -> Iterator[Dict[str, str]]:
    """build.sh run once over the example models and the echo app: model -> (base, built) images."""
    context_root = tempfile.mkdtemp(prefix="smx-http-base-")
    try:
        for model_dir in MODEL_DIRS:
            build_base_image(model_dir, context_root)
        build_echo_base_image(context_root)
    finally:
        shutil.rmtree(context_root)
    models = sorted([os.path.basename(model_dir) for model_dir in MODEL_DIRS] + [ECHO_MODEL])
    result = run_build("--no-push", "--tag", TAG, env={"MODELS": " ".join(models), "USERNAME": USERNAME})
    built = dict((model, "%s/%s:%s" % (USERNAME, model, TAG)) for model in models)
    try:
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
        yield built
    finally:
        docker("rmi", "--force", *built.values(), check=False)


def run_service(image: str, env: Dict[str, str]) -> Container:
    """The image started as Knative starts a revision's container (no probe: the caller decides)."""
    model = image.rsplit("/", 1)[1].split(":")[0]
    variables = {"PORT": str(CONTAINER_PORT), "K_SERVICE": model, "K_REVISION": model + "-00001",
                 "K_CONFIGURATION": model}
    variables.update(env)
    arguments = []  # type: List[str]
    for name, value in sorted(variables.items()):
        arguments += ["--env", "%s=%s" % (name, value)]
    container_id = docker("run", "--detach", "--publish", "127.0.0.1::%d" % CONTAINER_PORT, *arguments, image).strip()
    return Container(container_id, published_port(container_id, CONTAINER_PORT))


@pytest.fixture(scope="module")
def running(images: Dict[str, str]) -> Iterator[Dict[str, Tuple[Container, Container]]]:
    """Per example model: the built image on the HTTP platform, and the base image's own server."""
    started = []  # type: List[str]
    containers = {}
    try:
        for model_dir in MODEL_DIRS:
            model = os.path.basename(model_dir)
            service = run_service(images[model], {})
            started.append(service.container_id)
            own_id = docker("run", "--detach", "--publish", "127.0.0.1::5000",
                            "%s/%s:latest" % (DEFAULT_BASE_REPO, model)).strip()
            started.append(own_id)
            own = Container(own_id, published_port(own_id, 5000))
            containers[model_dir] = (service, own)
        for service, own in containers.values():
            wait_for_http(service.container_id, service.port, "/model/metadata")
            wait_for_http(own.container_id, own.port, "/model/metadata")
        yield containers
    finally:
        if started:
            docker("rm", "--force", *started, check=False)


def curl(port: int, sample: SampleRequest, body_path: str) -> Tuple[int, str, bytes]:
    # One Host for both servers: the Swagger UI page quotes it.
    command = (["curl", "--silent", "--show-error", "--max-time", "60", "--output", body_path,
                "--write-out", "%{http_code} %{content_type}", "-H", "Host: models.example:8080"]
               + curl_args(sample) + ["http://127.0.0.1:%d%s" % (port, target(sample))])
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                            timeout=90)
    assert result.returncode == 0, result.stderr
    status, _, content_type = result.stdout.partition(" ")
    with open(body_path, "rb") as body_file:
        return int(status), content_type, body_file.read()


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_every_sample_answers_as_the_models_own_server(running: Dict[str, Tuple[Container, Container]],
                                                       sample: SampleRequest, tmp_path: Any) -> None:
    service, own = running[sample.model_dir]
    answer = curl(service.port, sample, str(tmp_path / "service.body"))
    check_expected(sample, *answer)
    assert answer == curl(own.port, sample, str(tmp_path / "own.body"))


def test_the_container_names_its_platform_and_logs_json_lines(running: Dict[str, Tuple[Container, Container]]) -> None:
    service, _ = running[MODEL_DIRS[0]]
    logs = subprocess.run(["docker", "logs", service.container_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert "serving http (K_SERVICE is set)" in logs.stderr.splitlines()[0]
    assert "listening on 0.0.0.0:%d" % CONTAINER_PORT in logs.stderr
    assert '"httpRequest": {"requestMethod": "GET", "requestUrl": "http://' in logs.stdout


def exit_code(container_id: str) -> int:
    return int(docker("inspect", "--format", "{{.State.ExitCode}}", container_id).strip())


def test_docker_stop_during_a_slow_request_completes_it(images: Dict[str, str]) -> None:
    service = run_service(images[ECHO_MODEL], {})
    try:
        wait_for_http(service.container_id, service.port, "/model/metadata")
        connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
        try:
            connection.request("POST", "/slow?seconds=3", body=b"in-flight")
            time.sleep(1)  # the request is in the app
            stopping = threading.Thread(target=docker, args=("stop", "--time", "30", service.container_id))
            stopping.start()
            response = connection.getresponse()
            assert response.status == 200
            assert b'"tag": "in-flight"' in response.read()
        finally:
            connection.close()
        stopping.join(60)
        assert exit_code(service.container_id) == 0
        logs = docker("logs", service.container_id)  # stdout: the access-log line of the slow request
        assert '"requestUrl": "http://127.0.0.1:%d/slow?seconds=3", "status": 200' % service.port in logs
    finally:
        docker("rm", "--force", service.container_id, check=False)


def test_a_probe_sees_nothing_until_the_model_has_loaded(images: Dict[str, str]) -> None:
    # Unbuffered, so the model's load message is in the logs the moment it is printed.
    service = run_service(images[ECHO_MODEL], {"TEST_MODEL_LOAD_SECONDS": "4", "PYTHONUNBUFFERED": "1"})
    # A TCP probe on the container's port, from inside its network namespace, as the kubelet's.
    probe = ("import socket, sys\n"
             "try:\n"
             "    socket.create_connection(('127.0.0.1', %d), timeout=1).close()\n"
             "except OSError:\n"
             "    sys.exit(1)\n" % CONTAINER_PORT)
    try:
        refused = 0
        deadline = time.time() + 120
        while subprocess.run(["docker", "exec", service.container_id, "python", "-c", probe],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60).returncode != 0:
            refused += 1
            assert time.time() < deadline, docker("logs", service.container_id)
        logs = docker("logs", service.container_id)
        assert refused > 0
        assert "test model loaded" in logs  # printed by the model's load, before the port opened
        status = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
        try:
            status.request("GET", "/model/metadata")
            assert status.getresponse().status == 200
        finally:
            status.close()
    finally:
        docker("rm", "--force", service.container_id, check=False)
