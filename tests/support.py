"""Helpers shared by the tests: free ports, and the shim as a real subprocess on loopback."""

import http.client
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIM = os.path.join(ROOT, "openwhisk.py")
TEST_APPS = os.path.join(ROOT, "tests", "apps")
ECHO_APP = os.path.join(TEST_APPS, "max-test-echo")
SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class ServerProcess(object):
    """A server under test: a subprocess on a loopback port, its stdout and stderr in files."""

    def __init__(self, command: List[str], port: int, cwd: str, env: Optional[Dict[str, str]] = None,
                 log_dir: Optional[str] = None, name: str = "server"):
        self.name = name
        self.port = port
        log_dir = log_dir or tempfile.mkdtemp(prefix=name + "-logs-")
        self.stdout_path = os.path.join(log_dir, name + ".stdout")
        self.stderr_path = os.path.join(log_dir, name + ".stderr")
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(command, cwd=cwd, env=full_env, stdout=out, stderr=err)

    def wait_until(self, ready: Callable[[], bool], seconds: float = 60.0) -> None:
        deadline = time.time() + seconds
        while not ready():
            if self.process.poll() is not None:
                raise RuntimeError("%s exited with %s:\n%s" % (self.name, self.process.returncode, self.stderr()))
            if time.time() > deadline:
                raise RuntimeError("%s not ready within %.0f s:\n%s" % (self.name, seconds, self.stderr()))
            time.sleep(0.002)

    def wait_for_port(self) -> None:
        self.wait_until(lambda: accepts_connections(self.port))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stdout(self) -> str:
        with open(self.stdout_path, encoding="utf-8", errors="replace") as stream:
            return stream.read()

    def stderr(self) -> str:
        with open(self.stderr_path, encoding="utf-8", errors="replace") as stream:
            return stream.read()


def init_payload(env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The /init body the invoker sends for a --docker action (no code key)."""
    base_env = {
        "__OW_NAMESPACE": "guest",
        "__OW_ACTION_NAME": "/guest/max-test",
        "__OW_ACTION_VERSION": "0.0.1",
        "__OW_ACTIVATION_ID": uuid.uuid4().hex,
        "__OW_TRANSACTION_ID": uuid.uuid4().hex,
        "__OW_DEADLINE": str(int(time.time() * 1000) + 60000),
    }
    base_env.update(env or {})
    return {"value": {"name": "max-test", "binary": False, "main": "main", "env": base_env}}


def run_payload(value: Dict[str, Any], **metadata: Any) -> Dict[str, Any]:
    """The /run body the invoker sends: the params plus the activation metadata."""
    payload = {
        "value": value,
        "namespace": "guest",
        "action_name": "/guest/max-test",
        "action_version": "0.0.1",
        "activation_id": uuid.uuid4().hex,
        "transaction_id": uuid.uuid4().hex,
        "deadline": str(int(time.time() * 1000) + 60000),
        "api_key": "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:secret-key-not-to-be-logged",
    }
    payload.update(metadata)
    return payload


def raw_params(method: str = "post", path: str = "", query: str = "", headers: Optional[Dict[str, str]] = None,
               body: str = "") -> Dict[str, Any]:
    """The __ow_* params of a raw (--web raw) web action activation."""
    return {"__ow_method": method, "__ow_path": path, "__ow_query": query,
            "__ow_headers": headers or {}, "__ow_body": body}


class Shim(ServerProcess):
    """openwhisk.py running as a subprocess for a model directory, on a free loopback port."""

    def __init__(self, app_dir: str, env: Optional[Dict[str, str]] = None, args: Optional[List[str]] = None,
                 python: str = sys.executable):
        port = free_port()
        command = [python, SHIM, "--port", str(port), "--host", "127.0.0.1"] + list(args or [])
        ServerProcess.__init__(self, command, port, app_dir, env, name="shim")
        try:
            self.wait_for_port()
        except RuntimeError:
            self.stop()
            raise RuntimeError("shim did not start:\n" + self.stderr())

    def post(self, path: str, body: bytes, headers: Optional[Dict[str, str]] = None,
             timeout: float = 60.0) -> Tuple[int, Dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("POST", path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict((k.lower(), v) for k, v in response.getheaders()), response.read()
        finally:
            connection.close()

    def post_json(self, path: str, payload: Any) -> Tuple[int, Any]:
        status, headers, body = self.post(path, json.dumps(payload).encode("utf-8"),
                                          {"Content-Type": "application/json"})
        assert headers["content-type"] == "application/json"
        assert int(headers["content-length"]) == len(body)
        return status, json.loads(body.decode("utf-8"))

    def init(self, env: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
        return self.post_json("/init", init_payload(env))

    def run(self, value: Dict[str, Any], **metadata: Any) -> Tuple[int, Any]:
        return self.post_json("/run", run_payload(value, **metadata))

    def wait_for_log_lines(self, stream: str, text: str, count: int, seconds: float = 10.0) -> str:
        """The stream's contents once `text` appears `count` times in it (logs are flushed asynchronously)."""
        deadline = time.time() + seconds
        while True:
            contents = self.stdout() if stream == "stdout" else self.stderr()
            if contents.count(text) >= count or time.time() > deadline:
                return contents
            time.sleep(0.02)


# Exec.isBinaryCode in the controller: after Java's String.trim, a non-empty string whose length is a
# multiple of 4 and that matches this pattern whole is base64.
CONTROLLER_BASE64 = re.compile(r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$")


def controller_base64(text: str) -> bool:
    trimmed = text.strip("".join(chr(code) for code in range(0x21)))
    return len(trimmed) > 0 and len(trimmed) % 4 == 0 and CONTROLLER_BASE64.match(trimmed) is not None


def body_the_client_gets(result: Dict[str, Any], binary: bool) -> bytes:
    """The bytes the controller sends for a result's string body (WebActions.interpretHttpResponse):
    base64-decoded for a binary type, and for a JSON-family type when the string looks like base64;
    else the string as UTF-8."""
    body = result["body"]
    if binary or (json_family(result) and controller_base64(body)):
        return base64.b64decode(body, validate=True)
    return body.encode("utf-8")


def json_family(result: Dict[str, Any]) -> bool:
    content_type = dict((k.lower(), v) for k, v in result["headers"].items()).get("content-type", "text/html")
    media_type, _, params = content_type.partition(";")
    names = set(param.split("=", 1)[0].strip().lower() for param in params.split(";") if param.strip())
    media_type = media_type.strip().lower()
    return not (names - {"charset"}) and (media_type == "application/json" or media_type.endswith("+json"))


def lambda_emulator() -> str:
    """The path of AWS's Lambda Runtime Interface Emulator, fetched by scripts/lambda-rie.sh."""
    result = subprocess.run([os.path.join(ROOT, "scripts", "lambda-rie.sh")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError("scripts/lambda-rie.sh could not fetch the emulator:\n" + result.stderr)
    return result.stdout.strip()
