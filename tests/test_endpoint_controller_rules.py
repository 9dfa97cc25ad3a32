"""local_endpoint.py against the rules of Apache OpenWhisk's controller source, one test per rule.

Each test names where its rule comes from: the controller's WebActions.scala (resultAsHttp,
interpretHttpResponse, extractEntityAndProcessRequest, ...), its tests (WebActionsApiTests.scala),
BasicHttpService.scala, the invoker's ContainerProxy.scala, and pekko-http 1.1.0, the version the
controller pins (settings.gradle): the Content-Type grammar (CommonRules.scala, ContentTypeHeader.scala),
media types (MediaType.scala), charsets (HttpCharset.scala), header value decoding
(HttpHeaderParser.scala), content negotiation (ContentNegotiation.scala, Marshal.scala) and form
parsing (Uri.Query in Relaxed mode: Uri.scala, UriParser.scala, CharacterClasses.scala, UriSpec.scala).
"""

import base64
import re
import socket
from typing import Any, Dict, Tuple

import pytest

import local_endpoint
from test_local_endpoint import (NOT_HTTP, TYPE_MISMATCH, LocalEndpoint, TinyAction, assert_controller_error,
                                 reply_with, web)
from test_local_endpoint import echo, merged, merged_action, merged_endpoint, raw_action, raw_endpoint  # noqa: F401

UNKNOWN_TYPE = "Response did not specify a known content-type."


def raw_request(port: int, head: bytes, body: bytes = b"") -> Tuple[int, bytes]:
    """Send bytes as they are (headers with non-ASCII bytes), read the status line and the rest: up
    to the end of the body its Content-Length announces, or until the endpoint closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        received = b""
        while True:
            while received.startswith(b"HTTP/1.1 100 "):  # an interim 100 Continue, answering Expect
                received = received.partition(b"\r\n\r\n")[2]
            head_end = received.find(b"\r\n\r\n")
            if head_end >= 0:
                length = re.search(rb"\r\nContent-Length: *([0-9]+)", received[:head_end], re.IGNORECASE)
                if length and len(received) >= head_end + 4 + int(length.group(1)):
                    break
            piece = connection.recv(65536)
            if not piece:
                break
            received += piece
    status_line, _, rest = received.partition(b"\r\n")
    return int(status_line.split()[1]), rest


def last_params(action: TinyAction) -> Dict[str, Any]:
    return action.runs[-1]["value"]


# ----------------------------------------------------------------------------- 1, 6: status codes


@pytest.mark.parametrize("code, expected", [
    (444, 444), ("444", 444), (299, 299), (599, 599), (201.0, 201),
    # JsString(c) => c.toInt: java.lang.Integer.parseInt, which reads any Unicode decimal digit.
    ("\uff12\uff10\uff10", 200), ("\u0664\u0660\u0664", 404), ("+201", 201),
], ids=["444", "444-string", "299", "599", "201.0", "fullwidth-200", "arabic-indic-404", "plus-201"])
def test_a_status_code_the_registry_does_not_know_is_passed_on(echo: Tuple[LocalEndpoint, TinyAction], code: Any,
                                                               expected: int) -> None:
    # WebActions.scala resultAsHttp: StatusCodes.getForKey(c).getOrElse(StatusCodes.custom(c, "")), and
    # pekko's StatusCodes.custom accepts 100..599; WebActionsApiTests pins 444 as a number and as a string.
    endpoint, action = echo
    reply_with(action, {"statusCode": code, "body": "x"})
    assert endpoint.request("GET", web("echo")).status == expected


@pytest.mark.parametrize("code", [600, 99, -200, "2147483648", " 200", "200 ", "2_00", "1e2", 200.5],
                         ids=["600", "99", "negative", "int-overflow", "leading-space", "trailing-space",
                              "underscore", "exponent", "fraction"])
def test_a_status_code_outside_what_parseint_and_custom_accept_is_400(echo: Tuple[LocalEndpoint, TinyAction],
                                                                      code: Any) -> None:
    # StatusCodes.custom throws outside 100..599; Integer.parseInt refuses spaces, '_', exponents and
    # values past Int.MaxValue; JsNumber.toIntExact refuses fractions. All end in invalidMedia(message/http).
    endpoint, action = echo
    reply_with(action, {"statusCode": code, "body": "x"})
    assert_controller_error(endpoint.request("GET", web("echo")), 400, NOT_HTTP)


# ----------------------------------------------------------------------------- 2: parameters other than charset


def test_json_and_form_types_with_other_parameters_are_neither_json_nor_form_raw(
        echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # extractEntityAndProcessRequest: `contentType.mediaType == application/json` compares MediaType.value
    # (MediaType.equals), which holds the parameters; the charset is not one of them (ContentTypeHeader.scala).
    endpoint, action = echo
    endpoint.request("POST", web("echo"), b'{"a": 1}', {"Content-Type": "application/json; foo=bar"})
    assert last_params(action)["__ow_body"] == '{"a": 1}'
    endpoint.request("POST", web("echo"), b'{"a": 1}', {"Content-Type": "application/json; charset=utf-8"})
    assert last_params(action)["__ow_body"] == base64.b64encode(b'{"a": 1}').decode()


def test_json_and_form_types_with_other_parameters_are_not_merged(merged: Tuple[LocalEndpoint, TinyAction]) -> None:
    # isJsonFamily: `mt == application/json || mt.value.endsWith("+json")`; the form case matches
    # ContentType(application/x-www-form-urlencoded, _): both compare the value, parameters included.
    endpoint, action = merged
    for content_type, body in [("application/json; foo=bar", b'{"a": 1}'),
                               ("application/problem+json; v=2", b'{"a": 1}'),
                               ("application/x-www-form-urlencoded; foo=bar", b"a=1")]:
        assert endpoint.request("POST", web("echo"), body, {"Content-Type": content_type}).status == 200
        params = last_params(action)
        assert "a" not in params and params["__ow_body"] == body.decode(), content_type
    endpoint.request("POST", web("echo"), b'{"a": 1}', {"Content-Type": "application/json; charset=UTF-8"})
    assert last_params(action)["a"] == 1


def test_a_json_type_with_other_parameters_is_text_in_a_result(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # interpretHttpResponse: only a JSON-family type has its base64-looking string decoded; with a
    # parameter it is a plain NonBinary type and the string goes out as it is, the type with it.
    endpoint, action = echo
    reply_with(action, {"headers": {"Content-Type": "application/json; foo=bar"}, "body": "dHJ1ZQ=="})
    response = endpoint.request("GET", web("echo"))
    assert (response.status, response.body) == (200, b"dHJ1ZQ==")
    assert response.header("Content-Type") == "application/json; foo=bar"
    reply_with(action, {"headers": {"Content-Type": "application/json; charset=utf-8"}, "body": "dHJ1ZQ=="})
    assert endpoint.request("GET", web("echo")).body == b"true"
    # interpretHttpResponseAsJson: a JSON value with such a type is neither application/json nor JSON family.
    reply_with(action, {"headers": {"Content-Type": "application/problem+json; x=y"}, "body": {"t": 1}})
    assert_controller_error(endpoint.request("GET", web("echo")), 400, TYPE_MISMATCH)


# ----------------------------------------------------------------------------- 3: header values


def test_request_header_values_are_decoded_as_utf8(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # HttpHeaderParser.scanHeaderValue decodes UTF-8 sequences; a sequence that does not decode is
    # copied byte for byte (as ISO-8859-1 characters); a tab becomes a space.
    endpoint, action = echo
    head = (b"GET " + web("echo").encode() + b" HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9\r\n"
            b"X-Broken: a\xc3(b\r\nX-Tab: a\tb\r\n")
    status, _ = raw_request(endpoint.port, head)
    assert status == 200
    headers = last_params(action)["__ow_headers"]
    assert (headers["x-name"], headers["x-broken"], headers["x-tab"]) == ("caf\u00e9", "a\u00c3(b", "a b")


def test_request_header_values_are_trimmed_and_unfolded(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # pekko-http 1.1.0 HttpHeaderParser.scala 569 and 589: every value, modeled or raw, is trimmed
    # (String.trim) once scanned; scanHeaderValue (603-608) turns a line break and the space or tab
    # after it into one space. An unparsable Content-Type stays a raw header with the trimmed value.
    endpoint, action = echo
    head = (b"GET " + web("echo").encode() + b" HTTP/1.1\r\nHost: x\r\nX-A: v  \r\nX-B:\t v\t \r\n"
            b"X-C: a\r\n  b \r\nX-D: a\r\n\tb\r\nX-E:   \r\nContent-Type: text/plain; \r\nX-Request-ID: my-id \t\r\n")
    status, rest = raw_request(endpoint.port, head)
    assert status == 200
    headers = last_params(action)["__ow_headers"]
    assert [headers[name] for name in ("x-a", "x-b", "x-c", "x-d", "x-e", "content-type")] == [
        "v", "v", "a  b", "a b", "", "text/plain;"]
    # The transaction id the controller takes from X-Request-ID (BasicHttpService.assignId) is trimmed too.
    assert b"\r\nX-Request-ID: my-id\r\n" in rest and action.runs[-1]["transaction_id"] == "my-id"


def test_a_header_value_with_a_control_character_is_refused(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # scanHeaderValue (HttpHeaderParser.scala 612, 644-647): only 7-bit characters from ' ' up are legal;
    # the message escapes the character (parsing/package.scala 31-37).
    endpoint, action = echo
    runs = len(action.runs)
    status, rest = raw_request(endpoint.port, b"GET " + web("echo").encode() + b" HTTP/1.1\r\nX-Bad: a\x01b\r\n")
    assert status == 400 and b"Illegal character '\\u0001' in header value" in rest
    assert len(action.runs) == runs


def test_a_header_value_with_a_stray_byte_is_refused(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # scanHeaderValue: a byte that starts no UTF-8 sequence is an illegal character; the server's
    # parser settings default to `error` for it (illegal-response-header-value-processing-mode).
    endpoint, action = echo
    runs = len(action.runs)
    status, rest = raw_request(endpoint.port, b"GET " + web("echo").encode() + b" HTTP/1.1\r\nX-Bad: a\x80b\r\n")
    assert status == 400 and b"Illegal character" in rest
    assert len(action.runs) == runs


# ----------------------------------------------------------------------------- 4, 5: the content-type header


@pytest.mark.parametrize("sent, rendered", [
    ("application/X-Custom", "application/x-custom"),
    ("application/x-custom; Boundary=b; a=1", "application/x-custom; Boundary=b; a=1"),
    ("text/plain; charset=utf-8; b=2; a=1", "text/plain; a=1; b=2; charset=UTF-8"),
    ("text/plain; charset=utf8", "text/plain; charset=UTF-8"),
    ("text/plain; charset=latin1", "text/plain; charset=ISO-8859-1"),
    ("text/plain; charset=cp1252", "text/plain; charset=windows-1252"),
    ("text/plain; charset=US", "text/plain; charset=US-ASCII"),
    ("text/plain; charset=x-mine", "text/plain; charset=x-mine"),
    ('text/plain; a="x y"; b=""', 'text/plain; a="x y"; b='),
    ("text /plain", "text/plain"),
    ("text/plain ; charset = utf-8", "text/plain; charset=UTF-8"),
    ("image/PNG; charset=utf-8", "image/png"),
    ("Multipart/Form-Data; boundary=x", "multipart/form-data; boundary=x"),
    ("text/plain;", "application/octet-stream"),
    ("text/ plain", "application/octet-stream"),
    ("text/plain; a", "application/octet-stream"),
], ids=["lowercased", "parameter-names-as-sent", "sorted-charset-last", "utf8", "latin1", "cp1252", "us",
        "unknown-charset", "quoted", "space-before-slash", "spaces-around", "binary-drops-charset", "multipart",
        "trailing-semicolon", "space-after-slash", "parameter-without-value"])
def test_the_content_type_reaches_the_action_as_pekko_renders_it(echo: Tuple[LocalEndpoint, TinyAction], sent: str,
                                                                  rendered: str) -> None:
    # ContentTypeHeader.scala: main and subtype lowercased (getMediaType, MediaType.scala), parameters in
    # a TreeMap (sorted, names as sent), charset split off and named by HttpCharsets (aliases included);
    # CommonRules.scala `media-type`: type and subtype are tokens followed by optional whitespace, each
    # ';' needs a parameter. A value that does not parse leaves the entity application/octet-stream.
    endpoint, action = echo
    endpoint.request("PUT", web("echo"), b"x", {"Content-Type": sent})
    assert last_params(action)["__ow_headers"]["content-type"] == rendered


def test_an_unparsable_content_type_makes_the_body_binary(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    endpoint.request("PUT", web("echo"), b"hi", {"Content-Type": "text/plain;"})
    assert last_params(action)["__ow_body"] == base64.b64encode(b"hi").decode()


@pytest.mark.parametrize("result, status, message", [
    # findContentTypeInHeader: MediaType.parse fails -> httpUnknownContentType for a string body ...
    ({"headers": {"Content-Type": "text/plain;"}, "body": "x"}, 400, UNKNOWN_TYPE),
    ({"headers": {"Content-Type": " text/plain"}, "body": "x"}, 400, UNKNOWN_TYPE),
    # ... and interpretHttpResponseAsJson maps every failure, that one included, to httpContentTypeError.
    ({"headers": {"Content-Type": "text/plain;"}, "body": {"a": 1}}, 400, TYPE_MISMATCH),
], ids=["string-trailing-semicolon", "string-leading-space", "json-trailing-semicolon"])
def test_a_result_type_pekko_cannot_parse_is_400(echo: Tuple[LocalEndpoint, TinyAction], result: Dict[str, Any],
                                                 status: int, message: str) -> None:
    endpoint, action = echo
    reply_with(action, result)
    assert_controller_error(endpoint.request("GET", web("echo")), status, message)


def test_a_result_type_is_rendered_as_pekko_renders_it(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    endpoint, action = echo
    reply_with(action, {"headers": {"Content-Type": "Text/X-Mine; charset=latin1; b=2; a=1"}, "body": "x"})
    assert endpoint.request("GET", web("echo")).header("Content-Type") == "text/x-mine; a=1; b=2; charset=UTF-8"


# ----------------------------------------------------------------------------- 8: Accept


def test_an_accept_header_that_excludes_the_result_is_406(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # WebActionsApiTests "reject invocation of web action with invalid accept header": complete() marshals
    # with content negotiation (Marshal.toResponseFor); the rejection goes through the controller's
    # customRejectionHandler (BasicHttpService.scala), so it is compact JSON, without the activation's headers.
    endpoint, action = echo
    reply_with(action, {"body": "Plain text"})
    response = endpoint.request("GET", web("echo"), headers={"Accept": "application/json"})
    assert response.status == 406
    assert response.json()["error"] == "Resource representation is only available with these types:\n" \
                                       "text/html; charset=UTF-8"
    assert response.header("x-openwhisk-activation-id") is None
    for accept in ["text/html", "text/*", "*/*", "application/json, text/html;q=0.1", "*"]:
        assert endpoint.request("GET", web("echo"), headers={"Accept": accept}).status == 200, accept
    for accept in ["text/html;q=0, */*", "image/*", "text/html;level=1"]:
        assert endpoint.request("GET", web("echo"), headers={"Accept": accept}).status == 406, accept
    # An Accept header that does not parse is ignored (a RawHeader); for a text type the charset is
    # negotiated too (ContentNegotiator.qValueFor: the lower of the two q-values).
    assert endpoint.request("GET", web("echo"), headers={"Accept": "text/html;q=2"}).status == 200
    response = endpoint.request("GET", web("echo"), headers={"Accept-Charset": "iso-8859-1"})
    assert response.status == 406


def test_an_html_result_refused_by_accept_invokes_the_action_once(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # WebActionsApiTests "not invoke an action more than once when determining entity type".
    endpoint, action = echo
    reply_with(action, {"html": "<note/>"})
    runs = len(action.runs)
    assert endpoint.request("GET", web("echo.html"), headers={"Accept": "text/xml"}).status == 406
    assert len(action.runs) == runs + 1


def test_an_empty_result_is_not_negotiated(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # respondWithEmptyEntity completes with an HttpResponse, an opaque marshalling: no negotiation.
    endpoint, action = echo
    reply_with(action, {"statusCode": 204})
    assert endpoint.request("GET", web("echo"), headers={"Accept": "image/png"}).status == 204


# ----------------------------------------------------------------------------- 9: forms and X-OW-EXTRA-LOGGING


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("body, message", [
    # UriSpec.scala 446-451 (pekko-http 1.1.0): '%' must be followed by two hex digits, in either mode.
    (b"a%b=c", "Invalid input '=', expected HEXDIG (line 1, column 4): a%b=c\n   ^"),
    (b"a=%zz", "Invalid input 'z', expected HEXDIG (line 1, column 4): a=%zz\n   ^"),
    (b"a=%4", "Unexpected end of input, expected HEXDIG (line 1, column 5): a=%4\n    ^"),
    # CharacterClasses.scala 65-66: no space, '#' or other character outside visible ASCII. The
    # alternatives listed are those of UriSpec.scala 371-392, from the same grammar.
    (b"a=x y", "Invalid input ' ', expected '+', query-char, pct-encoded, '&' or 'EOI' (line 1, column 4): "
               "a=x y\n   ^"),
    (b"ab#=1", "Invalid input '#', expected '+', query-char, pct-encoded, '=', '&' or 'EOI' (line 1, column 3): "
               "ab#=1\n  ^"),
    # The body is decoded as UTF-8 first (PredefinedFromEntityUnmarshallers.scala 53-56): a byte that
    # is not UTF-8 is U+FFFD there, refused like any character beyond ASCII; a tab stays a tab.
    (b"a=caf\xe9", "Invalid input '\ufffd', expected '+', query-char, pct-encoded, '&' or 'EOI' (line 1, column 6): "
                   "a=caf\ufffd\n     ^"),
    (b"a=caf\xc3\xa9", "Invalid input '\u00e9', expected '+', query-char, pct-encoded, '&' or 'EOI' "
                       "(line 1, column 6): a=caf\u00e9\n     ^"),
    (b"a=1\tb=2", "Invalid input '\\t', expected '+', query-char, pct-encoded, '&' or 'EOI' (line 1, column 4): "
                  "a=1\tb=2\n   ^"),
    # Where nothing of a key or value matched, parboiled2 (2.5.1, RuleTrace.dropUnreportedPrefix) names
    # the rule of UriParser.query (UriParser.scala 268-302) that began there instead of its alternatives.
    (b" a=1", "Invalid input ' ', expected query or 'EOI' (line 1, column 1):  a=1\n^"),
    (b"a=1& b", "Invalid input ' ', expected keyValuePairsWithReversalAvoidance or 'EOI' (line 1, column 5): "
                "a=1& b\n    ^"),
    (b"a= b", "Invalid input ' ', expected part, '&' or 'EOI' (line 1, column 3): a= b\n  ^"),
    # Only the first line is shown; the unmarshaller replaces "Query," (PredefinedFromEntityUnmarshallers.scala 59).
    (b"Query, x\ny", "Invalid input ' ', expected '+', query-char, pct-encoded, '=', '&' or 'EOI' (line 1, column 7): "
                    "form content, x\n      ^"),
], ids=["bad-percent-in-key", "bad-percent-in-value", "percent-at-the-end", "raw-space", "hash", "not-utf8",
        "non-ascii", "tab", "leading-space", "space-after-ampersand", "space-after-equals", "query-comma"])
def test_a_form_pekko_refuses_is_400_with_its_message(merged: Tuple[LocalEndpoint, TinyAction], body: bytes,
                                                      message: str) -> None:
    # entity(as[FormData]) runs Uri.Query(string, UTF-8), Relaxed by default (Uri.scala 722-724), and
    # turns its IllegalUriException into an IllegalArgumentException (PredefinedFromEntityUnmarshallers.scala
    # 57-59): a ValidationRejection (MarshallingDirectives.scala 53), answered by the default rejection
    # handler (RejectionHandler.scala 311) as a 400 with the message, which the controller's
    # customRejectionHandler wraps in {"error", "code"} (BasicHttpService.scala 192-198).
    endpoint, action = merged
    runs = len(action.runs)
    response = endpoint.request("POST", web("echo"), body, FORM)
    assert response.status == 400
    assert response.json()["error"] == "Illegal query: " + message
    assert response.header("Content-Type") == "application/json"
    assert len(action.runs) == runs


def test_a_refused_form_past_the_stack_limit_names_other_rules() -> None:
    # UriParser.keyValuePairs (UriParser.scala 297-299): pairs 0-509 keep their values on the stack,
    # pair 510 starts keyValuePairsWithLimitedStackUse, later pairs are its keyValuePair repetitions.
    many = b"&".join(b"k%d=v" % number for number in range(515))
    expected = {509: "keyValuePairsWithReversalAvoidance or 'EOI'", 510: "keyValuePairsWithLimitedStackUse or 'EOI'",
                511: "keyValuePair, '&' or 'EOI'"}
    for pair, names in expected.items():
        start = len(b"&".join(many.split(b"&")[:pair])) + 1
        body = many[:start] + b" " + many[start:]
        with pytest.raises(local_endpoint.FormRefused) as refused:
            local_endpoint.parse_form(body)
        assert "expected %s (line 1, column %d)" % (names, start + 1) in str(refused.value)


@pytest.mark.parametrize("body, fields", [
    # UriSpec.scala 438-440: Relaxed mode takes any visible ASCII but the separators unencoded.
    (b"a^=b", {"a^": "b"}), (b"a;=b", {"a;": "b"}), (b"a=b=c", {"a": "b=c"}), (b"a=1;b=2", {"a": "1;b=2"}),
    (b"a=b|c&d=[x]", {"a": "b|c", "d": "[x]"}),
    # A JSON text sent as a form is one key without a value.
    (b'{"__ow_body":"x"}', {'{"__ow_body":"x"}': ""}), (b'[1,"two",false]', {'[1,"two",false]': ""}),
    # UriSpec.scala 407-427: '+' is a space, %XX a byte of UTF-8, a pair without '=' has an empty value,
    # an empty pair is ("", ""); form.fields.toMap keeps the last value of a repeated key (Uri.scala 683-687).
    (b"a=x+y&b=%C3%A9&c&d=!$'()*,@:/?&e=%2B", {"a": "x y", "b": "\u00e9", "c": "", "d": "!$'()*,@:/?", "e": "+"}),
    (b"a=1&a=2&&=v", {"a": "2", "": "v"}),
    # An empty body is no pair at all (PredefinedFromEntityUnmarshallers.scala 54: FormData.Empty).
    (b"", {}),
], ids=["caret", "semicolon-in-key", "second-equals", "semicolon-in-value", "brackets-and-bar", "json-object",
        "json-array", "decoded", "repeated-and-empty", "empty"])
def test_a_form_relaxed_mode_accepts_is_merged(merged: Tuple[LocalEndpoint, TinyAction], body: bytes,
                                               fields: Dict[str, str]) -> None:
    endpoint, action = merged
    assert endpoint.request("POST", web("echo"), body, FORM).status == 200
    params = last_params(action)
    assert dict((key, params[key]) for key in fields) == fields
    assert "__ow_body" not in params and ("" in params) == ("" in fields)


def test_the_extra_logging_header_never_reaches_the_action(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # BasicHttpService.route: mapRequest(_.removeHeader("X-OW-EXTRA-LOGGING")) before any route.
    endpoint, action = echo
    endpoint.request("GET", web("echo"), headers={"X-OW-Extra-Logging": "on", "X-Other": "kept"})
    headers = last_params(action)["__ow_headers"]
    assert "x-ow-extra-logging" not in headers and headers["x-other"] == "kept"


# ----------------------------------------------------------------------------- the action's identity in /run


def test_run_carries_the_fully_qualified_action_name_and_namespace() -> None:
    # ContainerProxy.initializeAndRun: "namespace" -> msg.user.namespace.name, "action_name" ->
    # msg.action.qualifiedNameWithLeadingSlash: /namespace/action, or /namespace/package/action in a
    # package (WebActions.scala fullyQualifiedActionName: the package "default" is no package).
    plain, packaged = TinyAction(), TinyAction()
    try:
        with LocalEndpoint("plain=" + plain.address, "tools/packed=" + packaged.address,
                           "--namespace", "team") as endpoint:
            assert endpoint.request("GET", web("plain", namespace="team")).status == 200
            assert endpoint.request("GET", web("packed", namespace="team", package="tools")).status == 200
            assert endpoint.request("GET", web("packed", namespace="team")).status == 404
            assert endpoint.request("GET", web("plain", namespace="team", package="tools")).status == 404
            assert "tools/packed: " + endpoint.url("packed").replace("/guest/default/", "/team/tools/") in endpoint.lines
    finally:
        plain.close()
        packaged.close()
    runs = [(action.runs[-1]["namespace"], action.runs[-1]["action_name"]) for action in (plain, packaged)]
    assert runs == [("team", "/team/plain"), ("team", "/team/tools/packed")]
    inits = [action.inits[-1]["value"]["env"]["__OW_ACTION_NAME"] for action in (plain, packaged)]
    assert inits == ["/team/plain", "/team/tools/packed"]
    assert packaged.inits[-1]["value"]["name"] == "packed"


# ----------------------------------------------------------------------------- headers pekko's parser treats apart


def test_connection_keeps_its_first_value_and_expect_reaches_the_action(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # HttpMessageParser.parseHeaderLines: the first Connection header is kept among the headers (later
    # ones only add tokens to the connection handling); Expect is kept too.
    endpoint, action = echo
    head = (b"POST " + web("echo").encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n"
            b"Connection: x-second\r\nExpect: 100-continue\r\n")
    status, _ = raw_request(endpoint.port, head, b"hi")
    assert status == 200
    headers = last_params(action)["__ow_headers"]
    assert (headers["connection"], headers["expect"]) == ("keep-alive", "100-continue")


def test_two_different_content_types_are_refused(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # HttpMessageParser: a second, different Content-Type fails the message (the default
    # conflicting-content-type-header-processing-mode is `error`); the same one twice is accepted.
    endpoint, action = echo
    runs = len(action.runs)
    head = b"POST " + web("echo").encode() + b" HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n"
    status, rest = raw_request(endpoint.port, head, b"hi")
    assert status == 400 and b"more than one Content-Type header" in rest
    assert len(action.runs) == runs
    head = b"POST " + web("echo").encode() + b" HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Type: text/plain\r\n"
    assert raw_request(endpoint.port, head, b"hi")[0] == 200


def test_a_text_result_takes_the_charset_accept_charset_prefers(echo: Tuple[LocalEndpoint, TinyAction]) -> None:
    # resultAsText completes with a String: pekko's String marshaller has an open charset, so
    # ContentNegotiator picks one (CharsetNegotiator.pickBest: the first listed, UTF-8 for '*' or none).
    endpoint, action = echo
    reply_with(action, {"body": "caf\u00e9"})
    response = endpoint.request("GET", web("echo.text"), headers={"Accept-Charset": "latin1;q=0.9, *;q=0.1"})
    assert (response.status, response.header("Content-Type"), response.body) == (
        200, "text/plain; charset=ISO-8859-1", b"caf\xe9")
    response = endpoint.request("GET", web("echo.text"), headers={"Accept-Charset": "*"})
    assert (response.header("Content-Type"), response.body) == ("text/plain; charset=UTF-8", b"caf\xc3\xa9")
    response = endpoint.request("GET", web("echo.text"))
    assert (response.header("Content-Type"), response.body) == ("text/plain; charset=UTF-8", b"caf\xc3\xa9")
