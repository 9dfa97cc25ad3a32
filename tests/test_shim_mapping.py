"""In-process tests of every rule the shim uses to rebuild requests and project responses."""

import base64
import gzip
import json
import os
import zlib

import flask
import pytest

from serverless_max import openwhisk
from serverless_max.media_types import is_binary, is_json_family
from serverless_max.runtime import BadRequest, ModelApp, Request, Response
from support import ROOT, body_the_client_gets

JSON_HEADERS = [("Content-Type", "application/json")]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def raw(**fields):
    params = {"__ow_method": "post", "__ow_path": "", "__ow_query": "", "__ow_headers": {}, "__ow_body": ""}
    params.update(fields)
    return params


def build(params, default_path="/model/predict"):
    return openwhisk.build_request(params, default_path)


def web_result(status, headers, body):
    return openwhisk.web_result(Response(status, headers, body))


# ------------------------------------------------------------------------------ media types


def test_media_type_table_matches_openwhisk():
    with open(os.path.join(ROOT, "tests", "data", "openwhisk-media-types.json")) as table:
        registered = json.load(table)
    for media_type, binary in registered.items():
        assert is_binary(media_type) is binary, media_type
        # A registered type keeps its flag whatever parameters it carries.
        assert is_binary(media_type + "; charset=utf-8") is binary, media_type


@pytest.mark.parametrize("content_type, binary", [
    ("multipart/form-data; boundary=x", True),
    ("multipart/mixed", True),
    ("image/svg+xml", True),
    ("IMAGE/PNG", True),
    ("text/javascript", True),
    ("application/yaml", True),
    ("application/x-ndjson", True),
    ("application/hal+json", True),
    ("application/hal+json; charset=utf-8", False),
    ("application/yaml; charset=UTF-8", False),
    ("text/plain", False),
    ("application/json; charset=utf-8", False),
])
def test_binary_or_text(content_type, binary):
    assert is_binary(content_type) is binary


def test_json_family():
    assert is_json_family("application/json; charset=utf-8")
    assert is_json_family("application/problem+json")
    assert not is_json_family("text/json")


# ------------------------------------------------------------------------------ raw requests


def test_raw_request_fields():
    request = build(raw(__ow_method="put", __ow_path="/model/labels", __ow_query="a=1&b=x+y",
                        __ow_headers={"content-type": "text/plain", "x-custom": "v"}, __ow_body="hi"))
    assert (request.method, request.path, request.query) == ("PUT", "/model/labels", "a=1&b=x+y")
    assert dict(request.headers) == {"content-type": "text/plain", "x-custom": "v"}
    assert request.body == b"hi"


def test_empty_path_means_the_default_path():
    assert build(raw()).path == "/model/predict"
    assert build(raw(), default_path="/model/other").path == "/model/other"


@pytest.mark.parametrize("content_type", [
    "image/jpeg", "multipart/form-data; boundary=abc", "application/json", "application/json; charset=utf-8",
    "application/octet-stream", "application/x-unknown",
])
def test_raw_body_is_base64_for_binary_types_and_exactly_application_json(content_type):
    data = b"\x00\xffbytes{}"
    request = build(raw(__ow_headers={"content-type": content_type}, __ow_body=b64(data)))
    assert request.body == data


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "application/vnd.api+json", "application/problem+json",
    "application/x-unknown; charset=utf-8", "text/csv",
    # WebActions compares contentType.mediaType == application/json, parameters included (only a
    # charset is split off): with another parameter, the body is text.
    "application/json; foo=bar",
])
def test_raw_body_is_text_for_text_types(content_type):
    request = build(raw(__ow_headers={"content-type": content_type}, __ow_body="näive ☃ text"))
    assert request.body == "näive ☃ text".encode("utf-8")


def test_raw_body_without_content_type_is_base64():
    assert build(raw(__ow_body=b64(b"\x01\x02"))).body == b"\x01\x02"


def test_empty_raw_body():
    assert build(raw(__ow_headers={"content-type": "image/png"})).body == b""


@pytest.mark.parametrize("body", ["not base64!", "YWJj\nZGVm", "YWJjZ", "☃", "YQ==YWJj", "YW=j", "YWJjZA==="])
@pytest.mark.parametrize("left_in_place", [False, True])
def test_bad_base64_is_a_bad_request(body, left_in_place):
    ow_body = memoryview(body.encode("utf-8")) if left_in_place else body  # as parse_run leaves it
    with pytest.raises(BadRequest, match="base64"):
        build(raw(__ow_headers={"content-type": "image/png"}, __ow_body=ow_body))


@pytest.mark.parametrize("encoded, decoded", [("YWJj", b"abc"), ("YWI=", b"ab"), ("YQ==", b"a"), ("", b""),
                                              ("YWJj" * 50000 + "YQ==", b"abc" * 50000 + b"a")])
def test_good_base64_left_in_place_is_decoded(encoded, decoded):
    assert build(raw(__ow_headers={"content-type": "image/png"}, __ow_body=memoryview(encoded.encode()))).body == decoded


@pytest.mark.parametrize("body", ["YWJj" * 50000 + "YQ=!", "YWJj" * 30000 + "YQ==" + "YWJj" * 20000])
@pytest.mark.parametrize("left_in_place", [False, True])
def test_bad_base64_far_into_a_large_body_is_a_bad_request(body, left_in_place):
    ow_body = memoryview(body.encode("ascii")) if left_in_place else body
    with pytest.raises(BadRequest, match="base64"):
        build(raw(__ow_headers={"content-type": "image/png"}, __ow_body=ow_body))


@pytest.mark.parametrize("field, value", [
    ("__ow_body", 12), ("__ow_query", ["a"]), ("__ow_headers", "x"), ("__ow_path", None),
    ("__ow_method", "GE T"), ("__ow_method", ""), ("__ow_method", 3),
])
def test_malformed_fields_are_bad_requests(field, value):
    with pytest.raises(BadRequest):
        build(raw(**{field: value}))


def test_dropped_request_headers():
    headers = {
        "content-length": "999", "connection": "keep-alive", "keep-alive": "5", "transfer-encoding": "chunked",
        "te": "trailers", "upgrade": "h2c", "proxy-authorization": "x", "accept-encoding": "gzip",
        "x_forwarded_for": "spoof", "bad header": "x", "accept": "image/png", "X-Mixed-Case": "kept",
    }
    request = build(raw(__ow_headers=headers))
    assert dict(request.headers) == {"accept": "image/png", "x-mixed-case": "kept"}


# ------------------------------------------------------------------------------ paths


@pytest.mark.parametrize("ow_path, path", [
    ("/model/metadata", "/model/metadata"),
    ("/model/labels/", "/model/labels/"),
    ("/model/%70redict", "/model/predict"),
    ("/model/../../../etc/passwd", "/etc/passwd"),
    ("/../..", "/"),
    ("/model/./predict", "/model/predict"),
    ("/model%2F..%2F..%2Fsecret", "/secret"),
    ("/%2F%2Fevil.example/x", "/evil.example/x"),
    ("/caf%C3%A9", "/caf\u00c3\u00a9"),  # WSGI: UTF-8 bytes as latin-1 characters
])
def test_paths_are_decoded_and_stay_inside_the_app(ow_path, path):
    assert build(raw(__ow_path=ow_path)).path == path


@pytest.mark.parametrize("ow_path", ["model/predict", "http://evil.example/", "//evil.example/x", "/a%00b", "/a\nb"])
def test_paths_that_are_not_absolute_app_paths_are_refused(ow_path):
    with pytest.raises(BadRequest, match="__ow_path"):
        build(raw(__ow_path=ow_path))


# ------------------------------------------------------------------------------ non-raw requests


def test_merged_json_params_become_a_json_body():
    params = {"__ow_method": "post", "__ow_path": "", "__ow_headers": {"content-type": "application/json"},
              "text": ["good", "bad"], "n": 2}
    request = build(params)
    assert json.loads(request.body.decode("utf-8")) == {"text": ["good", "bad"], "n": 2}
    assert request.query == ""


def test_merged_form_params_become_a_form_body():
    params = {"__ow_method": "post", "__ow_path": "", "name": "a b",
              "__ow_headers": {"content-type": "application/x-www-form-urlencoded"}}
    assert build(params).body == b"name=a+b"


def test_merged_params_of_a_get_become_the_query():
    request = build({"__ow_method": "get", "__ow_path": "/model/predict", "__ow_headers": {}, "user_id": "7"})
    assert (request.method, request.query, request.body) == ("GET", "user_id=7", b"")


def test_opaque_body_with_params_keeps_params_in_the_query():
    params = {"__ow_method": "post", "__ow_path": "", "threshold": "0.5", "__ow_body": b64(b"--x--"),
              "__ow_headers": {"content-type": "multipart/form-data; boundary=x"}}
    request = build(params)
    assert (request.query, request.body) == ("threshold=0.5", b"--x--")


def test_non_object_json_body_arrives_parsed():
    params = {"__ow_method": "post", "__ow_path": "", "__ow_body": ["a", 1],
              "__ow_headers": {"content-type": "application/json"}}
    assert json.loads(build(params).body.decode("utf-8")) == ["a", 1]


def test_plain_invoke_becomes_a_json_post_to_the_default_path():
    request = build({"text": ["hello"]})
    assert (request.method, request.path) == ("POST", "/model/predict")
    assert request.header("content-type") == "application/json"
    assert json.loads(request.body.decode("utf-8")) == {"text": ["hello"]}


# ------------------------------------------------------------------------------ a real WSGI app


def echo_app():
    app = flask.Flask("echo")

    @app.route("/<path:rest>", methods=["GET", "POST"])
    def echo(rest):
        return flask.jsonify({
            "path": flask.request.path, "args": flask.request.args.to_dict(flat=False),
            "form": flask.request.form.to_dict(), "files": dict((k, f.read().decode()) for k, f in flask.request.files.items()),
            "content_length": flask.request.content_length, "user_agent": flask.request.headers.get("User-Agent"),
            "host": flask.request.host, "scheme": flask.request.scheme,
            "activation": flask.request.environ.get("openwhisk.activation"),
        })

    return app


def call(params, activation=None):
    request = build(params)
    request.extra_environ["openwhisk.activation"] = activation or {}
    response = ModelApp(echo_app()).respond(request)
    return response.status, json.loads(response.body.decode("utf-8"))


def test_the_app_sees_the_rebuilt_request():
    multipart = (b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.txt"\r\n'
                 b'Content-Type: text/plain\r\n\r\nfile contents\r\n--XyZ\r\n'
                 b'Content-Disposition: form-data; name="threshold"\r\n\r\n0.7\r\n--XyZ--\r\n')
    headers = {"content-type": "multipart/form-data; boundary=XyZ", "user-agent": "curl/8 ☃",
               "host": "example.org:8443", "x-forwarded-proto": "https", "content-length": "1"}
    status, seen = call(raw(__ow_path="/model/caf%C3%A9", __ow_query="q=%E2%98%83&q=2", __ow_headers=headers,
                            __ow_body=b64(multipart)), activation={"__OW_ACTIVATION_ID": "abc"})
    assert status == 200
    assert seen["path"] == "/model/café"
    assert seen["args"] == {"q": ["☃", "2"]}
    assert seen["files"] == {"image": "file contents"}
    assert seen["form"] == {"threshold": "0.7"}
    assert seen["content_length"] == len(multipart)
    # As from any HTTP server: header bytes (UTF-8 here) reach the app decoded as latin-1.
    assert seen["user_agent"].encode("latin-1").decode("utf-8") == "curl/8 ☃"
    assert (seen["host"], seen["scheme"]) == ("example.org:8443", "https")
    assert seen["activation"] == {"__OW_ACTIVATION_ID": "abc"}


def test_the_app_sees_an_ipv6_host():
    _, seen = call(raw(__ow_method="get", __ow_path="/x", __ow_headers={"host": "[::1]"}))
    assert seen["host"] == "[::1]"


def test_call_app_closes_the_iterable_and_joins_writes():
    closed = []

    class Body(object):
        def __iter__(self):
            return iter([b"b", b"c"])

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        write = start_response("201 Created", [("X-A", "1")])
        write(b"a")
        return Body()

    response = ModelApp(app).respond(Request("GET", "/", "", [], b""))
    assert (response.status, response.headers, response.body) == (201, [("X-A", "1")], b"abc")
    assert closed == [True]


# ------------------------------------------------------------------------------ responses


def test_status_and_repeated_headers():
    result = web_result(201, [("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("Set-Cookie", "c=3"),
                                        ("Content-Type", "text/plain"), ("X-One", "x")], b"ok")
    assert result == {"statusCode": 201, "body": "ok",
                      "headers": {"Set-Cookie": ["a=1", "b=2", "c=3"], "Content-Type": "text/plain", "X-One": "x"}}


def test_headers_the_controller_recomputes_are_dropped():
    result = web_result(200, [("Content-Length", "2"), ("Date", "x"), ("Server", "y"), ("Connection", "close"),
                                        ("Transfer-Encoding", "chunked"), ("Content-Type", "text/plain")], b"ok")
    assert result["headers"] == {"Content-Type": "text/plain"}


def test_empty_body_has_no_body_field():
    result = web_result(200, JSON_HEADERS, b"")
    assert result == {"statusCode": 200, "headers": {"Content-Type": "application/json"}}


@pytest.mark.parametrize("content_type", ["image/png", "audio/wav", "image/svg+xml", "application/octet-stream",
                                          "application/x-unknown", "multipart/mixed; boundary=x"])
def test_binary_bodies_are_strict_base64(content_type):
    data = bytes(range(256)) * 200  # long enough that a MIME encoder would insert newlines
    body = web_result(200, [("Content-Type", content_type)], data)["body"]
    assert "\n" not in body
    assert base64.b64decode(body, validate=True) == data


@pytest.mark.parametrize("json_body, as_text", [
    (b'{"status": "ok", "predictions": [1, 2]}', True),  # objects and arrays never look like base64
    (b'[1, 2, 3]', True),
    (b'{"status": "ok"}\n', True),
    ('{"label": "caf\u00e9 \u2603"}'.encode("utf-8"), True),
    (b'"a b"', True),
    (b"  ", True),  # empty once trimmed: not base64 to the controller
    (b"true", False),  # four base64 letters: the controller would decode them
    (b"1234", False),
    (b"null", False),
    (b'"abcd"', True),  # the quotes are not base64
    (b"abcd", False),
    (b" abcdefgh\n", False),  # the controller trims before it looks
    (b"abc=", False),
    (b"\xff\xfe{}", False),  # not UTF-8: only base64 carries it
])
@pytest.mark.parametrize("content_type", ["application/json", "application/problem+json",
                                          "application/json; charset=utf-8", "application/vnd.api+json"])
def test_json_bodies_are_text_unless_the_controller_would_take_them_for_base64(json_body, as_text, content_type):
    result = web_result(200, [("Content-Type", content_type)], json_body)
    assert body_the_client_gets(result, binary=False) == json_body
    assert (result["body"] == json_body.decode("utf-8", "replace")) is as_text


def test_a_large_json_answer_fits_the_limit_as_text():
    answer = json.dumps({"status": "ok", "seg_map": [[n % 21 for n in range(500)] for _ in range(500)]}).encode()
    assert len(answer) > 786432  # over the limit once base64-encoded
    result = web_result(200, JSON_HEADERS, answer)
    assert len(openwhisk.encode_result(result, 1048576)) <= 1048576
    assert json.loads(openwhisk.encode_result(result, 1048576))["body"].encode() == answer


@pytest.mark.parametrize("content_type", ["application/json; foo=bar", "application/problem+json; v=2"])
def test_json_with_a_parameter_other_than_charset_is_text_to_the_controller(content_type):
    request = build({"__ow_method": "post", "__ow_path": "", "__ow_headers": {"content-type": content_type},
                     "__ow_body": '{"merged": false}'})  # non-raw: not merged, the body arrives as text
    assert request.body == b'{"merged": false}'

    # WebActions.isJsonFamily compares the whole media type, parameters included.
    assert not is_json_family(content_type)
    result = web_result(200, [("Content-Type", content_type)], b"1234")
    assert result["body"] == "1234"


@pytest.mark.parametrize("content_type", ["application/hal+json", "application/x-ndjson"])
def test_unregistered_json_types_without_charset_are_binary(content_type):
    result = web_result(200, [("Content-Type", content_type)], b'{"a": 1}')
    assert body_the_client_gets(result, binary=True) == b'{"a": 1}'


def test_text_bodies_are_strings():
    assert web_result(200, [("Content-Type", "text/html; charset=utf-8")], "<p>☃</p>".encode())["body"] == "<p>☃</p>"


def test_text_in_a_declared_charset_is_decoded():
    body = web_result(200, [("Content-Type", "text/plain; charset=iso-8859-1")], "café".encode("latin-1"))
    assert body["body"] == "café"


def test_invalid_text_is_replaced_and_logged(capsys):
    body = web_result(200, [("Content-Type", "text/plain")], b"ok \xff")["body"]
    assert body == "ok \ufffd"
    assert "not valid utf-8" in capsys.readouterr().err


@pytest.mark.parametrize("encoding, compress", [
    ("gzip", gzip.compress), ("deflate", zlib.compress),
    ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate
])
def test_compressed_text_is_decompressed(encoding, compress):
    result = web_result(200, [("Content-Type", "text/csv"), ("Content-Encoding", encoding)],
                                  compress(b"a,b\n1,2\n"))
    assert result["body"] == "a,b\n1,2\n"
    assert "Content-Encoding" not in result["headers"]


def test_compressed_binary_and_json_keep_their_encoding():
    for content_type in ("image/png", "application/json"):
        data = gzip.compress(b"{}")
        result = web_result(200, [("Content-Type", content_type), ("Content-Encoding", "gzip")], data)
        assert result["headers"]["Content-Encoding"] == "gzip"
        assert base64.b64decode(result["body"]) == data


def test_text_in_an_unknown_encoding_is_an_error():
    result = web_result(200, [("Content-Type", "text/plain"), ("Content-Encoding", "br")], b"\x0b\x01")
    assert result["statusCode"] == 502
    assert "br" in json.loads(result["body"])["error"]


def test_body_without_content_type():
    assert web_result(200, [], b"plain")["body"] == "plain"
    result = web_result(200, [], b"\xff\xfe")
    assert result["headers"]["Content-Type"] == "application/octet-stream"
    assert base64.b64decode(result["body"]) == b"\xff\xfe"


def test_result_over_the_limit_becomes_a_413():
    result = web_result(200, [("Content-Type", "image/png")], b"x" * 3000)
    assert len(openwhisk.encode_result(result, 10000)) < 10000
    replaced = json.loads(openwhisk.encode_result(result, 3000).decode("utf-8"))
    assert replaced["statusCode"] == 413
    message = json.loads(replaced["body"])["error"]
    assert "over the result limit of 3000 bytes" in message
    assert openwhisk.runtime.RESULT_LIMIT_ENV in message


def test_unicode_results_are_measured_in_bytes():
    result = web_result(200, [("Content-Type", "text/plain")], "☃".encode("utf-8") * 100)
    encoded = openwhisk.encode_result(result, 10000)
    assert "☃" in encoded.decode("utf-8")
    assert json.loads(openwhisk.encode_result(result, 300).decode("utf-8"))["statusCode"] == 413


def test_identity_encoding_is_plain_text():
    result = web_result(200, [("Content-Type", "text/plain"), ("Content-Encoding", "identity")], b"as is")
    assert result["body"] == "as is"


def test_text_that_decodes_to_lone_surrogates_is_replaced(capsys):
    result = web_result(200, [("Content-Type", "text/plain; charset=utf-7")], b"+2AA-")
    result["body"].encode("utf-8")
    assert "undecodable bytes were replaced" in capsys.readouterr().err


# ------------------------------------------------------------------------------ parsing /run


def parsed(raw):
    """parse_run's message, with a body left in the raw bytes turned back into the string it stands for."""
    message = openwhisk.parse_run(raw)
    value = message.get("value") if isinstance(message, dict) else None
    if isinstance(value, dict) and isinstance(value.get("__ow_body"), memoryview):
        value["__ow_body"] = bytes(value["__ow_body"]).decode("utf-8")
        return message, True
    return message, False


@pytest.mark.parametrize("raw, left_in_place", [
    (b'{"value":{"__ow_method":"post","__ow_body":"aGVsbG8="},"activation_id":"a"}', True),
    (b'{"value":{"__ow_body":"caf\xc3\xa9 text"}}', True),
    (b'{"value":{"__ow_body":"line\\none"}}', False),  # an escape: parsed the ordinary way
    (b'{"value":{"__ow_body":""}}', False),
    (b'{"value":{"__ow_headers":{"__ow_body":"x"},"__ow_body":"aGVsbG8="}}', False),  # the key first seen elsewhere
    (b'{"value":{"__ow_body":"aGVsbG8=","__ow_body":"d29ybGQ="}}', False),  # duplicate keys: the last wins
    (b'{"value":{"__ow_body":"x"},"__ow_body":"y"}', True),
    (b'{"value": {"__ow_method": "post", "__ow_body": "aGVsbG8="}, "activation_id": "a"}', True),  # json.dumps' default
    (b'{"value":{"__ow_body" \t:\r\n "aGVsbG8="}}', True),
    (b'{"value":{"__ow_body": {"json": "object"}}}', False),
    (b'{"note":"\\u0000serverless-max-body","value":{"__ow_body":"x"}}', False),
    (b'{"__ow_body":"y","value":{}}', False),
    (b'{"value":{"__ow_body":"x","note":"\\u0000serverless-max-body"}}', False),
    (b'{"value":{"__ow_body":{"json":"object"}}}', False),
    (b'[{"value":{"__ow_body":"x"}}]', False),
])
def test_parse_run_leaves_the_body_in_place_only_when_it_is_the_same(raw, left_in_place):
    message, in_place = parsed(raw)
    assert message == json.loads(raw.decode("utf-8"))
    assert in_place is left_in_place


def test_parse_run_refuses_what_json_loads_refuses():
    for raw in (b'{"value":{"__ow_body":"x"}', b'{"value":{"__ow_body":"x"},"k":"\xff"}', b"{malformed",
                b'{"value":{"__ow_body" "x"}}'):
        with pytest.raises(ValueError):
            openwhisk.parse_run(raw)


@pytest.mark.parametrize("query", [',"__ow_query":""', ""])  # raw, and not raw (the string is then JSON)
def test_a_body_left_in_place_that_is_not_utf8_text_is_a_400(query):
    message = openwhisk.parse_run(b'{"value":{"__ow_headers":{"content-type":"text/plain"}' + query.encode() +
                                  b',"__ow_body":"caf\xe9"}}')
    with pytest.raises(BadRequest, match="UTF-8"):
        build(message["value"])


def test_a_json_string_body_left_in_place_is_sent_as_json_text():
    message = openwhisk.parse_run('{"value": {"__ow_headers": {"content-type": "application/json"}, '
                                  '"__ow_body": "café"}}'.encode("utf-8"))
    assert isinstance(message["value"]["__ow_body"], memoryview)
    assert json.loads(build(message["value"]).body.decode("utf-8")) == "café"


@pytest.mark.parametrize("accept_encoding, accepted", [
    ("gzip, deflate, br", True), ("br;q=1.0, gzip;q=0.8", True), ("*", True), ("x-gzip", True),
    ("gzip;q=0", False), ("gzip; q=0.000", False), ("identity", False), ("", False), ("deflate, br", False),
])
def test_accepts_gzip(accept_encoding, accepted):
    assert openwhisk.accepts_gzip({"accept-encoding": accept_encoding}) is accepted
    assert openwhisk.accepts_gzip(None) is False


def test_a_script_is_gzipped_into_a_binary_type_the_controller_decodes():
    script = b"var swaggerUi = 1;\n" * 50
    response = Response(200, [("Content-Type", "application/javascript; charset=utf-8"), ("ETag", '"abc"'),
                              ("Accept-Ranges", "bytes"), ("Cache-Control", "public")], script)
    result = openwhisk.gzipped_script_result(response)
    assert result["headers"] == {"Content-Type": "text/javascript", "Content-Encoding": "gzip",
                                 "Vary": "Accept-Encoding", "ETag": '"abc-gzip"', "Cache-Control": "public"}
    assert is_binary(result["headers"]["Content-Type"])
    assert gzip.decompress(body_the_client_gets(result, binary=True)) == script
    for other in (Response(200, [("Content-Type", "text/html")], script),
                  Response(200, [("Content-Type", "text/javascript"), ("Content-Encoding", "br")], script)):
        assert openwhisk.gzipped_script_result(other) is None
