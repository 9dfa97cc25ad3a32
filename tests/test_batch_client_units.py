"""The batch client's parts, each with real inputs: request shapes from swagger.json documents that
flask-restx itself generates for real MAX models' parsers and models, the platforms' "not now"
answers, the AIMD limit, shards, answer splitting and the results file after a kill.

The client needs Python 3.9+; it is installed in the current-era venv only.
"""

import asyncio
import json
import os
import sys

import pytest

if sys.version_info < (3, 9):
    pytest.skip("the batch client runs on Python 3.9+ (installed in the current-era venv only)",
                allow_module_level=True)

from serverless_max_client import inputs, payloads, platforms, results, spec  # noqa: E402
from serverless_max_client.concurrency import Limiter  # noqa: E402
from serverless_max_client.inputs import Input, UsageError  # noqa: E402


# ----------------------------------------------------------------------------- real MAX models' specs

def restx_spec(declare):
    """swagger.json as flask-restx (maxfw's toolkit) writes it for a predict resource under /model."""
    import flask
    import flask_restx
    from werkzeug.datastructures import FileStorage
    app = flask.Flask("spec")
    api = flask_restx.Api(app)
    namespace = api.namespace("model")
    declare(namespace, flask_restx.fields, FileStorage)
    return app.test_client().get("/swagger.json").get_json()


def object_detector(ns, fields, FileStorage):
    """IBM/MAX-Object-Detector api/predict.py: an image file and a threshold with a default."""
    parser = ns.parser()
    parser.add_argument("image", type=FileStorage, location="files", required=True, help="An image file")
    parser.add_argument("threshold", type=float, default=0.7, help="Probability threshold")

    @ns.route("/predict")
    class Predict(__import__("flask_restx").Resource):
        @ns.doc("predict")
        @ns.expect(parser)
        def post(self):
            return {}


def audio_classifier(ns, fields, FileStorage):
    """IBM/MAX-Audio-Classifier api/predict.py: audio file, start_time default 0, filter (split list)."""
    parser = ns.parser()
    parser.add_argument("audio", type=FileStorage, location="files", required=True, help="WAV audio")
    parser.add_argument("start_time", type=float, default=0, help="seconds into the clip")
    parser.add_argument("filter", required=False, action="split", help="labels to keep")

    @ns.route("/predict")
    class Predict(__import__("flask_restx").Resource):
        @ns.doc("predict")
        @ns.expect(parser)
        def post(self):
            return {}


def toxic_comment_classifier(ns, fields, FileStorage):
    """IBM/MAX-Toxic-Comment-Classifier api/predict.py: JSON {"text": [strings]}, validated."""
    model_input = ns.model("ModelInput", {"text": fields.List(fields.String, required=True, description="comments")})

    @ns.route("/predict")
    class Predict(__import__("flask_restx").Resource):
        @ns.doc("predict")
        @ns.expect(model_input, validate=True)
        def post(self):
            return {}


def named_entity_tagger(ns, fields, FileStorage):
    """IBM/MAX-Named-Entity-Tagger api/predict.py: JSON {"text": "one string"}."""
    model_input = ns.model("ModelInput", {"text": fields.String(required=True, description="text")})

    @ns.route("/predict")
    class Predict(__import__("flask_restx").Resource):
        @ns.doc("predict")
        @ns.expect(model_input)
        def post(self):
            return {}


def metadata_only(ns, fields, FileStorage):
    @ns.route("/metadata")
    class Metadata(__import__("flask_restx").Resource):
        def get(self):
            return {}


def test_image_model_with_a_query_default():
    shape = spec.shape_from_spec(restx_spec(object_detector))
    assert (shape.kind, shape.path, shape.file_field) == (spec.MULTIPART, "/model/predict", "image")
    assert shape.query == {"threshold": "0.7"}
    spec.apply_flags(shape, None, None, None, ["threshold=0.5", "extra=1"])
    assert shape.query == {"threshold": "0.5"} and shape.form == {"extra": "1"}


def test_audio_model():
    shape = spec.shape_from_spec(restx_spec(audio_classifier))
    assert (shape.kind, shape.file_field) == (spec.MULTIPART, "audio")
    assert shape.query == {"start_time": "0"}


def test_text_list_model():
    shape = spec.shape_from_spec(restx_spec(toxic_comment_classifier))
    assert (shape.kind, shape.list_field) == (spec.LIST, "text")


def test_json_body_model():
    shape = spec.shape_from_spec(restx_spec(named_entity_tagger))
    assert shape.kind == spec.JSON_BODY
    request = payloads.build_request(shape, [Input("r1", fields={"text": "John lives in Brussels"})])
    assert request.content_type == "application/json"
    assert json.loads(request.body) == {"text": "John lives in Brussels"}


def recommender(ns, fields, FileStorage):
    """IBM/MAX-Recommender api/predict.py: user_id (required) and num_results (default 5), no body."""
    parser = ns.parser()
    parser.add_argument("user_id", type=str, required=True, help="User ID")
    parser.add_argument("num_results", type=int, required=False, default=5, help="Number of items")

    @ns.route("/predict")
    class Predict(__import__("flask_restx").Resource):
        @ns.doc("predict")
        @ns.expect(parser)
        def post(self):
            return {}


def test_query_parameter_model():
    shape = spec.shape_from_spec(restx_spec(recommender))
    assert (shape.kind, shape.query) == (spec.QUERY, {"num_results": "5"})
    request = payloads.build_request(shape, [Input("u1", fields={"user_id": "1733", "num_results": 3})])
    assert (request.path, request.body, request.content_type) == (
        "/model/predict?num_results=3&user_id=1733", b"", None)


def test_spec_without_predict_says_which_flags():
    with pytest.raises(UsageError) as error:
        spec.shape_from_spec(restx_spec(metadata_only))
    assert "no predict operation" in str(error.value) and "--field" in str(error.value)
    assert "--json-field" in str(error.value)


def test_flags_alone_and_their_conflicts():
    with pytest.raises(UsageError, match="--field NAME"):
        spec.apply_flags(None, None, None, None, [])
    with pytest.raises(UsageError, match="exclude"):
        spec.apply_flags(None, "image", "text", None, [])
    shape = spec.apply_flags(None, None, "text", "model/predict", ["lang=\"en\""])
    assert (shape.kind, shape.path, shape.body) == (spec.LIST, "/model/predict", {"lang": "en"})
    with pytest.raises(UsageError, match="NAME=VALUE"):
        spec.apply_flags(None, "image", None, None, ["novalue"])


def test_model_base_strips_routes():
    assert spec.model_base("https://h/api/v1/web/ns/default/a/model/predict") == "https://h/api/v1/web/ns/default/a"
    assert spec.model_base("https://x.run.app/swagger.json") == "https://x.run.app"
    assert spec.model_base("https://x.run.app/") == "https://x.run.app"


# ----------------------------------------------------------------------------- requests and answers

def test_multipart_body_carries_the_file_and_fields(tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG fake")
    shape = spec.RequestShape(spec.MULTIPART, file_field="image", form={"threshold": "0.7"})
    request = payloads.build_request(shape, [Input(str(image), path=str(image), fields={"n": 3})])
    body = request.body
    assert request.content_type.startswith("multipart/form-data; boundary=")
    assert request.path == "/model/predict"
    assert b'name="image"; filename="cat.png"' in body and b"Content-Type: image/png" in body
    assert b"\x89PNG fake" in body and b'name="threshold"\r\n\r\n0.7' in body and b'name="n"\r\n\r\n3' in body


def test_a_manifest_column_the_spec_puts_in_the_query_goes_in_the_query(tmp_path):
    # The query's default would win over a form field of the same name (flask-restx reads the query first).
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG fake")
    shape = spec.shape_from_spec(restx_spec(object_detector))
    request = payloads.build_request(shape, [Input("x", path=str(image), fields={"threshold": 0.9, "n": 3})])
    assert request.path == "/model/predict?threshold=0.9"
    assert b'name="threshold"' not in request.body and b'name="n"\r\n\r\n3' in request.body
    shape = spec.RequestShape(spec.JSON_BODY, query={"lang": "en"})
    request = payloads.build_request(shape, [Input("r", fields={"text": "hi", "lang": "fr"})])
    assert (request.path, json.loads(request.body)) == ("/model/predict?lang=fr", {"text": "hi"})


def test_split_answer_per_input():
    answer = {"status": "ok", "predictions": [{"p": 1}, {"p": 2}]}
    assert payloads.split_answer(answer, 2) == [{"status": "ok", "predictions": [{"p": 1}]},
                                                {"status": "ok", "predictions": [{"p": 2}]}]
    assert payloads.split_answer({"status": "ok", "predictions": [1]}, 2) is None
    assert payloads.split_answer([1, 2], 2) is None


def test_output_names_stay_under_the_output_dir():
    assert payloads.output_name("sub/cat.jpg", "image/png") == os.path.join("sub", "cat.png")
    assert payloads.output_name("../../etc/passwd", "image/png") == os.path.join("etc", "passwd.png")
    assert payloads.output_name("/abs/x.png", "application/octet-stream") == os.path.join("abs", "x.bin")
    # A manifest id with a NUL or a part longer than a file name may be: a name the file system takes.
    assert payloads.output_name("a\x00b", "image/png") == "ab.png"
    long_name = payloads.output_name("q/" + "\u00e9" * 300, "image/png")
    assert long_name.startswith(os.path.join("q", "\u00e9")) and len(os.path.basename(long_name).encode("utf-8")) <= 204


@pytest.mark.parametrize("status,headers,body,kind,signal", [
    (429, {}, b'{"error": "Too many concurrent requests in flight (count: 31, allowed: 30).", "code": "t"}',
     platforms.THROTTLED, "OpenWhisk 429 Too many concurrent requests in flight"),
    (429, {}, b'{"error": "Too many requests in the last minute (count: 121, allowed: 120).", "code": "t"}',
     platforms.THROTTLED, "OpenWhisk 429 Too many requests in the last minute"),
    (202, {"x-openwhisk-activation-id": "abc"}, b'{"error": "Response not yet ready.", "code": "t"}',
     platforms.THROTTLED, "OpenWhisk 202 Response not yet ready (re-sent)"),
    (429, {"x-amzn-errortype": "TooManyRequestsException"},
     b'{"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded", "Type": "User", "message": "Rate Exceeded.",'
     b' "retryAfterSeconds": "2"}', platforms.THROTTLED,
     "Lambda 429 TooManyRequestsException (ReservedFunctionConcurrentInvocationLimitExceeded)"),
    (429, {"x-amzn-errortype": "ThrottlingException"}, b'{"message": "Rate exceeded"}', platforms.THROTTLED,
     "Lambda function URL 429 ThrottlingException"),
    (400, {"x-amzn-errortype": "ThrottlingException"}, b'{"message": "Rate Exceeded."}', platforms.THROTTLED,
     "Lambda function URL 400 ThrottlingException"),
    (500, {"x-amzn-requestid": "r"}, b'{"message": "Internal server error"}', platforms.THROTTLED,
     "API Gateway 500 Internal server error (a throttled or failed Lambda)"),
    (503, {}, b'{"error": "System is overloaded, try again later.", "code": "t"}', platforms.THROTTLED,
     "OpenWhisk 503 System is overloaded"),
    (503, {}, b"pending request queue full\n", platforms.THROTTLED, "Knative queue-proxy 503 pending request queue full"),
    (429, {"retry-after": "3"}, b"Rate exceeded.", platforms.THROTTLED,
     "HTTP 429 Too Many Requests (Cloud Run: no instance available; or a gateway's rate limit)"),
    (500, {"x-amzn-errortype": "ServiceException", "x-amzn-requestid": "r"},
     b'{"Type": "Service", "message": "The Lambda service encountered an internal error."}', platforms.TRANSIENT,
     "Lambda 500 ServiceException (the Lambda service's own error)"),
    (502, {}, b"Bad Gateway", platforms.TRANSIENT, "HTTP 502 from a gateway"),
    (504, {}, b"", platforms.TRANSIENT, "HTTP 504 from a gateway"),
    (500, {}, b'{"message": "model crashed"}', platforms.FAIL, None),
    (400, {}, b'{"message": "Please submit a valid image"}', platforms.FAIL, None),
    (200, {}, b"{}", platforms.OK, None),
])
def test_each_platforms_not_now(status, headers, body, kind, signal):
    verdict = platforms.classify(status, headers, body)
    assert (verdict.kind, verdict.signal) == (kind, signal)


def test_a_per_minute_limit_waits_for_the_next_minute():
    import time
    verdict = platforms.classify(429, {}, b'{"error": "Too many requests in the last minute (count: 61, allowed: 60).",'
                                          b' "code": "t"}')
    assert 1.0 < verdict.retry_after <= 61.0
    assert abs((time.time() + verdict.retry_after) % 60.0 - 1.0) < 0.1  # a second into the next minute


def test_retry_after_from_header_or_lambda_body():
    assert platforms.classify(429, {"retry-after": "3"}, b"").retry_after == 3.0
    import email.utils
    import time
    in_five = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.5 < platforms.classify(503, {"retry-after": in_five}, b"").retry_after <= 5.0
    assert platforms.classify(503, {"retry-after": "soon"}, b"").retry_after is None
    assert platforms.classify(429, {"x-amzn-errortype": "TooManyRequestsException"},
                              b'{"retryAfterSeconds": "2", "Reason": "x"}').retry_after == 2.0


def test_413_says_which_limit_and_what_to_do():
    verdict = platforms.classify(413, {}, b'{"error": "Request larger than allowed: 2000000 > 1048576 bytes."}')
    assert verdict.kind == platforms.FAIL
    assert "Request larger than allowed" in verdict.message and "OpenWhisk: 1 MB" in verdict.message
    assert "resize" in verdict.message


# ----------------------------------------------------------------------------- AIMD

def run(coroutine):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def test_aimd_halves_once_per_round_and_grows_back():
    async def scenario():
        limiter = Limiter(16)
        slots = [await limiter.acquire() for _ in range(16)]
        assert limiter.in_flight == 16
        # Every request of the round comes back throttled: one cut, not sixteen.
        for started in slots:
            await limiter.release(started, throttled=True, succeeded=False)
        assert limiter.allowed() == 8 and limiter.cuts == 1
        started = await limiter.acquire()
        await limiter.release(started, throttled=True, succeeded=False)  # a new round: cut again
        assert limiter.allowed() == 4
        for _ in range(40):
            started = await limiter.acquire()
            await limiter.release(started, throttled=False, succeeded=True)
        assert 8 <= limiter.allowed() <= 16
        return limiter
    run(scenario())


def test_a_limit_the_platform_names_caps_the_concurrency():
    verdict = platforms.classify(429, {}, b'{"error": "Too many concurrent requests in flight (count: 31, allowed: 30).",'
                                          b' "code": "t"}')
    assert verdict.allowed == 30

    async def scenario():
        limiter = Limiter(64)
        started = await limiter.acquire()
        await limiter.release(started, throttled=True, succeeded=False, allowed=verdict.allowed)
        assert limiter.allowed() == 30  # cut in half from 64, then capped
        for _ in range(200):
            started = await limiter.acquire()
            await limiter.release(started, throttled=False, succeeded=True)
        return limiter.allowed()
    assert run(scenario()) == 30


def test_retry_after_pauses_new_requests():
    async def scenario():
        limiter = Limiter(4)
        started = await limiter.acquire()
        await limiter.release(started, throttled=True, succeeded=False, retry_after=0.3)
        before = asyncio.get_event_loop().time()
        await limiter.acquire()
        return asyncio.get_event_loop().time() - before
    assert run(scenario()) >= 0.25


# ----------------------------------------------------------------------------- inputs

def test_shards_partition_the_inputs_stably():
    ids = ["img/%05d.png" % number for number in range(3000)]
    shares = [[i for i in ids if inputs.Shard(k, 3).takes(i)] for k in range(3)]
    assert sorted(sum(shares, [])) == sorted(ids)
    assert all(800 < len(share) < 1200 for share in shares)
    assert inputs.id_hash("img/00001.png") == inputs.id_hash("img/00001.png")
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(UsageError):
            inputs.Shard.parse(bad)


def test_directories_globs_stdin_and_manifests(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.png", "d/a.png", "d/sub/c.png", "d/.hidden"):
        (tmp_path / name).write_bytes(b"x")
    walked = [(item.id, item.name) for item in inputs.iter_inputs([str(tmp_path / "d")])]
    assert walked == [(str(tmp_path / "d" / "a.png"), os.path.join("d", "a.png")),
                      (str(tmp_path / "d" / "b.png"), os.path.join("d", "b.png")),
                      (str(tmp_path / "d" / "sub" / "c.png"), os.path.join("d", "sub", "c.png"))]
    globbed = [item.name for item in inputs.iter_inputs([str(tmp_path / "d" / "**" / "*.png")])]
    assert sorted(globbed) == sorted(os.path.join("d", name) for name in ("a.png", "b.png", os.path.join("sub", "c.png")))
    named = [item.name for item in inputs.iter_inputs(["x/cat.png", "/abs/dog.png", "../up/eel.png", "./fox.png"])]
    assert named == [os.path.join("x", "cat.png"), "dog.png", "eel.png", "fox.png"]
    import io
    from_stdin = [item.id for item in inputs.iter_inputs(["-"], stdin=io.StringIO("x.png\n\ny.png\n"))]
    assert from_stdin == ["x.png", "y.png"]
    with pytest.raises(UsageError, match="no file matches"):
        list(inputs.iter_inputs([str(tmp_path / "*.nothing")]))
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"\xef\xbb\xbfid,path,threshold\nfirst,d/a.png,0.5\n")  # with a spreadsheet's BOM
    rows = list(inputs.iter_inputs([], str(manifest), inputs.ManifestColumns(file="path", id="id")))
    assert rows[0].id == "first" and rows[0].path == str(tmp_path / "d" / "a.png")
    assert rows[0].fields == {"threshold": "0.5"}
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"text": "hello", "n": 3}\n\n{"text": "bye"}\n')
    rows = list(inputs.iter_inputs([], str(jsonl), inputs.ManifestColumns(text="text", id="id")))
    assert [(row.id, row.text, row.fields) for row in rows] == [
        (str(jsonl) + ":1", "hello", {"n": 3}), (str(jsonl) + ":3", "bye", {})]
    # A text model's row may name a file instead; a file upload model's row must.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"text": "hello"}\n{"path": "d/a.png"}\n')
    columns = inputs.ManifestColumns(file="path", text="text")
    rows = list(inputs.iter_inputs([], str(mixed), columns))
    assert [(row.text, row.path) for row in rows] == [("hello", None), (None, str(tmp_path / "d" / "a.png"))]
    with pytest.raises(UsageError, match="row 1 has no 'path' column"):
        list(inputs.iter_inputs([], str(mixed), inputs.ManifestColumns(file="path", file_required=True)))


def test_empty_id_and_file_cells_are_no_value(tmp_path):
    # An empty id cell would give every such row the id "": one line for all of them after --resume.
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path\n,a.png\n,b.png\nz,\n")
    columns = inputs.ManifestColumns(file="path", id="id", file_required=True)
    rows = list(inputs.iter_inputs([], str(manifest), columns))
    assert [(row.id, row.path) for row in rows] == [
        (str(tmp_path / "a.png"), str(tmp_path / "a.png")), (str(tmp_path / "b.png"), str(tmp_path / "b.png")),
        ("z", None)]  # an empty file cell: that row fails alone when it is sent


def test_a_manifest_on_stdin_is_csv_or_jsonl_by_its_first_line():
    import io
    columns = inputs.ManifestColumns(text="text", id="id")
    csv_rows = inputs.iter_inputs([], "-", columns, stdin=io.StringIO("id,text\na,I love it\n"))
    assert [(row.id, row.text) for row in csv_rows] == [("a", "I love it")]
    jsonl_rows = inputs.iter_inputs([], "-", columns, stdin=io.StringIO('{"id": "b", "text": "no"}\n'))
    assert [(row.id, row.text) for row in jsonl_rows] == [("b", "no")]


def test_a_million_inputs_stream():
    """The input stream holds one input at a time: a million stdin lines pass through in flat memory
    (held as a list they would take some 300 MiB)."""
    import resource

    class Lines(object):
        def __iter__(self):
            return ("%d.png\n" % number for number in range(1000000))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert sum(1 for _ in inputs.iter_inputs(["-"], stdin=Lines())) == 1000000
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 20 * 1024  # KiB


# ----------------------------------------------------------------------------- the results file

def test_resume_keeps_ok_lines_and_drops_failed_and_torn_ones(tmp_path):
    path = str(tmp_path / "r.jsonl")
    with open(path, "wb") as stream:
        stream.write(b'{"input": "a", "status": "ok"}\n')
        stream.write(b'{"input": "b", "status": "failed"}\n')
        stream.write(b'{"input": "a", "status": "ok"}\n')
        stream.write(b'{"input": "c", "status": "ok", "resp')  # a SIGKILL mid-line
    with pytest.raises(UsageError, match="--resume"):
        results.ResultsWriter(path, resume=False)
    writer = results.ResultsWriter(path, resume=True)
    assert writer.is_done("a") and not writer.is_done("b") and not writer.is_done("c")
    writer.write({"input": "c", "status": "ok"})
    writer.close()
    with open(path) as stream:
        assert [json.loads(line)["input"] for line in stream] == ["a", "c"]


def test_file_names_that_are_not_utf8_are_written_and_resumed(tmp_path):
    name = os.fsdecode(b"caf\xe9.png")  # what os.scandir gives for such a name
    path = str(tmp_path / "r.jsonl")
    writer = results.ResultsWriter(path, resume=False)
    writer.write({"input": name, "status": "ok", "response": {"label": "caf\u00e9"}})
    writer.close()
    with open(path, "rb") as stream:
        assert b'"caf\\udce9.png"' in stream.read()
    assert results.ResultsWriter(path, resume=True).is_done(name)
    shape = spec.RequestShape(spec.MULTIPART, file_field="image")
    image = tmp_path / name
    image.write_bytes(b"x")
    request = payloads.build_request(shape, [Input(str(image), path=str(image))])
    assert 'filename="caf\ufffd.png"'.encode("utf-8") in request.body



def test_a_functions_result_becomes_the_function_urls_answer():
    """The Invoke API's 200 carries the function's result: an HTTP-shaped one is the answer (its
    body base64 when it says so), any other JSON is a 200 JSON answer, a function error is a 502
    (as a function URL answers it)."""
    import base64
    from serverless_max_client.transport import Answer, function_answer
    result = {"statusCode": 201, "headers": {"Content-Type": "image/png"}, "isBase64Encoded": True,
              "body": base64.b64encode(b"\x89PNG").decode("ascii")}
    answer = function_answer(Answer(200, {"x-amzn-requestid": "r1"}, json.dumps(result).encode("utf-8")))
    assert (answer.status, answer.headers["content-type"], answer.body) == (201, "image/png", b"\x89PNG")
    assert answer.headers["x-amzn-requestid"] == "r1"
    plain = function_answer(Answer(200, {}, b'{"status": "ok"}'))
    assert (plain.status, plain.headers["content-type"], plain.body) == (200, "application/json", b'{"status": "ok"}')
    crashed = function_answer(Answer(200, {"x-amz-function-error": "Unhandled"},
                                     b'{"errorMessage": "boom", "errorType": "Runtime.ExitError"}'))
    assert crashed.status == 502 and b"Runtime.ExitError: boom" in crashed.body
    assert platforms.classify(crashed.status, crashed.headers, crashed.body).kind == platforms.TRANSIENT


def test_sigv4_sends_the_path_it_signed(monkeypatch):
    """A function ARN or alias (name:alias) in lambda://: the path goes out percent-encoded exactly as
    it was signed; an HTTP client that normalises %3A back to ':' would break the signature."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from serverless_max_client.transport import LambdaTransport
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers["Authorization"]))
            body = b'{"statusCode": 200, "body": "{}"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    function = "arn:aws:lambda:eu-west-1:123456789012:function:max-digits:live"
    transport = LambdaTransport(function, "http://127.0.0.1:%d" % server.server_address[1], "eu-west-1", {}, 2, 10)

    async def send():
        async with transport:
            return await transport.send("POST", "/model/predict", b"{}", "application/json")

    try:
        assert asyncio.run(send()).status == 200  # novm: the batch client and its tests need Python 3.9+
    finally:
        server.shutdown()
        server.server_close()
    path, authorization = seen[0]
    assert path == "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Amax-digits%3Alive" \
        "/invocations"
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")


def test_a_function_arn_names_its_region(monkeypatch):
    from serverless_max_client.transport import LambdaTransport
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    transport = LambdaTransport("arn:aws:lambda:eu-west-1:123456789012:function:max-digits", None, None, {}, 2, 10)
    assert (transport.http.base_url, transport.http.signer.region) == ("https://lambda.eu-west-1.amazonaws.com",
                                                                       "eu-west-1")
    transport = LambdaTransport("max-digits", None, None, {}, 2, 10)
    assert transport.http.signer.region == "us-east-1"


def test_a_row_without_text_or_file_says_which_columns_to_give():
    from serverless_max_client.runner import _unreadable
    shape = spec.RequestShape(spec.MULTIPART, file_field="image")
    with pytest.raises(ValueError) as error:
        payloads.build_request(shape, [Input("x4", path="")])  # a CSV row whose path cell is empty
    message = _unreadable(Input("x4", path=""), error.value)
    assert message.startswith("x4 has no text and names no file") and "--file-column" in message
    with pytest.raises(ValueError) as error:
        inputs.read_text(Input("m.jsonl:6"))
    assert "None" not in _unreadable(Input("m.jsonl:6"), error.value)


def test_the_summary_counts_what_resume_skipped():
    import io
    from serverless_max_client.stats import Stats, summary
    stats = Stats(ok=2, skipped=300)
    shown = io.StringIO()
    summary(stats, 4.0, "r.jsonl", shown)
    assert "2 inputs" in shown.getvalue() and "300 more already ok in r.jsonl (--resume)" in shown.getvalue()
    assert "concurrency settled at 4.0" in shown.getvalue()
    summary(stats, None, "r.jsonl", shown)  # a limit that never moved
    assert "concurrency never cut from -j" in shown.getvalue()


def test_bad_setup_is_a_usage_error_not_a_traceback(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b'{"id": "a"}\n\xd0\xcf\x11\xe0 binary\n')
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        list(inputs.iter_inputs([], str(manifest), inputs.ManifestColumns(id="id")))
    with pytest.raises(UsageError, match="is a directory: -o names the results file"):
        results.ResultsWriter(str(tmp_path), resume=False)
    from serverless_max_client import cli
    assert cli.main(["predict", "http://127.0.0.1:9", "x.png", "--progress-interval", "0"]) == 2


def test_plain_progress_lines_carry_the_total_and_an_eta(tmp_path):
    import io
    import time
    from serverless_max_client.progress import Progress
    from serverless_max_client.runner import Runner, Settings
    runner = Runner(spec.RequestShape(spec.MULTIPART, file_field="image"), None,
                    results.ResultsWriter(str(tmp_path / "r.jsonl"), resume=False), Settings(jobs=4))
    runner.stats.started, runner.stats.ok, runner.stats.total = time.time() - 10, 100, 400
    shown = io.StringIO()
    Progress(runner, shown, bar=False, interval=10).show()
    assert " done 100/400 (ok 100, failed 0) 10.0/s eta 0:00:30 in flight 0 (limit 4)" in shown.getvalue()
    runner.writer.close()


def test_an_output_dir_that_cannot_be_written_says_so(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OSError, match="cannot save an answer as .* \\(choose another --output-dir\\)"):
        results.save_binary(str(tmp_path / "a-file"), "cat.png", b"\x89PNG")
