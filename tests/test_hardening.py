"""Hostile and random input: the shim always answers a valid OpenWhisk reply and keeps serving."""

import base64
import json
import os
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serverless_max import openwhisk
from serverless_max.media_types import is_binary, is_json_family
from serverless_max.runtime import BadRequest
from support import ECHO_APP, Shim, body_the_client_gets, raw_params, run_payload

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
METHODS = st.sampled_from(["get", "post", "put", "delete", "patch", "head", "options", "GET", "", "bad method", "🙂"])
PATHS = st.sampled_from(["", "/model/predict", "/model/metadata", "/echo/x", "/respond", "/fail", "/..", "//x",
                         "/%2e%2e/app.py", "http://x/", "/a%00b"]) | st.text(max_size=30)
CONTENT_TYPES = st.sampled_from(["", "image/png", "application/json", "text/plain", "multipart/form-data; boundary=b",
                                 "application/x-www-form-urlencoded", "application/yaml", "text/x; charset=latin-1"])
BODIES = st.text(max_size=60) | st.binary(max_size=60).map(lambda data: base64.b64encode(data).decode("ascii"))
HEADERS = st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20) | JSON_VALUES, max_size=4)


@st.composite
def web_params(draw):
    params = {}
    for name, strategy in (("__ow_method", METHODS), ("__ow_path", PATHS), ("__ow_query", st.text(max_size=20)),
                           ("__ow_body", BODIES)):
        if draw(st.booleans()):
            params[name] = draw(strategy | JSON_VALUES)
    headers = draw(HEADERS)
    content_type = draw(CONTENT_TYPES)
    if content_type:
        headers["content-type"] = content_type
    params["__ow_headers"] = headers if draw(st.integers(0, 9)) else draw(JSON_VALUES)
    params.update(draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)))
    return params


def assert_valid_web_result(result):
    assert isinstance(result, dict)
    assert isinstance(result["statusCode"], int) and 100 <= result["statusCode"] <= 599
    for name, value in result["headers"].items():
        assert isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)), name
    body = result.get("body")
    content_type = result["headers"].get("Content-Type", "")
    if body is not None:
        assert isinstance(body, str) and body
        if content_type and is_binary(content_type):
            base64.b64decode(body, validate=True)


@pytest.fixture(scope="module")
def shim():
    process = Shim(ECHO_APP)
    assert process.init()[0] == 200
    yield process
    process.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=web_params())
def test_any_params_get_a_web_result_or_a_documented_error(params):
    try:
        request = openwhisk.build_request(params, "/model/predict")
    except BadRequest:
        return
    assert request.path.startswith("/") and not request.path.startswith("//")
    assert "content-length" not in dict(request.headers)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=web_params(), extra=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=3))
def test_random_activations_over_http(shim, params, extra):
    payload = run_payload(params)
    payload.update(dict((k, v) for k, v in extra.items() if k != "value"))
    status, reply = shim.post_json("/run", payload)
    assert status == 200, reply
    assert_valid_web_result(reply)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=200) | JSON_VALUES.map(lambda v: json.dumps(v).encode("utf-8")))
def test_random_run_bodies(shim, body):
    status, headers, reply = shim.post("/run", body)
    answer = json.loads(reply.decode("utf-8"))
    if status == 200:
        assert_valid_web_result(answer)
    else:
        assert status == 400 and isinstance(answer["error"], str)


def test_the_static_catch_all_cannot_reach_the_app_files(shim):
    for path in ("/../app.py", "/%2e%2e/config.py", "/..%2Fapp.py", "/static/../../app.py"):
        status, result = shim.run(raw_params(method="get", path=path))
        assert result["statusCode"] == 404, path
        assert "max_app" not in result.get("body", "")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def test_soak_mixed_activations_answered_and_memory_plateaus():
    """Thousands of mixed activations against one process: all answered right, no growth."""
    shim = Shim(ECHO_APP, env={"__OW_ALLOW_CONCURRENT": "true"}, args=["--request-limit", "300000"])
    try:
        shim.init()
        image = os.urandom(20000)
        boundary = "soakboundary"
        upload = (("--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"i.png\"\r\n"
                   "Content-Type: image/png\r\n\r\n" % boundary).encode() + image + ("\r\n--%s--\r\n" % boundary).encode())
        cases = [
            (raw_params(headers={"content-type": "multipart/form-data; boundary=" + boundary},
                        body=base64.b64encode(upload).decode()), 200, 200),
            (raw_params(method="get", path="/model/metadata"), 200, 200),
            (raw_params(path="/fail"), 200, 500),
            (raw_params(headers={"content-type": "image/png"}, body="!!"), 200, 400),
            (raw_params(method="get", path="/nowhere"), 200, 404),
            (raw_params(body="A" * 400000, headers={"content-type": "image/png"}), 200, 413),
            (None, 400, None),  # malformed JSON
        ]
        failures = []

        def worker(offset, count):
            for n in range(count):
                params, status, code = cases[(offset + n) % len(cases)]
                if params is None:
                    got_status, _, reply = shim.post("/run", b"{malformed")
                    ok = got_status == status
                else:
                    got_status, reply = shim.run(params)
                    ok = got_status == status and reply["statusCode"] == code
                    if ok and code == 200 and params["__ow_path"] == "":
                        answer = json.loads(body_the_client_gets(reply, binary=False).decode())
                        ok = answer["files"] == {"image": len(image)}
                if not ok:
                    failures.append((params and params["__ow_path"], got_status))

        def round_of(total, threads=4):
            workers = [threading.Thread(target=worker, args=(i, total // threads)) for i in range(threads)]
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join(300)

        round_of(700)
        plateau = rss_kib(shim.process.pid)
        round_of(2800)
        after = rss_kib(shim.process.pid)
        assert failures == []
        # A leak of even 100 bytes per activation would show as several MiB here.
        assert after - plateau < 8 * 1024, (plateau, after)
        assert shim.process.poll() is None
    finally:
        shim.stop()


def test_failing_activations_free_their_request_as_succeeding_ones_do():
    """A large request to a route that fails (500, or Flask's own 405) must not stay in memory
    until the cyclic garbage collector happens to run: in a 256 MB action that is an OOM kill."""
    shim = Shim(ECHO_APP)
    try:
        shim.init()
        boundary = "memoryboundary"
        upload = (("--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"i.png\"\r\n"
                   "Content-Type: image/png\r\n\r\n" % boundary).encode() + os.urandom(12 * 1000 * 1000)
                  + ("\r\n--%s--\r\n" % boundary).encode())
        headers = {"content-type": "multipart/form-data; boundary=" + boundary}
        body = base64.b64encode(upload).decode("ascii")
        del upload
        after = {}
        for name, path, code in (("succeeding", "", 200), ("failing", "/fail", 500),
                                 ("not allowed", "/model/metadata", 405)):
            for _ in range(6):
                status, result = shim.run(raw_params(path=path, headers=headers, body=body))
                assert (status, result["statusCode"]) == (200, code), name
            after[name] = rss_kib(shim.process.pid)
        # Each failing activation that kept its request would add 12 MB.
        assert after["failing"] - after["succeeding"] < 8 * 1024, after
        assert after["not allowed"] - after["succeeding"] < 8 * 1024, after
    finally:
        shim.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=web_params(), compact=st.booleans())
def test_parse_run_reads_what_json_loads_reads(params, compact):
    raw = json.dumps(run_payload(params), separators=(",", ":") if compact else None).encode("utf-8")
    message = openwhisk.parse_run(raw)
    body = message["value"].get("__ow_body")
    if isinstance(body, memoryview):
        message["value"]["__ow_body"] = bytes(body).decode("utf-8")
    assert message == json.loads(raw.decode("utf-8"))
