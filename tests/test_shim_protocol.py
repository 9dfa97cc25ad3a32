"""The shim as a real process on loopback, driven with the invoker's exact payloads."""

import base64
import json
import os
import signal
import socket
import sys
import threading
import time

import pytest

from serverless_max.media_types import is_binary

from support import (ECHO_APP, SENTINEL, SHIM, ServerProcess, Shim, body_the_client_gets, free_port, init_payload,
                     raw_params, run_payload)


def decoded_body(result):
    content_type = dict((k.lower(), v) for k, v in result["headers"].items()).get("content-type", "text/html")
    return body_the_client_gets(result, binary=is_binary(content_type))


def json_body(result):
    return json.loads(decoded_body(result).decode("utf-8"))


@pytest.fixture(scope="module")
def shim():
    process = Shim(ECHO_APP)
    status, reply = process.init({"SOME_VAR": "from-init"})
    assert (status, reply) == (200, {"ok": True})
    yield process
    process.stop()


@pytest.fixture
def fresh_shim():
    processes = []

    def start(**kwargs):
        process = Shim(ECHO_APP, **kwargs)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


# ------------------------------------------------------------------------------ /init


def test_second_init_is_refused(shim):
    assert shim.init() == (403, {"error": "Cannot initialize the action more than once."})


def test_init_env_is_exported(shim):
    status, result = shim.run(raw_params(method="get", path="/echo"))
    assert status == 200
    assert json_body(result)["ow_env"]["__OW_ACTION_VERSION"] == "0.0.1"
    status, result = shim.run(raw_params(method="post", path="/slow", query="seconds=0"))
    # SOME_VAR is a user variable from the init env: visible to the app's process.
    assert status == 200


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"value": 3}', b'{"value": {"env": []}}', b"null"])
def test_malformed_init_is_a_clear_error_and_init_can_be_retried(fresh_shim, body):
    shim = fresh_shim()
    status, headers, reply = shim.post("/init", body)
    assert status == 400
    assert "error" in json.loads(reply.decode("utf-8"))
    assert shim.init() == (200, {"ok": True})


def test_sentinels_follow_failed_init_but_not_successful_or_refused_ones(fresh_shim):
    shim = fresh_shim()
    shim.post("/init", b"{broken")
    shim.init()
    shim.init()
    shim.run(raw_params(method="get", path="/echo"))
    out = shim.wait_for_log_lines("stdout", SENTINEL, 2)
    err = shim.wait_for_log_lines("stderr", SENTINEL, 2)
    assert out.count(SENTINEL) == 2
    assert err.count(SENTINEL) == 2


def test_the_model_loads_before_the_port_opens(fresh_shim):
    shim = fresh_shim(env={"TEST_MODEL_LOAD_SECONDS": "1"})
    # Listening means loaded: the load message is already in the log.
    assert "test model loaded" in shim.stdout()
    assert shim.init()[0] == 200


def test_a_model_that_fails_to_load_is_reported_by_init_and_run(fresh_shim):
    shim = fresh_shim(env={"TEST_MODEL_FAIL_TO_LOAD": "1"})
    status, reply = shim.init()
    assert status == 502
    assert "failed to load (RuntimeError)" in reply["error"] and "logs" in reply["error"]
    status, reply = shim.run(raw_params())
    assert status == 502
    # Exception texts can carry secrets: only the logs have the text.
    assert "s3cret-password" not in json.dumps(reply)
    assert "weights not found" in shim.stderr()
    assert shim.wait_for_log_lines("stdout", SENTINEL, 2).count(SENTINEL) == 2


# ------------------------------------------------------------------------------ /run


def test_predict_with_an_upload(shim):
    image = os.urandom(1024 * 1024)  # a 1 MB payload
    boundary = "boundary4321"
    body = (("--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
             "Content-Type: image/png\r\n\r\n" % boundary).encode() + image + ("\r\n--%s--\r\n" % boundary).encode())
    params = raw_params(headers={"content-type": "multipart/form-data; boundary=" + boundary},
                        body=base64.b64encode(body).decode())
    status, result = shim.run(params)
    assert status == 200
    assert result["statusCode"] == 200
    assert result["headers"]["Content-Type"] == "application/json"
    assert json_body(result)["files"] == {"image": len(image)}


def test_method_path_and_query_are_forwarded(shim):
    status, result = shim.run(raw_params(method="delete", path="/echo/a%20b/c", query="x=1&y=%C3%A9"))
    seen = json_body(result)
    assert (seen["method"], seen["path"], seen["args"]) == ("DELETE", "/echo/a b/c", {"x": ["1"], "y": ["é"]})


def test_metadata_and_unknown_paths(shim):
    status, result = shim.run(raw_params(method="get", path="/model/metadata"))
    assert json_body(result)["id"] == "max-test-echo"
    status, result = shim.run(raw_params(method="get", path="/model/nothing-here"))
    assert status == 200
    assert result["statusCode"] == 404
    assert "Not Found" in result["body"]


def test_an_app_error_status_is_carried_in_a_successful_run(shim):
    status, result = shim.run(raw_params(method="post", path="/respond", query="status=503&type=text/plain&body_base64=YnVzeQ=="))
    assert (status, result["statusCode"], result["body"]) == (200, 503, "busy")


def test_an_app_exception_is_a_500_and_the_shim_keeps_serving(shim):
    status, result = shim.run(raw_params(path="/fail"))
    assert (status, result["statusCode"]) == (200, 500)
    assert "the model crashed" in shim.wait_for_log_lines("stderr", "the model crashed", 1)
    assert shim.run(raw_params(method="get", path="/model/metadata"))[1]["statusCode"] == 200


def test_repeated_set_cookie_headers(shim):
    query = "cookie=a%3D1&cookie=b%3D2&type=text/plain&body_base64=b2s="
    status, result = shim.run(raw_params(method="get", path="/respond", query=query))
    assert result["headers"]["Set-Cookie"] == ["a=1", "b=2"]


def test_empty_response(shim):
    status, result = shim.run(raw_params(method="get", path="/respond", query="status=204"))
    assert result["statusCode"] == 204
    assert "body" not in result


def test_gzip_is_never_requested_from_the_app(shim):
    status, result = shim.run(raw_params(method="get", path="/echo", headers={"accept-encoding": "gzip, br"}))
    assert "accept-encoding" not in json_body(result)["headers"]


def test_unicode_text_round_trip(shim):
    status, result = shim.run(raw_params(path="/echo/ünïcode", headers={"content-type": "text/plain; charset=utf-8"},
                                         body="日本語 ☃ émoji 🎉"))
    seen = json_body(result)
    assert seen["path"] == "/echo/ünïcode"
    assert base64.b64decode(seen["body_base64"]).decode("utf-8") == "日本語 ☃ émoji 🎉"


def test_bad_base64_is_a_400_result(shim):
    status, result = shim.run(raw_params(headers={"content-type": "image/png"}, body="***"))
    assert (status, result["statusCode"]) == (200, 400)
    assert "__ow_body is not valid base64" in json_body(result)["error"]


@pytest.mark.parametrize("body, message", [
    (b"{oops", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"namespace": "guest"}', "JSON object"),
    (b'{"value": "text"}', "must be a JSON object"),
])
def test_malformed_run_is_a_clear_400_and_ends_the_activation_logs(fresh_shim, body, message):
    shim = fresh_shim()
    shim.init()
    status, headers, reply = shim.post("/run", body)
    assert status == 400
    assert message in json.loads(reply.decode("utf-8"))["error"]
    assert shim.wait_for_log_lines("stdout", SENTINEL, 1).count(SENTINEL) == 1
    assert shim.run(raw_params(method="get", path="/model/metadata"))[0] == 200


def test_deeply_nested_run_json_is_a_400(shim):
    status, headers, reply = shim.post("/run", b"[" * 100000)
    assert status == 400
    assert "not valid JSON" in json.loads(reply.decode("utf-8"))["error"]


@pytest.mark.parametrize("params", [
    raw_params(path="/a\ud800"),
    raw_params(headers={"content-type": "text/plain"}, body="\ud800"),
])
def test_params_that_cannot_be_encoded_are_a_400_result(shim, params):
    payload = json.dumps(run_payload(params)).encode("ascii")  # \ud800 stays escaped in the JSON
    status, headers, reply = shim.post("/run", payload)
    assert (status, json.loads(reply.decode("utf-8"))["statusCode"]) == (200, 400)


@pytest.mark.parametrize("length", ["-5", "abc"])
def test_invalid_content_length_is_a_400(shim, length):
    connection = socket.create_connection(("127.0.0.1", shim.port))
    connection.sendall(("POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n\r\n{}" % length).encode())
    reply = connection.recv(65536).decode("latin-1")
    connection.close()
    assert reply.startswith("HTTP/1.1 400")
    assert "Content-Length" in reply


def test_head_is_answered_without_a_body(shim):
    import http.client
    connection = http.client.HTTPConnection("127.0.0.1", shim.port)
    connection.request("HEAD", "/run")
    response = connection.getresponse()
    assert (response.status, response.read()) == (405, b"")
    connection.close()


def test_result_over_the_limit_is_a_413_not_a_truncation(shim):
    query = "type=application/octet-stream&body_base64=AAAAAA==&repeat=300000"  # 1.2 MB, 1.6 MB in base64
    status, result = shim.run(raw_params(method="get", path="/respond", query=query))
    assert (status, result["statusCode"]) == (200, 413)
    assert "over the result limit of 1048576 bytes" in json_body(result)["error"]


def test_result_limit_can_be_raised(fresh_shim):
    shim = fresh_shim()
    shim.init({"SERVERLESS_MAX_RESULT_LIMIT": str(5 * 1024 * 1024)})
    query = "type=application/octet-stream&body_base64=AAAAAA==&repeat=300000"
    status, result = shim.run(raw_params(method="get", path="/respond", query=query))
    assert result["statusCode"] == 200
    assert len(decoded_body(result)) == 1200000


def test_oversized_run_body_is_refused_and_the_shim_keeps_serving(fresh_shim):
    shim = fresh_shim(args=["--request-limit", "100000"])
    shim.init()
    payload = json.dumps(run_payload(raw_params(body="A" * 200000))).encode()
    status, headers, reply = shim.post("/run", payload)
    result = json.loads(reply.decode("utf-8"))
    assert (status, result["statusCode"]) == (200, 413)
    assert shim.run(raw_params(method="get", path="/model/metadata"))[1]["statusCode"] == 200


def send_raw(shim, data):
    connection = socket.create_connection(("127.0.0.1", shim.port))
    connection.sendall(data)
    chunks = []
    while True:  # the shim closes the connection after its answer
        chunk = connection.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    connection.close()
    return b"".join(chunks).decode("latin-1")


def test_run_without_content_length_is_refused(shim):
    reply = send_raw(shim, b"POST /run HTTP/1.1\r\nHost: x\r\n\r\n{}")
    assert reply.startswith("HTTP/1.1 411")
    assert shim.run(raw_params(method="get", path="/model/metadata"))[0] == 200


def test_a_chunked_run_body_is_read(shim):
    reply = send_raw(shim, b"POST /run HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert reply.startswith("HTTP/1.1 400") and "must be a JSON object" in reply
    assert shim.run(raw_params(method="get", path="/model/metadata"))[0] == 200


def test_unknown_shim_paths_and_methods(shim):
    status, headers, reply = shim.post("/other", b"{}")
    assert status == 404
    assert "POST /init and POST /run" in json.loads(reply.decode())["error"]
    import http.client
    connection = http.client.HTTPConnection("127.0.0.1", shim.port)
    connection.request("GET", "/run")
    assert connection.getresponse().status == 405
    connection.close()


def test_activation_env_is_exported_for_the_activation_only(shim):
    status, result = shim.run(raw_params(method="get", path="/echo"), activation_id="a1" * 16, deadline=1700000000000)
    seen = json_body(result)
    assert seen["ow_env"]["__OW_ACTIVATION_ID"] == "a1" * 16
    assert seen["ow_env"]["__OW_DEADLINE"] == "1700000000000"
    assert seen["ow_env"]["__OW_NAMESPACE"] == "guest"
    # The API key is exported as OpenWhisk does, but not copied anywhere else.
    assert seen["ow_env"]["__OW_API_KEY"].endswith("secret-key-not-to-be-logged")
    assert "__OW_API_KEY" not in seen["activation"]


def test_logs_come_before_the_sentinels_and_hold_no_api_key(fresh_shim):
    shim = fresh_shim()
    shim.init()
    shim.run(raw_params(path="/log", headers={"content-type": "text/plain"}, body="line one"))
    shim.run(raw_params(headers={"content-type": "image/png"}, body="***"))  # a logged bad request
    out = shim.wait_for_log_lines("stdout", SENTINEL, 2)
    err = shim.wait_for_log_lines("stderr", SENTINEL, 2)
    assert out.index("to stdout: line one") < out.index(SENTINEL)
    assert err.index("to stderr: line one") < err.index(SENTINEL)
    assert "secret-key-not-to-be-logged" not in out + err


def test_overlapping_runs_are_serialised_without_concurrency(shim):
    answers = overlapping_runs(shim, 6)
    for tag, seen in answers.items():
        assert seen["tag"] == tag
        # Each activation saw its own environment throughout: nothing overlapped it.
        assert seen["request"]["ow_env"]["__OW_ACTIVATION_ID"] == tag


def test_concurrent_runs_each_get_their_own_answer(fresh_shim):
    shim = fresh_shim(env={"__OW_ALLOW_CONCURRENT": "true"})
    shim.init()
    answers = overlapping_runs(shim, 16)
    for tag, seen in answers.items():
        assert seen["tag"] == tag
        assert seen["request"]["activation"]["__OW_ACTIVATION_ID"] == tag
        # os.environ is shared by overlapping activations: theirs are not exported there.
        assert seen["request"]["ow_env"].get("__OW_ACTIVATION_ID") != tag


def overlapping_runs(shim, count):
    answers = {}
    errors = []

    def one(tag):
        try:
            status, result = shim.run(raw_params(path="/slow", query="seconds=0.1", headers={"content-type": "text/plain"},
                                                 body=tag), activation_id=tag)
            assert (status, result["statusCode"]) == (200, 200)
            answers[tag] = json_body(result)
        except Exception as error:  # collected: an assertion in a thread would be lost
            errors.append(error)

    threads = [threading.Thread(target=one, args=("%032x" % n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(answers) == count
    return answers


def test_sigterm_stops_the_shim(fresh_shim):
    shim = fresh_shim()
    shim.process.send_signal(signal.SIGTERM)
    assert shim.process.wait(10) == 0


def test_port_flag_and_busy_port(fresh_shim):
    shim = fresh_shim()
    with pytest.raises(RuntimeError, match="cannot listen"):
        Shim(ECHO_APP, args=["--port", str(shim.port)])


@pytest.mark.parametrize("bad_value", ["\ud800", "a\x00b"])
def test_a_bad_metadata_value_is_a_400_and_leaves_no_key_behind(fresh_shim, bad_value):
    shim = fresh_shim()
    shim.init()
    # The API key comes before the bad value, so a half-done export would have set it already.
    status, reply = shim.post_json("/run", {"value": {}, "api_key": "SECRET", "transaction_id": bad_value})
    assert status == 400, reply
    assert "transaction_id" in reply["error"] and "SECRET" not in reply["error"]
    status, result = shim.run(raw_params(method="get", path="/echo"), api_key="NEXT")
    seen = json_body(result)
    assert seen["ow_env"]["__OW_API_KEY"] == "NEXT"
    assert "__OW_TRANSACTION_ID" in seen["ow_env"]
    status, result = shim.post_json("/run", {"value": raw_params(method="get", path="/echo")})
    assert "__OW_API_KEY" not in json_body(result)["ow_env"]


def test_a_response_header_http_cannot_carry_is_a_502_with_both_sentinels(fresh_shim):
    shim = fresh_shim()
    shim.init()
    status, result = shim.run(raw_params(method="get", path="/bad-header"))
    assert (status, result["statusCode"]) == (200, 502)
    assert "X-Undecodable" in json_body(result)["error"]
    assert shim.wait_for_log_lines("stdout", SENTINEL, 1).count(SENTINEL) == 1
    assert shim.wait_for_log_lines("stderr", SENTINEL, 1).count(SENTINEL) == 1
    assert shim.run(raw_params(method="get", path="/model/metadata"))[1]["statusCode"] == 200


@pytest.mark.parametrize("params", [
    raw_params(method="get", path="/echo", query="q=\ud800"),
    raw_params(method="get", path="/echo", headers={"x-odd": "\ud800"}),
    raw_params(method="get", path="/echo/\ud800"),
])
def test_lone_surrogates_in_the_request_are_a_400_not_an_app_failure(shim, params):
    status, result = shim.run(params)
    assert (status, result["statusCode"]) == (200, 400)
    assert "surrogate" in json_body(result)["error"]


@pytest.mark.parametrize("env", [{"A=B": "x"}, {"A\x00": "x"}, {"A": "x\x00y"}, {"A": "\ud800"}, {"\ud800": "x"}])
def test_init_env_the_environment_cannot_hold_is_a_400(fresh_shim, env):
    shim = fresh_shim()
    status, reply = shim.post_json("/init", {"value": {"env": env}})
    assert status == 400 and "cannot be set" in reply["error"]
    assert shim.init()[0] == 200  # nothing was set: /init can be retried


def test_a_stalled_connection_holds_the_action_only_until_the_read_deadline(fresh_shim):
    shim = fresh_shim(env={"SERVERLESS_MAX_READ_SECONDS": "1"})
    shim.init()
    silent = socket.create_connection(("127.0.0.1", shim.port))
    trickling = socket.create_connection(("127.0.0.1", shim.port))
    trickling.sendall(b"POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    try:
        started = time.time()
        # Served one connection at a time: this waits for both stalled ones to be cut off.
        status, result = shim.run(raw_params(method="get", path="/model/metadata"))
        assert (status, result["statusCode"]) == (200, 200)
        assert time.time() - started < 30  # the per-read timeout alone held it 60 s per connection
        for _ in range(5):  # a byte now and then does not extend the deadline
            try:
                trickling.sendall(b" ")
            except OSError:
                break
            time.sleep(0.3)
        trickling.settimeout(10)
        # Cut off with a 408: the app never saw a request that did not arrive whole.
        assert trickling.recv(100).startswith(b"HTTP/1.1 408 ")
    finally:
        silent.close()
        trickling.close()
    # The /run that was cut off still ends its activation's logs.
    assert "cut off" in shim.wait_for_log_lines("stderr", "cut off", 1)
    assert shim.wait_for_log_lines("stdout", SENTINEL, 2).count(SENTINEL) == 2


def test_hundreds_of_simultaneous_runs_are_all_answered(fresh_shim):
    shim = fresh_shim(env={"__OW_ALLOW_CONCURRENT": "true"})
    shim.init()
    body = json.dumps(run_payload(raw_params(method="get", path="/model/metadata"))).encode("utf-8")
    request = b"POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    connections = [socket.create_connection(("127.0.0.1", shim.port)) for _ in range(500)]
    statuses = []
    try:
        for connection in connections:
            connection.sendall(request)
        for connection in connections:
            connection.settimeout(60)
            reply = b""
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                reply += chunk
            statuses.append(reply.split(b" ", 2)[1] if reply else b"reset")
    finally:
        for connection in connections:
            connection.close()
    assert statuses == [b"200"] * 500


def test_sigterm_while_the_model_loads_stops_the_process_at_once():
    port = free_port()
    process = ServerProcess([sys.executable, SHIM, "--port", str(port), "--host", "127.0.0.1"], port, ECHO_APP,
                            env={"TEST_MODEL_LOAD_SECONDS": "30"})
    try:
        process.wait_until(lambda: "loading the model" in process.stderr(), 30)
        time.sleep(0.5)  # inside the model's own load
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(10) == 0
        assert "while the model was loading" in process.stderr()
    finally:
        process.stop()
