#!/usr/bin/env python3
"""A local Apache OpenWhisk Web Action endpoint, like `sam local start-api` for OpenWhisk.

    python local_endpoint.py examples/max-example-digit-classifier
    curl -F "image=@examples/max-example-digit-classifier/samples/digit-3.png" -XPOST \\
        http://127.0.0.1:3233/api/v1/web/guest/default/max-example-digit-classifier

It stands in for the two platform parts between a web client and an action container: the
controller, which turns a request to /api/v1/web/<namespace>/<package>/<action> into the action's
parameters and turns the result back into an HTTP response, and the invoker, which sends /init once
and one /run per activation to the container and reads its reply. The rules follow Apache
OpenWhisk's source (the controller's WebActions.scala, the invoker's container clients, pekko-http's
media types and URI rendering), quirks included, so curl shows here what it shows in front of the
deployed action.

An ACTION is a model directory, served by the shim (openwhisk.py) started as a local process, or
NAME=http://HOST:PORT, an action container already listening there. Standard library only; runs on
Python 3.6 and later.
"""

import argparse
import base64
import collections
import decimal
import glob
import http.client
import io
import json
import os
import random
import re
import select
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote_to_bytes, urlsplit

from serverless_max import media_types

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL_DIR = os.path.join(HERE, "examples", "max-example-digit-classifier")
DEFAULT_SHIM = os.path.join(HERE, "openwhisk.py")
SERVE_EXAMPLE = os.path.join(HERE, "scripts", "serve-example.sh")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3233
DEFAULT_NAMESPACE = "guest"
# whisk.activation.payload.max: the controller's request limit, and the invoker's limit on a /run reply.
DEFAULT_LIMIT = 1024 * 1024
# The controller's wait for a web action's result (maxWaitForBlockingActivation), and the default time limit.
DEFAULT_TIMEOUT = 60.0
# How long an action may take to open its port: MAX models load their weights before listening.
START_TIMEOUT = 300.0
STOP_TIMEOUT = 10.0
# The controller reads a whole request within toStrictEntity(30.seconds) (BasicHttpService.scala): a
# deadline for the request, not for each read, so a trickle cannot hold a connection open.
DEFAULT_READ_TIMEOUT = 30.0
LISTEN_BACKLOG = 1024
# What is kept of one line of an action's output; the rest is counted, not held.
LOG_LINE_LIMIT = 64 * 1024
RECENT_LINES = 20
ACTION_VERSION = "0.0.1"
SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
RESULT_LIMIT_ENV = "SERVERLESS_MAX_RESULT_LIMIT"
WEB_PREFIX = b"/api/v1/web/"
TRANSACTION_HEADER = "X-Request-ID"
EXTRA_LOGGING_HEADER = "x-ow-extra-logging"
ACTIVATION_HEADER = "x-openwhisk-activation-id"
ALLOWED_METHODS = ("GET", "DELETE", "POST", "PUT", "HEAD", "OPTIONS", "PATCH")
CORS_METHODS = "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"
CORS_HEADERS = "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
EXTENSIONS = (".http", ".json", ".html", ".svg", ".text")
RESERVED_PARAMS = frozenset(["__ow_method", "__ow_headers", "__ow_path", "__ow_user", "__ow_query", "__ow_body"])
# Response headers pekko-http never renders from a raw header: it sets them itself.
SUPPRESSED_HEADERS = frozenset(["content-type", "content-length", "transfer-encoding", "date", "server", "connection"])

# The controller's messages (object Messages in ErrorResponse.scala) and pekko-http's default rejections.
RESOURCE_NOT_FOUND = "The requested resource does not exist."
ROUTE_NOT_FOUND = "The requested resource could not be found."
ERROR_PROCESSING = "There was an error processing your request."
RESPONSE_NOT_READY = "Response not yet ready."
PARAMETERS_NOT_ALLOWED = "Request defines parameters that are not allowed (e.g., reserved properties)."
PROPERTY_NOT_FOUND = "Response does not include requested property."
UNKNOWN_CONTENT_TYPE = "Response did not specify a known content-type."
CONTENT_TYPE_MISMATCH = "Response type in header did not match generated content type."
ABNORMAL_RUN = "The action did not produce a valid response and exited unexpectedly."

NO_BODY_STATUSES = frozenset([204, 205, 304])

# pekko-http's registered media types (the shim holds the table). Text types with a fixed charset are
# rendered without one; the other text types carry '; charset=UTF-8' in a response.
TEXT_FIXED_CHARSET = frozenset(
    """
    application/json application/json-patch+json application/merge-patch+json application/problem+json
    application/vnd.api+json application/x-www-form-urlencoded text/event-stream
    """.split())
TEXT_OPEN_CHARSET = media_types.REGISTERED_TEXT_TYPES - TEXT_FIXED_CHARSET
BINARY_TYPES = media_types.REGISTERED_BINARY_TYPES

def _charset_registry(table: str) -> Dict[str, str]:
    """HttpCharsets: each charset under its lowercased name and aliases, as getForKeyCaseInsensitive finds it."""
    registry = {}  # type: Dict[str, str]
    for line in table.strip().splitlines():
        names = line.split()
        for name in names:
            registry[name.lower()] = names[0]
    return registry


# pekko-http's HttpCharsets (HttpCharset.scala): the name it renders, then its aliases. Any other
# charset is kept as written (HttpCharset.custom).
CHARSETS = _charset_registry("""
    US-ASCII iso-ir-6 ANSI_X3.4-1968 ANSI_X3.4-1986 ISO_646.irv:1991 ASCII ISO646-US us IBM367 cp367 csASCII
    ISO-8859-1 iso-ir-100 ISO_8859-1 latin1 l1 IBM819 CP819 csISOLatin1
    UTF-8 UTF8
    UTF-16 UTF16
    UTF-16BE
    UTF-16LE
    ISO-8859-2 iso-ir-101 ISO_8859-2 latin2 l2 csISOLatin2
    ISO-8859-3 iso-ir-109 ISO_8859-3 latin3 l3 csISOLatin3
    ISO-8859-4 iso-ir-110 ISO_8859-4 latin4 l4 csISOLatin4
    ISO-8859-5 iso-ir-144 ISO_8859-5 cyrillic csISOLatinCyrillic
    ISO-8859-6 iso-ir-127 ISO_8859-6 ECMA-114 ASMO-708 arabic csISOLatinArabic
    ISO-8859-7 iso-ir-126 ISO_8859-7 ELOT_928 ECMA-118 greek greek8 csISOLatinGreek
    ISO-8859-8 iso-ir-138 ISO_8859-8 hebrew csISOLatinHebrew
    ISO-8859-9 iso-ir-148 ISO_8859-9 latin5 l5 csISOLatin5
    ISO-8859-10 iso-ir-157 l6 ISO_8859-10 csISOLatin6 latin6
    UTF-32 UTF32
    UTF-32BE
    UTF-32LE
    windows-1250 cp1250 cp5346
    windows-1251 cp1251 cp5347
    windows-1252 cp1252 cp5348
    windows-1253 cp1253 cp5349
    windows-1254 cp1254 cp5350
    windows-1257 cp1257 cp5353
    """)

# pekko-http's character classes (CharacterClasses.scala) and rules (CommonRules.scala).
_TCHAR = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)
_OWS = re.compile(r"(?:(?:\r\n)?[ \t]+)*")
_TOKEN_AT = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED_STRING = re.compile(r'"((?:[\t !#-\[\]-~\x80-\ufffe]|\\[\t -~\x80-\ufffe])*)"')
_JAVA_INT = re.compile(r"\A[+-]?\d+\Z")  # str patterns: \d is any Unicode decimal digit, as Character.digit
_SUBTYPE_WILDCARD = re.compile(r"\*(?![!#$%&'*+\-.^_`|~0-9A-Za-z])")
_WEIGHT = re.compile(r";[ \t]*q[ \t]*=[ \t]*(0(?:\.[0-9]*)?|\.[0-9]+|1(?:\.0*)?)[ \t]*")
_TOKEN = re.compile(r"\A[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# A form as Uri.Query parses it in its default Relaxed mode (pekko-http 1.1.0 Uri.scala 722-724): pairs
# split by '&', key and value by the first '='; a key of any visible ASCII but "%&=#", a value of any but
# "%&#" (CharacterClasses.scala 62-66), '+' for a space, %XX for a byte (UriParser.scala 268-314).
_FORM_KEY = re.compile(r"(?:[!\"$'-<>-~]|%[0-9A-Fa-f]{2})*")
_FORM_VALUE = re.compile(r"(?:[!\"$'-~]|%[0-9A-Fa-f]{2})*")
_HEX_DIGITS = frozenset(string.hexdigits)
# UriParser.query keeps the pairs parsed so far on its value stack (two values each) while that stays
# within maxValueStackSize 1024 (keyValuePairs, UriParser.scala 297-299): pairs 0-509, then another rule.
_PAIRS_ON_THE_VALUE_STACK = 510
_PARSER_ESCAPES = {"\t": "\\t", "\r": "\\r", "\n": "\\n"}
_ENTITY_NAME = re.compile(r"\A([\w]|[\w][\w@ .-]*[\w@.-]+)\Z", re.ASCII)
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_FOLD = re.compile(rb"\r?\n[ \t]")  # obsolete line folding, as the header value holds it
_BASE64_ALPHABET = frozenset(string.ascii_letters + string.digits + "+/")
_JAVA_WHITESPACE = "".join(chr(code) for code in range(33))  # what java.lang.String.trim strips
# Characters pekko-http leaves unencoded when it renders a query (strict-query-char-np) or a path segment.
_QUERY_SAFE = frozenset(string.ascii_letters + string.digits + "-._~!$'()*,@:/?")
_PATH_SAFE = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=@:")
_TID_CHARACTERS = string.ascii_letters + string.digits

SUCCESS, APPLICATION_ERROR, DEVELOPER_ERROR, NOT_READY = "success", "application error", "developer error", "not ready"

_output_lock = threading.Lock()


def say(line: str) -> None:
    """One line on stdout: logs from several threads and actions never interleave mid-line."""
    with _output_lock:
        # Bytes, so that any log text prints whatever the locale's encoding is.
        sys.stdout.buffer.write(line.encode("utf-8", "replace") + b"\n")
        sys.stdout.flush()


class UsageError(Exception):
    """The command line asks for something that cannot be served."""


class ActionStartError(Exception):
    """An action did not start or did not accept /init."""


# ----------------------------------------------------------------------------- JSON as spray-json does it


def parse_json(text: str) -> Any:
    """Parse JSON keeping numbers as written (Decimal), as spray-json's BigDecimal does; no NaN."""
    return json.loads(text, parse_float=decimal.Decimal, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError("%s is not JSON" % name)


def render_json(value: Any, pretty: bool = False, indent: int = 0) -> str:
    """spray-json's CompactPrinter, or its PrettyPrinter (objects indented by 2, arrays on one line)."""
    if isinstance(value, dict):
        if not pretty:
            return "{" + ",".join(_json_string(k) + ":" + render_json(v) for k, v in value.items()) + "}"
        inner = " " * (indent + 2)
        members = ",\n".join(inner + _json_string(k) + ": " + render_json(v, True, indent + 2)
                             for k, v in value.items())
        return "{\n" + members + "\n" + " " * indent + "}"
    if isinstance(value, list):
        return "[" + (", " if pretty else ",").join(render_json(v, pretty, indent) for v in value) + "]"
    if isinstance(value, str):
        return _json_string(value)
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)  # int or Decimal, printed like java.math.BigDecimal.toString


def _json_string(text: str) -> str:
    # Escapes exactly what spray-json escapes: quote, backslash and control characters.
    return json.dumps(text, ensure_ascii=False)


# ----------------------------------------------------------------------------- media types as pekko-http models them


class MediaType(object):
    """A Content-Type value as pekko-http's ContentType: a media type (main and subtype lowercased,
    parameters sorted by name) and, apart from it, a charset. `kind` is binary, text whose charset is
    fixed (never rendered), or text whose charset is open (rendered when there is one)."""

    def __init__(self, main: str, sub: str, params: List[Tuple[str, str]], charset: Optional[str]):
        self.main = main.lower()
        self.essence = self.main + "/" + sub.lower()
        self.params = params
        self.charset = charset
        # MediaType.value, which MediaType.equals compares (ignoring case): the parameters are part of it.
        self.value = self.essence + "".join("; %s=%s" % (key, _quote_parameter(raw)) for key, raw in params)
        if self.main == "multipart" or self.essence in BINARY_TYPES:
            self.kind = "binary"
        elif self.essence in TEXT_FIXED_CHARSET:
            self.kind = "fixed"
        elif self.essence in TEXT_OPEN_CHARSET or charset is not None:
            self.kind = "open"
        else:
            self.kind = "binary"  # an unregistered type without a charset (MediaType.customBinary)

    def equals(self, essence: str) -> bool:
        """`mediaType == MediaTypes.x`: only the registered type itself, without parameters."""
        return self.value == essence

    @property
    def is_json_family(self) -> bool:
        """WhiskWebActionsApi.isJsonFamily: exactly application/json, or a value ending in +json."""
        return self.equals("application/json") or self.value.endswith("+json")

    def render(self, charset: Optional[str]) -> str:
        """ContentType.toString: the media type's value, then the charset if the type takes one."""
        if self.kind == "open" and charset is not None:
            return self.value + "; charset=" + charset
        return self.value


class _Grammar(object):
    """A cursor over a header value, with the rules of pekko-http's CommonRules.scala."""

    def __init__(self, text: str):
        self.text = text
        self.at = 0

    def done(self) -> bool:
        return self.at == len(self.text)

    def take(self, character: str) -> bool:
        if self.text.startswith(character, self.at):
            self.at += 1
            return True
        return False

    def ows(self) -> None:
        """OWS, with obsolete line folding."""
        match = _OWS.match(self.text, self.at)
        self.at = match.end()

    def token(self) -> Optional[str]:
        """token: one or more tchar, then OWS."""
        match = _TOKEN_AT.match(self.text, self.at)
        if match is None:
            return None
        self.at = match.end()
        self.ows()
        return match.group(0)

    def word(self) -> Optional[str]:
        """word: a token or a quoted-string (then OWS)."""
        token = self.token()
        if token is not None:
            return token
        match = _QUOTED_STRING.match(self.text, self.at)
        if match is None:
            return None
        self.at = match.end()
        self.ows()
        return re.sub(r"\\(.)", r"\1", match.group(1), flags=re.DOTALL)

    def parameters(self) -> List[Tuple[str, str]]:
        """zeroOrMore(ws(';') ~ parameter): a ';' without a whole parameter after it is not consumed."""
        found = []
        while True:
            start = self.at
            if not self.take(";"):
                return found
            self.ows()
            key = self.token()
            if key is not None and self.take("="):
                self.ows()
                value = self.word()
                if value is not None:
                    found.append((key, value))
                    continue
            self.at = start
            return found


def parse_media_type(value: str) -> Optional[MediaType]:
    """pekko-http's `content-type` rule (`media-type` ~ EOI), or None when the value is not one."""
    grammar = _Grammar(value)
    main = grammar.token()
    if main is None or not grammar.take("/"):
        return None
    sub = grammar.token()
    if sub is None:
        return None
    parameters = grammar.parameters()
    if not grammar.done():
        return None
    charset = None
    by_name = {}  # type: Dict[str, str]
    for key, raw in parameters:
        if key.lower() == "charset":
            charset = CHARSETS.get(raw.lower(), raw)  # HttpCharsets.getForKeyCaseInsensitive, else custom
        else:
            by_name[key] = raw  # a TreeMap: the last of a repeated name wins, names sorted as sent
    # Registered binary and fixed-charset types carry no charset (ContentType.Binary, WithFixedCharset).
    return MediaType(main, sub, sorted(by_name.items()), charset)


def _quote_parameter(value: str) -> str:
    """Rendering.~~#: as it is when every character is a tchar (the empty value too), else quoted."""
    if all(character in _TCHAR for character in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


OCTET_STREAM = MediaType("application", "octet-stream", [], None)
TEXT_HTML = MediaType("text", "html", [], None)
APPLICATION_JSON = MediaType("application", "json", [], None)
# ContentTypes.NoContentType, the type of HttpEntity.Empty (an OPTIONS answer), as content negotiation sees it.
NO_CONTENT_TYPE = MediaType("none", "none", [], None)


# ----------------------------------------------------------------------------- base64 as the JVM does it


def looks_like_base64(text: str) -> bool:
    """Exec.isBinaryCode: the trimmed text is non-empty, a multiple of 4 long, and padded base64."""
    trimmed = text.strip(_JAVA_WHITESPACE)
    data = trimmed.rstrip("=")
    return (len(trimmed) > 0 and len(trimmed) % 4 == 0 and len(trimmed) - len(data) <= 2
            and set(data) <= _BASE64_ALPHABET)


def decode_base64(text: str) -> Optional[bytes]:
    """java.util.Base64's basic decoder: no whitespace, padding optional but exact; None when invalid."""
    data = text.rstrip("=")
    padding = len(text) - len(data)
    remainder = len(data) % 4
    if not set(data) <= _BASE64_ALPHABET or remainder == 1 or (padding and remainder + padding != 4):
        return None
    return base64.b64decode(data + "=" * (-len(data) % 4))


# ----------------------------------------------------------------------------- the URL as pekko-http reads it


class WebRoute(object):
    """/api/v1/web/<namespace>/<package>/<action>[.<ext>][<path>], decoded."""

    def __init__(self, namespace: str, package: str, action: str, extension: str, path: str):
        self.namespace = namespace
        self.package = package
        self.action = action
        self.extension = extension
        self.path = path


def match_route(raw_path: bytes) -> Optional[WebRoute]:
    if not raw_path.startswith(WEB_PREFIX):
        return None
    segments = raw_path[len(WEB_PREFIX):].split(b"/")
    if len(segments) < 3:
        return None
    names = [_decode(segment, plus_is_space=False) for segment in segments[:3]]
    if not all(_ENTITY_NAME.match(name) for name in names):
        return None
    namespace, package, action = names
    extension = next((ext for ext in EXTENSIONS if action.endswith(ext)), ".http")
    if action.endswith(extension):
        action = action[:-len(extension)]
    # The unmatched path, re-rendered: decoded, then encoded again by pekko's rules (%7e -> ~, " -> %22).
    path = "".join("/" + _encode(_decode(segment, plus_is_space=False), _PATH_SAFE, False) for segment in segments[3:])
    return WebRoute(namespace, package, action, extension, path)


def parse_query(raw: bytes) -> List[Tuple[str, Optional[str]]]:
    """The query's pairs, decoded ('+' is a space); None marks a key written without '='."""
    if not raw:
        return []
    pairs = []  # type: List[Tuple[str, Optional[str]]]
    for piece in raw.split(b"&"):
        key, equals, value = piece.partition(b"=")
        pairs.append((_decode(key, True), _decode(value, True) if equals else None))
    return pairs


def render_query(pairs: List[Tuple[str, Optional[str]]]) -> str:
    """Uri.Query.toString: every pair re-encoded, spaces as '+'."""
    return "&".join(_encode(key, _QUERY_SAFE, True) + ("" if value is None else "=" + _encode(value, _QUERY_SAFE, True))
                    for key, value in pairs)


class FormRefused(Exception):
    """A body Uri.Query refuses; the text is what the controller answers (a ValidationRejection's)."""


def parse_form(body: bytes) -> List[Tuple[str, str]]:
    """The pairs of an application/x-www-form-urlencoded body as the controller's entity(as[FormData])
    reads them (PredefinedFromEntityUnmarshallers.scala 50-62): the body decoded as UTF-8 (malformed
    bytes become U+FFFD), then Uri.Query in Relaxed mode; a key without '=' has the value "". An
    empty body has no pairs (FormData.Empty)."""
    text = body.decode("utf-8", "replace")
    pairs = []  # type: List[Tuple[str, str]]
    if not text:
        return pairs
    at = 0
    while True:
        pair_start = at
        at = _form_part_end(text, at, _FORM_KEY)
        key = text[pair_start:at]
        value_start = None  # type: Optional[int]
        if text.startswith("=", at):
            value_start = at + 1
            at = _form_part_end(text, value_start, _FORM_VALUE)
        value = "" if value_start is None else text[value_start:at]
        pairs.append((_decode(key.encode("ascii"), True), _decode(value.encode("ascii"), True)))
        if at == len(text):
            return pairs
        if text[at] != "&":
            raise _form_refusal(text, at, _expected_in_form(len(pairs) - 1, at == pair_start, value_start, at))
        at += 1


def _form_part_end(text: str, at: int, part: Any) -> int:
    """Where a key or value that starts at `at` ends; a '%' must be followed by two hex digits."""
    end = part.match(text, at).end()
    if text.startswith("%", end):
        digit = end + 1 if end + 1 == len(text) or text[end + 1] not in _HEX_DIGITS else end + 2
        raise _form_refusal(text, digit, "HEXDIG")  # UriSpec.scala 446-451
    return end


def _expected_in_form(pair: int, pair_is_empty: bool, value_start: Optional[int], at: int) -> str:
    """What parboiled2's ErrorFormatter lists as expected where a form stops: the alternatives tried
    there, in order, except that the alternatives of a named rule that began right there are listed
    under its name (RuleTrace.dropUnreportedPrefix in parboiled2 2.5.1, the version pekko-http 1.1.0
    uses). The rules are UriParser.query's: query, keyValuePairs*, keyValuePair and part."""
    if value_start is not None:
        return "part, '&' or 'EOI'" if at == value_start else "'+', query-char, pct-encoded, '&' or 'EOI'"
    if not pair_is_empty:
        return "'+', query-char, pct-encoded, '=', '&' or 'EOI'"  # as UriSpec.scala 371-382 shows it
    if pair == 0:
        return "query or 'EOI'"
    if pair < _PAIRS_ON_THE_VALUE_STACK:
        return "keyValuePairsWithReversalAvoidance or 'EOI'"
    if pair == _PAIRS_ON_THE_VALUE_STACK:
        return "keyValuePairsWithLimitedStackUse or 'EOI'"
    return "keyValuePair, '&' or 'EOI'"


def _form_refusal(text: str, index: int, expected: str) -> FormRefused:
    """UriParser.fail: IllegalUriException("Illegal query: " + the error, the input line with a caret
    under the column), whose formatPretty joins the two with ": "; the unmarshaller rethrows it as an
    IllegalArgumentException with "Query," replaced. Columns count UTF-16 units, as Java does; the
    refused character is always on the first line (a line feed is refused itself)."""
    column = len(text[:index].encode("utf-16-le")) // 2 + 1
    if index < len(text):
        problem = "Invalid input '%s'" % _parser_escape(text[index])
    else:
        problem = "Unexpected end of input"
    line = text.split("\n", 1)[0]
    message = "Illegal query: %s, expected %s (line 1, column %d): %s\n%s^" % (problem, expected, column, line,
                                                                               " " * (column - 1))
    return FormRefused(message.replace("Query,", "form content,"))


def _parser_escape(character: str) -> str:
    """One Java char in an error message, as parboiled2's CharUtils.escape and pekko-http's parsing
    escape (parsing/package.scala 31-37) write it. A character beyond U+FFFF is two chars in Java: the
    first, a lone surrogate, reaches the client as '?' (Java's UTF-8 encoder replaces it)."""
    if character in _PARSER_ESCAPES:
        return _PARSER_ESCAPES[character]
    if ord(character) < 0x20 or 0x7F <= ord(character) <= 0x9F:
        return "\\u%04x" % ord(character)
    return "?" if ord(character) > 0xFFFF else character


def _decode(raw: bytes, plus_is_space: bool) -> str:
    if plus_is_space:
        raw = raw.replace(b"+", b" ")
    return unquote_to_bytes(raw).decode("utf-8", "replace")


def _encode(text: str, safe: frozenset, space_as_plus: bool) -> str:
    out = []
    for character in text:
        if character in safe:
            out.append(character)
        elif character == " " and space_as_plus:
            out.append("+")
        else:
            out.append("".join("%%%02X" % byte for byte in character.encode("utf-8", "replace")))
    return "".join(out)


# ----------------------------------------------------------------------------- request -> action parameters


class Reply(object):
    """An HTTP response the endpoint sends: status, headers, body and its Content-Type.

    `negotiated`: whether pekko marshals it against the request's Accept headers (every complete()
    of an entity or a value does; a whole HttpResponse and a rejection do not). `text`: a string whose
    charset the negotiation chooses (pekko's String marshaller, WithOpenCharset); then `body` is unset.
    """

    def __init__(self, status: int, headers: Optional[List[Tuple[str, str]]] = None, body: bytes = b"",
                 content_type: Optional[str] = None, negotiated: bool = True, text: Optional[str] = None):
        self.status = status
        self.headers = headers or []
        self.body = body
        self.content_type = content_type
        self.negotiated = negotiated
        self.text = text


def error_reply(status: int, message: str, transaction_id: str) -> Reply:
    """The controller's terminate(): {"error", "code"} pretty-printed."""
    body = render_json({"error": message.strip(), "code": transaction_id}, pretty=True)
    return Reply(status, body=body.encode("utf-8"), content_type="application/json")


def rejection_reply(status: int, message: str, transaction_id: str) -> Reply:
    """pekko-http's default rejection, wrapped by the controller's rejection handler (compact JSON)."""
    body = render_json({"error": message, "code": transaction_id})
    return Reply(status, body=body.encode("utf-8"), content_type="application/json", negotiated=False)


class RequestRejected(Exception):
    """The controller refuses the request before any activation.

    `in_route` tells a refusal made inside the web route (it gets the CORS headers) from a pekko
    rejection (it does not).
    """

    def __init__(self, reply: Reply, in_route: bool):
        Exception.__init__(self, reply.status)
        self.reply = reply
        self.in_route = in_route


def decode_headers(header_items: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """The request headers as pekko-http reads them, without the one the controller removes first.

    HttpHeaderParser.scanHeaderValue (pekko-http 1.1.0 HttpHeaderParser.scala 593-650): a tab is a
    space, a line break and the space or tab after it (obsolete line folding) are one space, UTF-8
    sequences are decoded, a sequence that does not decode is kept byte for byte, and a control
    character or a byte that starts no sequence is refused (ValueError). Then the value is trimmed
    with String.trim, every character up to U+0020 at either end (lines 569 and 589). BasicHttpService.route
    removes X-OW-EXTRA-LOGGING before any route sees the request.
    """
    decoded = []
    for name, value in header_items:
        if name.lower() == EXTRA_LOGGING_HEADER:
            continue
        decoded.append((name, _decode_header_value(value.encode("latin-1", "replace")).strip(_JAVA_WHITESPACE)))
    return decoded


def _refuse_conflicting_content_types(header_items: List[Tuple[str, str]]) -> None:
    """HttpMessageParser: two Content-Type headers that parse to different types fail the request
    (conflicting-content-type-header-processing-mode = error); the same one repeated is accepted."""
    types = set()
    for name, value in header_items:
        if name.lower() == "content-type":
            parsed = parse_media_type(value)
            if parsed is not None:
                types.add(parsed.render(parsed.charset))
    if len(types) > 1:
        raise ValueError("HTTP message must not contain more than one Content-Type header")


def _decode_header_value(raw: bytes) -> str:
    out = []
    at = 0
    while at < len(raw):
        byte = raw[at]
        fold = _FOLD.match(raw, at) if byte in b"\r\n" else None
        if fold:
            out.append(" ")
            at = fold.end()
            continue
        if 0x20 <= byte < 0x80 or byte == 0x09:
            out.append(" " if byte == 0x09 else chr(byte))
            at += 1
            continue
        size = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 0
        if not size:
            raise ValueError("Illegal character '%s' in header value" % _parser_escape(chr(byte)))
        sequence = raw[at:at + size]
        try:
            out.append(sequence.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(sequence.decode("latin-1"))
        at += size
    return "".join(out)


def build_params(method: str, route: WebRoute, header_items: List[Tuple[str, str]], raw_query: bytes, body: bytes,
                 raw: bool, transaction_id: str) -> Dict[str, Any]:
    """Context.toActionArgument: the __ow_* parameters (and, without --web raw, the merged ones)."""
    ow_headers = {}  # type: Dict[str, str]
    declared = None  # type: Optional[MediaType]
    for name, value in header_items:
        lower = name.lower()
        if lower in ("content-length", "transfer-encoding"):
            continue  # pekko models these in the entity, not as headers
        if lower == "content-type":
            parsed = parse_media_type(value)
            if parsed is not None:
                declared = declared or parsed
                continue
        if lower == "connection" and lower in ow_headers:
            continue  # pekko keeps the first Connection header; later ones only add connection tokens
        ow_headers[lower] = value  # a repeated header keeps its last value
    entity_type = declared or (OCTET_STREAM if body else None)
    if entity_type is not None:
        ow_headers["content-type"] = entity_type.render(entity_type.charset)

    pairs = parse_query(raw_query)
    params = {"__ow_method": method.lower(), "__ow_headers": ow_headers,
              "__ow_path": route.path}  # type: Dict[str, Any]
    has_body, body_value = _body_value(entity_type, body, raw, transaction_id)
    if raw:
        params["__ow_query"] = render_query(pairs)
        params["__ow_body"] = body_value if has_body else ""
        return params
    # A JSON object or a form is merged into the parameters (after the query: the body wins); any
    # other body is __ow_body.
    query = dict((key, value or "") for key, value in pairs)
    fields = body_value if isinstance(body_value, dict) else {}
    if RESERVED_PARAMS & (set(query) | set(fields)):
        raise RequestRejected(error_reply(400, PARAMETERS_NOT_ALLOWED, transaction_id), in_route=True)
    params.update(query)
    params.update(fields)
    if has_body and not isinstance(body_value, dict):
        params["__ow_body"] = body_value
    return params


def _body_value(entity_type: Optional[MediaType], body: bytes, raw: bool, transaction_id: str) -> Tuple[bool, Any]:
    """extractEntityAndProcessRequest: whether there is a body parameter, and its value.

    Its cases compare media types by value, parameters included: `application/json; foo=bar` is
    neither JSON nor form; `application/json; charset=utf-8` is JSON (the charset is no parameter).
    """
    if entity_type is None:
        return False, None
    if not raw and entity_type.is_json_family:
        if not body:
            return False, None
        try:
            return True, parse_json(body.decode("utf-8", "replace"))
        except ValueError as error:
            raise _malformed(str(error), transaction_id)
    if not raw and entity_type.equals("application/x-www-form-urlencoded"):
        try:
            return True, dict(parse_form(body))  # form.fields.toMap: a repeated key keeps its last value
        except FormRefused as refused:
            # MarshallingDirectives.scala 53: an IllegalArgumentException is a ValidationRejection, which
            # the default rejection handler answers with a 400 and the message as it is.
            raise RequestRejected(rejection_reply(400, str(refused), transaction_id), in_route=False)
    if entity_type.kind == "binary" or entity_type.equals("application/json"):
        return True, base64.b64encode(body).decode("ascii")
    return True, body.decode("utf-8", "replace")


def _malformed(detail: str, transaction_id: str) -> RequestRejected:
    """A MalformedRequestContentRejection, as the controller's rejection handler answers it."""
    return RequestRejected(rejection_reply(400, "The request content was malformed:\n" + detail, transaction_id),
                           in_route=False)


# ----------------------------------------------------------------------------- result -> HTTP response


class NotHttp(Exception):
    """The result cannot be read as {"statusCode", "headers", "body"}."""


def http_reply(result: Any, transaction_id: str) -> Reply:
    """resultAsHttp: the .http transcoder, the default for a URL without an extension."""
    try:
        status, headers, body = _http_fields(result)
    except NotHttp:
        return error_reply(400, "Response is not valid 'message/http'.", transaction_id)
    if body is None or body == "":
        # respondWithEmptyEntity completes with a whole HttpResponse: it is not negotiated.
        return Reply(204 if status is None else status, _plain_headers(headers), negotiated=False)
    status = 200 if status is None else status
    content_type = next((value for name, value in headers if name.lower() == "content-type"), None)
    default = TEXT_HTML if isinstance(body, str) else APPLICATION_JSON
    media_type = default if content_type is None else parse_media_type(content_type)
    if not isinstance(body, str):
        # interpretHttpResponseAsJson: exactly application/json, or a JSON-family type (sent with its
        # main and subtype only); anything else, an unparsable type included, is a mismatch.
        if media_type is None or not media_type.is_json_family:
            return error_reply(400, CONTENT_TYPE_MISMATCH, transaction_id)
        rendered = "application/json" if media_type.equals("application/json") else media_type.essence
        return Reply(status, _plain_headers(headers), render_json(body, pretty=True).encode("utf-8"), rendered)
    if media_type is None:
        return error_reply(400, UNKNOWN_CONTENT_TYPE, transaction_id)
    if media_type.kind == "binary" or (media_type.is_json_family and looks_like_base64(body)):
        data = decode_base64(body)
        if data is None:
            return error_reply(400, CONTENT_TYPE_MISMATCH, transaction_id)
    else:
        data = body.encode("utf-8", "replace")
    # Text goes out as UTF-8 whatever charset the action declared.
    return Reply(status, _plain_headers(headers), data, media_type.render("UTF-8"))


def _http_fields(result: Any) -> Tuple[Optional[int], List[Tuple[str, str]], Any]:
    if not isinstance(result, dict):
        raise NotHttp()
    headers = []  # type: List[Tuple[str, str]]
    if "headers" in result:
        if not isinstance(result["headers"], dict):
            raise NotHttp()
        for name, value in result["headers"].items():
            headers.extend((name, text) for text in _header_values(value))
    status = _status_code(result["statusCode"]) if "statusCode" in result else None
    return status, headers, result.get("body")


def _header_values(value: Any) -> List[str]:
    """headersFromJson: strings, booleans and numbers, or arrays of them (one header line each)."""
    if isinstance(value, list):
        return [text for item in value for text in _header_values(item)]
    if isinstance(value, (str, bool, int, decimal.Decimal)):
        return [render_json(value) if not isinstance(value, str) else value]
    raise NotHttp()


def _status_code(value: Any) -> int:
    """JsNumber.toIntExact or, for a string, Integer.parseInt (any Unicode decimal digit, an optional
    sign, nothing else); then StatusCodes.getForKey, or StatusCodes.custom, which takes 100 to 599."""
    if isinstance(value, bool):
        raise NotHttp()
    if isinstance(value, decimal.Decimal) and value == value.to_integral_value():
        code = int(value)
    elif isinstance(value, int):
        code = value
    elif isinstance(value, str) and _JAVA_INT.match(value):
        code = int(value)
    else:
        raise NotHttp()
    if not 100 <= code <= 599:
        raise NotHttp()
    return code


def _plain_headers(headers: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """The action's headers as pekko renders them: Content-Type and the ones it sets itself are dropped.

    A header that would break the response framing (a bad name, a line break) is dropped too.
    """
    kept = []
    for name, value in headers:
        if name.lower() in SUPPRESSED_HEADERS:
            continue
        if not _TOKEN.match(name) or "\r" in value or "\n" in value:
            say("warning: dropped the response header %r: it cannot be sent in HTTP/1.1" % name)
            continue
        kept.append((name, value))
    return kept


def json_reply(result: Any, transaction_id: str) -> Reply:
    """resultAsJson: the .json extension."""
    if isinstance(result, (dict, list)):
        return Reply(200, body=render_json(result, pretty=True).encode("utf-8"), content_type="application/json")
    return error_reply(400, "Response is not valid 'application/json'.", transaction_id)


def html_reply(result: Any, transaction_id: str) -> Reply:
    """resultAsHtml: the .html extension (the body or html field)."""
    html = _field(result, "body", "html") if isinstance(result, dict) else result
    if isinstance(html, str):
        return Reply(200, body=html.encode("utf-8", "replace"), content_type="text/html; charset=UTF-8")
    return error_reply(400, "Response is not valid 'text/html'.", transaction_id)


def svg_reply(result: Any, transaction_id: str) -> Reply:
    """resultAsSvg: the .svg extension (the body or svg field, sent as is, not base64-decoded)."""
    svg = _field(result, "body", "svg") if isinstance(result, dict) else result
    if isinstance(svg, str):
        return Reply(200, body=svg.encode("utf-8", "replace"), content_type="image/svg+xml")
    return error_reply(400, "Response is not valid 'image/svg+xml'.", transaction_id)


def text_reply(result: Any, transaction_id: str) -> Reply:
    """resultAsText: the .text extension (the body or text field; JSON values printed)."""
    if isinstance(result, dict):
        if "body" not in result and "text" not in result:
            return error_reply(404, PROPERTY_NOT_FOUND, transaction_id)
        result = result["body"] if "body" in result else result["text"]
    text = result if isinstance(result, str) else render_json(result, pretty=True)
    return Reply(200, content_type="text/plain", text=text)


def _field(result: Dict[str, Any], first: str, second: str) -> Any:
    return result[first] if first in result else result.get(second)


TRANSCODERS = {".http": http_reply, ".json": json_reply, ".html": html_reply, ".svg": svg_reply, ".text": text_reply}


# ----------------------------------------------------------------------------- content negotiation as pekko-http does it


class _Range(object):
    """A media range of an Accept header: `*`, a main type, or one media type (`sub` set)."""

    def __init__(self, main: str, sub: Optional[str], params: Dict[str, str], q: float):
        self.main = main
        self.sub = sub
        self.params = params
        self.q = q

    def order(self) -> Tuple[int, int, float]:
        """MediaTypeNegotiator.acceptedMediaRanges: one type first, then main types, then */*; more
        parameters first; higher q first (a stable sort keeps the header's order otherwise)."""
        rank = 2 if self.main == "*" else 0 if self.sub is not None else 1
        return rank, -len(self.params), -self.q

    def matches(self, media_type: MediaType) -> bool:
        if self.sub is None:  # MediaRange.Custom, or a predefined range without parameters
            return ((self.main == "*" or self.main == media_type.main)
                    and all((key, value) in media_type.params for key, value in self.params.items()))
        # MediaRange.One ignores a charset parameter in Accept.
        return (media_type.essence == self.main + "/" + self.sub
                and all((key, value) in media_type.params for key, value in self.params.items()
                        if key != "charset"))


def _accept_ranges(value: str) -> Optional[List[_Range]]:
    """AcceptHeader.scala: `media-range-decl`s separated by ',' (an empty header accepts nothing
    special); None when the header does not parse, and pekko then keeps it as a raw header."""
    grammar = _Grammar(value)
    ranges = []  # type: List[_Range]
    while not grammar.done():
        if ranges and not grammar.take(","):
            return None
        grammar.ows()
        if grammar.text.startswith("*/*", grammar.at):
            grammar.at += 3
            main, sub = "*", "*"  # type: Tuple[str, Optional[str]]
        elif grammar.take("*"):
            main, sub = "*", "*"
        else:
            token = grammar.token()
            if token is None or not grammar.take("/"):
                return None
            if _SUBTYPE_WILDCARD.match(grammar.text, grammar.at):
                grammar.at += 1
                sub = "*"
            else:
                sub = grammar.token()
                if sub is None:
                    return None
            main = token
        grammar.ows()
        params = dict(grammar.parameters())
        q = 1.0
        if "q" in params:
            try:
                q = float(params.pop("q"))  # Float.parseFloat; what it refuses counts as 1.0
            except ValueError:
                q = 1.0
        if sub == "*":
            ranges.append(_Range(main.lower(), None, params, q))
        elif not 0.0 <= q <= 1.0:
            return None  # MediaRange.One requires 0 <= q <= 1: the header does not parse
        else:
            ranges.append(_Range(main.lower(), sub.lower(), params, q))
    return ranges


def _accept_charsets(value: str) -> Optional[List[Tuple[Optional[str], float]]]:
    """AcceptCharsetHeader.scala: one or more `*` or charset names, each with an optional ;q=; None
    (a raw header) when it does not parse. A name is the charset pekko registers it as."""
    grammar = _Grammar(value)
    ranges = []  # type: List[Tuple[Optional[str], float]]
    while True:
        if grammar.take("*"):
            grammar.ows()
            name = None  # type: Optional[str]
        else:
            token = grammar.token()
            if token is None:
                return None
            name = CHARSETS.get(token.lower(), token)
        q = 1.0
        match = _WEIGHT.match(grammar.text, grammar.at)
        if match:
            grammar.at = match.end()
            q = float(match.group(1))
        ranges.append((name, q))
        if grammar.done():
            return ranges
        if not grammar.take(","):
            return None
        grammar.ows()


def _media_q(ranges: List[_Range], media_type: MediaType) -> float:
    if not ranges:
        return 1.0
    return next((candidate.q for candidate in ranges if candidate.matches(media_type)), 0.0)


def _charset_q(ranges: List[Tuple[Optional[str], float]], charset: str) -> float:
    if not ranges:
        return 1.0
    return next((q for name, q in ranges if name is None or name == charset), 0.0)


def negotiate(reply: Reply, header_items: List[Tuple[str, str]]) -> Optional[Reply]:
    """Marshal.toResponseFor with ContentNegotiator: the reply as the client accepts it (a text reply
    gets the charset CharsetNegotiator.pickBest chooses), or None when it accepts none of it."""
    media_ranges, charset_ranges = [], []  # type: List[_Range], List[Tuple[Optional[str], float]]
    for name, value in header_items:
        lower = name.lower()
        if lower == "accept":
            media_ranges.extend(_accept_ranges(value) or [])
        elif lower == "accept-charset":
            charset_ranges.extend(_accept_charsets(value) or [])
    media_ranges.sort(key=_Range.order)
    charset_ranges.sort(key=lambda charset_range: 1.0 if charset_range[0] is None else -charset_range[1])
    if reply.content_type is None:
        media_type = NO_CONTENT_TYPE
    else:
        media_type = parse_media_type(reply.content_type) or OCTET_STREAM
    if reply.text is not None:
        # A WithOpenCharset alternative: only its media type is weighed, then the charset is picked.
        if _media_q(media_ranges, media_type) <= 0:
            return None
        charset = _pick_charset(charset_ranges)
        if charset is None:
            return None
        return Reply(reply.status, reply.headers, _encode_text(reply.text, charset),
                     media_type.render(charset))
    q = _media_q(media_ranges, media_type)
    if media_type.kind != "binary":  # NonBinary: the lower of the type's and its charset's q-values
        q = min(q, _charset_q(charset_ranges, media_type.charset or "UTF-8"))
    return reply if q > 0 else None


def _pick_charset(ranges: List[Tuple[Optional[str], float]]) -> Optional[str]:
    if not ranges:
        return "UTF-8"
    name, q = ranges[0]
    if name is not None:
        return name
    return "UTF-8" if q > 0 else None


def _encode_text(text: str, charset: str) -> bytes:
    """String.getBytes(charset): unmappable characters become '?'; Java's UTF-16 is big-endian with a BOM."""
    if charset == "UTF-16":
        return b"\xfe\xff" + text.encode("utf-16-be", "replace")
    try:
        return text.encode(charset, "replace")
    except LookupError:
        return text.encode("utf-8", "replace")  # a charset the JVM lacks: pekko falls back to UTF-8


def not_acceptable_reply(reply: Reply, transaction_id: str) -> Reply:
    """The UnacceptedResponseContentTypeRejection, through the controller's rejection handler."""
    if reply.text is not None:
        offered = reply.content_type or ""  # a WithOpenCharset alternative is listed by its media type
    else:
        offered = reply.content_type or "none/none"
    message = "Resource representation is only available with these types:\n" + offered
    return rejection_reply(406, message, transaction_id)



# ----------------------------------------------------------------------------- activations


class Outcome(object):
    """How an activation ended, as the controller sees it: SUCCESS, APPLICATION_ERROR (the
    result has an error field), DEVELOPER_ERROR (the action failed) or NOT_READY (no answer in time)."""

    def __init__(self, kind: str, result: Any = None, message: str = ""):
        self.kind = kind
        self.result = result
        self.message = message


def read_run_reply(status: int, length: Optional[int], data: bytes, limit: int) -> Outcome:
    """ActivationResponse.processRunResponseContent, after the invoker's container client."""
    if status == 204 or length is None:
        return Outcome(DEVELOPER_ERROR, message=ABNORMAL_RUN)  # NoResponseReceived
    if length > limit:
        message = ("The action produced a response that exceeded the allowed length: %d > %d bytes. "
                   "The truncated response was: %s" % (length, limit, data[:limit].decode("utf-8", "replace")))
        return Outcome(APPLICATION_ERROR, {"error": message})
    text = data.decode("utf-8", "replace")
    invalid = "The action did not produce a valid JSON response" + (": " + text if text else ".")
    try:
        result = parse_json(text)
    except ValueError:
        return Outcome(DEVELOPER_ERROR, message=invalid)
    if not isinstance(result, dict):
        return Outcome(DEVELOPER_ERROR, message=invalid)
    if status != 200:
        return Outcome(DEVELOPER_ERROR, message=render_json(result["error"]) if "error" in result else invalid)
    return Outcome(APPLICATION_ERROR if "error" in result else SUCCESS, result)


def outcome_reply(outcome: Outcome, extension: str, transaction_id: str) -> Reply:
    """completeRequest: a success or an application error goes through the transcoder (an application
    error as its error field), a failed action is a 400, no answer in time a 202."""
    if outcome.kind == NOT_READY:
        return error_reply(202, RESPONSE_NOT_READY, transaction_id)
    if outcome.kind == DEVELOPER_ERROR:
        return error_reply(400, ERROR_PROCESSING, transaction_id)
    projection = outcome.result["error"] if outcome.kind == APPLICATION_ERROR else outcome.result
    return TRANSCODERS[extension](projection, transaction_id)


class Action(object):
    """One action: its container (a local shim process, or an address) and the invoker's side of it."""

    def __init__(self, name: str, args: argparse.Namespace, model_dir: Optional[str] = None,
                 address: Optional[Tuple[str, int]] = None):
        # NAME or PACKAGE/NAME; the URL names the default package "default".
        package, _, self.name = name.rpartition("/")
        self.package = package or None
        self.full_name = name
        self.args = args
        self.model_dir = model_dir
        self.host, self.port = address or (DEFAULT_HOST, 0)
        self.process = None  # type: Optional[subprocess.Popen]
        self.pumps = []  # type: List[threading.Thread]
        self.run_ids = []  # type: List[str]
        self.recent_output = collections.deque(maxlen=RECENT_LINES)  # type: collections.deque
        self.needs_start = False
        # However many activations this container runs at once (its pool decides), one of them starts it.
        self.start_lock = threading.Lock()
        self.process_lock = threading.Lock()
        self.closed = False

    @property
    def qualified_name(self) -> str:
        """FullyQualifiedEntityName.qualifiedNameWithLeadingSlash: /namespace[/package]/action."""
        return "/%s/%s" % (self.args.namespace, self.full_name)

    @property
    def route_key(self) -> Tuple[str, str]:
        return self.package or "default", self.name

    @property
    def url_path(self) -> str:
        return "/api/v1/web/%s/%s/%s" % (self.args.namespace, self.package or "default", self.name)

    def launch(self) -> None:
        """Start the shim for a model directory as a local process (an address needs nothing)."""
        if self.model_dir is None:
            return
        self.port = free_port()
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        environment[RESULT_LIMIT_ENV] = str(self.args.result_limit)  # the shim answers 413 past the same limit
        if self.args.concurrency > 1:
            # What an operator sets for actions created with --concurrency N (container-args extra env,
            # ConcurrencyTests.scala:51): the proxy then takes overlapping /runs.
            environment["__OW_ALLOW_CONCURRENT"] = "true"
        # Loopback only: the endpoint is the one way in, as the controller is on the platform.
        command = [self.args.python, self.args.shim, "--port", str(self.port), "--host", "127.0.0.1"]
        with self.process_lock, _signals_deferred():
            if self.closed:
                raise ActionStartError("action %s: the endpoint is stopping" % self.full_name)
            try:
                self.process = subprocess.Popen(command, cwd=self.model_dir, env=environment,
                                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, start_new_session=True)
            except OSError as error:
                raise ActionStartError("action %s: cannot run %s: %s" % (self.full_name, " ".join(command), error))
        self.run_ids = []
        self.pumps = [threading.Thread(target=self._pump, args=(stream, label, self.run_ids), daemon=True)
                      for stream, label in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr"))]
        for pump in self.pumps:
            pump.start()

    def initialize(self) -> None:
        """Wait until the action accepts connections (never probing with /init), then send /init once."""
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts_connections(self.host, self.port):
            if self.process is not None and self.process.poll() is not None:
                raise ActionStartError(self._with_output("action %s exited with status %d before listening"
                                                         % (self.full_name, self.process.returncode)))
            if time.monotonic() > deadline:
                raise ActionStartError(self._with_output("action %s did not listen on %s:%d within %d s"
                                                         % (self.full_name, self.host, self.port, START_TIMEOUT)))
            time.sleep(0.05)
        environment = {
            "__OW_NAMESPACE": self.args.namespace,
            "__OW_ACTION_NAME": self.qualified_name,
            "__OW_ACTION_VERSION": ACTION_VERSION,
            "__OW_ACTIVATION_ID": new_activation_id(),
            "__OW_TRANSACTION_ID": new_transaction_id(),
            "__OW_DEADLINE": self._deadline(),
        }
        message = {"value": {"name": self.name, "binary": False, "main": "main", "env": environment}}
        try:
            status, _, data = self._post("/init", message, self.args.timeout)
        except (OSError, http.client.HTTPException) as error:
            raise ActionStartError(self._with_output("action %s: /init failed: %s" % (self.full_name, error)))
        if status == 403 and self.model_dir is None:
            say("%s: the container at %s:%d was initialized before; using it as it is"
                % (self.full_name, self.host, self.port))
        elif status != 200:
            raise ActionStartError(self._with_output("action %s answered /init with %d: %s"
                                                     % (self.full_name, status, data.decode("utf-8", "replace"))))

    def invoke(self, params: Dict[str, Any], activation_id: str, transaction_id: str) -> Outcome:
        """One activation: a /run with the invoker's payload, read as the invoker reads it. The run has
        the action's time limit (--timeout); a container that is new, timed out or failed starts first."""
        try:
            with self.start_lock:
                if self.needs_start or (self.process is not None and self.process.poll() is not None):
                    self._restart()
        except ActionStartError as error:
            return Outcome(DEVELOPER_ERROR, message=str(error))
        if self.process is not None:
            self.run_ids.append(activation_id)  # where its log lines go
        message = {"value": params, "namespace": self.args.namespace, "action_name": self.qualified_name,
                   "action_version": ACTION_VERSION, "activation_id": activation_id,
                   "transaction_id": transaction_id, "deadline": self._deadline()}
        try:
            status, length, data = self._post("/run", message, self.args.timeout)
        except socket.timeout:
            self._discard()
            return Outcome(NOT_READY)
        except (OSError, http.client.HTTPException):
            self._discard()
            return Outcome(DEVELOPER_ERROR, message=ABNORMAL_RUN)
        return read_run_reply(status, length, data, self.args.result_limit)

    def stop(self, final: bool = False) -> None:
        """End the local action process and everything it started. `final`: no new one starts after
        this (a restart under way in a request's thread is refused), so none outlives the endpoint."""
        with self.process_lock:
            self.closed = self.closed or final
            process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)  # its own session: the shim and anything it started
            process.wait(STOP_TIMEOUT)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _discard(self) -> None:
        """The invoker destroys a container that timed out or failed; the next activation starts a new one."""
        if self.model_dir is not None:
            self.stop()
            self.needs_start = True

    def _restart(self) -> None:
        if self.closed:
            raise ActionStartError("action %s: the endpoint is stopping" % self.full_name)
        if self.process is None:
            say("%s: starting another action process (every running one is busy)" % self.full_name)
        else:
            say("%s: starting a new action process (the previous one timed out or failed)" % self.full_name)
        self.stop()
        self.launch()
        self.initialize()
        self.needs_start = False

    def _deadline(self) -> str:
        return str(int(time.time() * 1000 + self.args.timeout * 1000))

    def _post(self, path: str, message: Dict[str, Any], timeout: float) -> Tuple[int, Optional[int], bytes]:
        """POST JSON on a new connection (the invoker never reuses one). Returns the status, the
        Content-Length (None when there is none) and the body, cut at the result limit."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request("POST", path, body=render_json(message).encode("utf-8"),
                               headers={"Content-Type": "application/json", "Accept": "application/json"})
            response = connection.getresponse()
            header = response.getheader("Content-Length", "")
            length = int(header) if header.isdigit() else None
            data = response.read(min(length, self.args.result_limit)) if length else b""
            return response.status, length, data
        finally:
            connection.close()

    def _pump(self, stream: Any, label: str, run_ids: List[str]) -> None:
        """Show the action's output, each line under the activation it belongs to: the one whose
        sentinel line has not been seen yet on this stream."""
        segment = 0
        while True:
            line = _read_capped_line(stream)
            if line is None:
                break
            kept, cut, ended = line
            text = kept.decode("utf-8", "replace")
            if cut:
                text += " ... [%d more bytes of this line not shown]" % cut
            if text or not ended:
                activation = run_ids[segment] if segment < len(run_ids) else None
                line_shown = " ".join(part for part in (self.full_name, activation, label + ":", text) if part)
                self.recent_output.append(line_shown)
                say(line_shown)
            if ended:
                segment += 1
        stream.close()

    def _with_output(self, message: str) -> str:
        if self.process is not None and self.process.poll() is not None:
            for pump in self.pumps:
                pump.join(2)  # what it wrote before exiting
        if not self.recent_output:
            return message
        return message + "; its last output:\n" + "\n".join("  " + line for line in self.recent_output)


def _read_capped_line(stream: Any) -> Optional[Tuple[bytes, int, bool]]:
    """The next line of an action's output, without its line end and without a sentinel ending it:
    (its first LOG_LINE_LIMIT bytes, how many more it had, whether the sentinel ended it); None at
    the end. The rest of a long line is read in pieces and counted, never held."""
    kept = stream.readline(LOG_LINE_LIMIT)
    if not kept:
        return None
    sentinel = SENTINEL.encode("ascii")
    cut, tail, last = 0, kept[-(len(sentinel) + 2):], kept
    while not last.endswith(b"\n"):
        last = stream.readline(LOG_LINE_LIMIT)
        if not last:
            break
        cut += len(last)
        tail = (tail + last)[-(len(sentinel) + 2):]
    line_end = len(tail) - len(tail.rstrip(b"\r\n"))
    ended = tail[:len(tail) - line_end].endswith(sentinel)
    drop = line_end + (len(sentinel) if ended else 0)  # what comes off the end of the whole line
    if drop > cut:
        kept, cut = kept[:len(kept) - (drop - cut)], 0
    else:
        cut -= drop
    return kept, cut, ended


def new_activation_id() -> str:
    return uuid.uuid4().hex


def new_transaction_id() -> str:
    return "".join(random.choice(_TID_CHARACTERS) for _ in range(32))


def _discard(stream: Any, size: int) -> None:
    while size > 0:
        piece = stream.read(min(size, 1 << 20))
        if not piece:
            return
        size -= len(piece)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((DEFAULT_HOST, 0))
        return probe.getsockname()[1]


def _accepts_connections(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


# ----------------------------------------------------------------------------- the container pool, the throttles


class ContainerPool(object):
    """The containers of one action, as the invoker keeps them: up to `size` of them, each running up
    to `concurrency` activations at once (the action's limits.concurrency). An activation takes a free
    slot of a running container; when there is none it starts another container while there are fewer
    than `size` (paying the start, a model's load, itself); else it waits its turn, first come first
    served. An action given by address is one container: the pool cannot start another."""

    def __init__(self, first: Action, size: int, concurrency: int):
        self.first = first
        self.size = size if first.model_dir is not None else 1
        self.concurrency = concurrency
        self.containers = [first]
        self.running = {first: 0}  # type: Dict[Action, int]
        self.turns = collections.deque()  # type: collections.deque
        self.changed = threading.Condition()
        self.closed = False

    def invoke(self, params: Dict[str, Any], activation_id: str, transaction_id: str, give_up_at: float,
               throttle: "NamespaceThrottle") -> Outcome:
        """One activation, waited for until `give_up_at` (the controller's wait); NOT_READY after that.
        The activation goes on without anyone waiting, queued or running, and is in flight until it
        ends: the controller's wait ends with Left(activationId) (PrimitiveActions.scala:148, 205) and
        cancels nothing; the load balancer counts an activation from its publication to its completion
        (CommonLoadBalancer.scala:137, 304)."""
        throttle.started()
        ended, abandoned = threading.Event(), threading.Event()
        outcomes = []  # type: List[Outcome]

        def activation() -> None:
            try:
                outcomes.append(self._activate(params, activation_id, transaction_id))
            finally:
                throttle.finished()
                ended.set()
            if abandoned.is_set():
                say("%s %s: ended (%s) after the controller answered 202"
                    % (self.first.full_name, activation_id, outcomes[0].kind))

        threading.Thread(target=activation, name="activation " + activation_id, daemon=True).start()
        if ended.wait(max(0.0, give_up_at - time.monotonic())):
            return outcomes[0]
        abandoned.set()
        return Outcome(NOT_READY)

    def close(self) -> None:
        """Stop every container; queued activations end, none starts a container after this."""
        with self.changed:
            self.closed = True
            self.changed.notify_all()
            containers = list(self.containers)
        for container in containers:
            container.stop(final=True)

    def _activate(self, params: Dict[str, Any], activation_id: str, transaction_id: str) -> Outcome:
        try:
            container = self._take_slot()
        except ActionStartError as error:
            return Outcome(DEVELOPER_ERROR, message=str(error))
        try:
            return container.invoke(params, activation_id, transaction_id)
        finally:
            with self.changed:
                self.running[container] -= 1
                self.changed.notify_all()

    def _take_slot(self) -> Action:
        turn = object()
        with self.changed:
            self.turns.append(turn)
            try:
                while True:
                    if self.closed:
                        raise ActionStartError("action %s: the endpoint is stopping" % self.first.full_name)
                    container = self._free_container() if self.turns[0] is turn else None
                    if container is not None:
                        self.running[container] += 1
                        return container
                    self.changed.wait()
            finally:
                self.turns.remove(turn)
                self.changed.notify_all()  # the next in line may find a slot now

    def _free_container(self) -> Optional[Action]:
        for container in self.containers:  # in start order: the longest-warm container first
            if self.running[container] < self.concurrency:
                return container
        if len(self.containers) == self.size:
            return None
        container = Action(self.first.full_name, self.first.args, self.first.model_dir)
        container.needs_start = True  # started by the activation that takes it, outside this lock
        self.containers.append(container)
        self.running[container] = 0
        return container


# The controller's replies when it throttles (object Messages in ErrorResponse.scala:67-73).
TOO_MANY_PER_MINUTE = "Too many requests in the last minute (count: %d, allowed: %d)."
TOO_MANY_CONCURRENT = "Too many concurrent requests in flight (count: %d, allowed: %d)."


class NamespaceThrottle(object):
    """The namespace's activation limits, as the controller checks them for a web action
    (EntitlementProvider.checkThrottles, Entitlement.scala:212-215, with LocalEntitlementProvider and
    a single controller: standalone OpenWhisk, and deployments before the scheduler).

    First the per-minute limit (RateThrottler.scala): a count per wall-clock minute (the epoch
    milliseconds / 60000, not a sliding window) that every check charges, refused ones too, and
    that passes while the count, this request included, is at most the limit (TimedRateLimit,
    ActivationThrottler.scala:65). Then the concurrent limit: the activations in flight in the
    namespace, over all its actions, this request not included, must be below the limit
    (ConcurrentRateLimit, ActivationThrottler.scala:59). None is no limit."""

    def __init__(self, per_minute: Optional[int], concurrent: Optional[int]):
        self.per_minute = per_minute
        self.concurrent = concurrent
        self.lock = threading.Lock()
        self.minute = -1
        self.minute_count = 0
        self.in_flight = 0

    def check(self) -> Optional[str]:
        """Charge one request; the controller's message when a limit refuses it, else None."""
        with self.lock:
            if self.per_minute is not None:
                minute = int(time.time() * 1000) // 60000  # RateInfo.getCurrentMinute
                if minute != self.minute:
                    self.minute, self.minute_count = minute, 0
                self.minute_count += 1
                if self.minute_count > self.per_minute:
                    return TOO_MANY_PER_MINUTE % (self.minute_count, self.per_minute)
            if self.concurrent is not None and self.in_flight >= self.concurrent:
                return TOO_MANY_CONCURRENT % (self.in_flight, self.concurrent)
        return None

    def started(self) -> None:
        with self.lock:
            self.in_flight += 1

    def finished(self) -> None:
        with self.lock:
            self.in_flight -= 1


# ----------------------------------------------------------------------------- the HTTP side


class EndpointServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.actions = {}  # type: Dict[Tuple[str, str], Action]
        self.pools = {}  # type: Dict[Tuple[str, str], ContainerPool]
        self.throttle = NamespaceThrottle(args.minute_limit, args.concurrent_limit)
        HTTPServer.__init__(self, (args.host, args.port), WebActionHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up before its answer is written is routine, not a fault to trace.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            HTTPServer.handle_error(self, request, client_address)


class _DeadlineReader(io.RawIOBase):
    """A connection's input where every read waits only for what is left of the request's deadline."""

    def __init__(self, connection: socket.socket):
        io.RawIOBase.__init__(self)
        self.connection = connection
        self.deadline = None  # type: Optional[float]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("the request was not read within its deadline")
            self.connection.settimeout(left)
        return self.connection.recv_into(buffer)


class WebActionHandler(BaseHTTPRequestHandler):
    """The controller's web route, /api/v1/web/..., for every action the endpoint serves."""

    protocol_version = "HTTP/1.1"
    server = None  # type: EndpointServer

    def setup(self) -> None:
        BaseHTTPRequestHandler.setup(self)
        self.reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader, 65536)

    def handle_one_request(self) -> None:
        # Each request, the first line included (an idle kept-alive connection too), gets the whole deadline.
        self.reader.deadline = time.monotonic() + self.server.args.read_timeout
        BaseHTTPRequestHandler.handle_one_request(self)

    def log_error(self, format: str, *args: Any) -> None:
        if args and isinstance(args[0], socket.timeout):
            say("-: closed a connection: no whole request within %g s" % self.server.args.read_timeout)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def __getattr__(self, name: str) -> Any:
        # Any other method reaches the route too (and is refused there with 405, as pekko does).
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        started = time.monotonic()
        transaction_id = (self.headers.get(TRANSACTION_HEADER) or "").strip(_JAVA_WHITESPACE)  # as decode_headers
        if not transaction_id or transaction_id.startswith("sid_"):
            transaction_id = new_transaction_id()
        reply, headers, label = self._answer(transaction_id, started)
        self._send(reply, [(TRANSACTION_HEADER, transaction_id)] + headers)
        say("%s: %s %s -> %d (%.0f ms)" % (label, self.command, self.path, reply.status,
                                           1000 * (time.monotonic() - started)))

    def _answer(self, transaction_id: str, started: float) -> Tuple[Reply, List[Tuple[str, str]], str]:
        args = self.server.args
        try:
            length, body = self._read_body(args.payload_limit)
        except ValueError as error:
            self.close_connection = True
            return Reply(400, body=str(error).encode("utf-8"), content_type="text/plain; charset=UTF-8"), [], "-"
        except socket.timeout:
            self.close_connection = True
            message = "The request was not read within %g s." % args.read_timeout
            return Reply(408, body=message.encode("utf-8"), content_type="text/plain; charset=UTF-8"), [], "-"
        # The request is in; its answer may take as long as the action does.
        self.reader.deadline = None
        self.connection.settimeout(None)
        if self.command not in ALLOWED_METHODS:
            message = "HTTP method not allowed, supported methods: " + ", ".join(ALLOWED_METHODS)
            return rejection_reply(405, message, transaction_id), [("Allow", ", ".join(ALLOWED_METHODS))], "-"
        raw_path, _, raw_query = self.path.encode("latin-1").partition(b"?")
        if _BAD_PERCENT.search(raw_path) or _BAD_PERCENT.search(raw_query):
            return Reply(400, body=b"Illegal request-target: invalid percent-encoding",
                         content_type="text/plain; charset=UTF-8"), [], "-"
        try:
            header_items = decode_headers(self.headers.items())
            _refuse_conflicting_content_types(header_items)
        except ValueError as error:
            self.close_connection = True
            return Reply(400, body=("Illegal request header: %s" % error).encode("utf-8"),
                         content_type="text/plain; charset=UTF-8", negotiated=False), [], "-"
        route = match_route(raw_path)
        if route is None:
            return rejection_reply(404, ROUTE_NOT_FOUND, transaction_id), [], "-"
        action = self.server.actions.get((route.package, route.action))
        if action is None or route.namespace != args.namespace:
            return self._negotiated(error_reply(404, RESOURCE_NOT_FOUND, transaction_id), [], "-", header_items,
                                    transaction_id)
        # verifyWebAction's entitlement check comes before the size check and OPTIONS, and its refusal
        # gets no CORS headers (WebActions.scala:496-498, 540-541, 572); RejectRequest(TooManyRequests)
        # (Entitlement.scala:426) is a 429 with no Retry-After. As there, the check only reads the count of
        # activations in flight; this request joins it when its activation starts, below.
        refusal = self.server.throttle.check()
        if refusal is not None:
            return self._negotiated(error_reply(429, refusal, transaction_id), [], action.full_name, header_items,
                                    transaction_id)
        if body is None:  # validateSize, once the action is known (verifyWebAction comes first)
            message = "Request larger than allowed: %d > %d bytes." % (length, args.payload_limit)
            return self._negotiated(error_reply(413, message, transaction_id), [], action.full_name, header_items,
                                    transaction_id)
        requested_headers = [value for name, value in header_items if name.lower() == "access-control-request-headers"]
        cors = [("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", CORS_METHODS),
                ("Access-Control-Allow-Headers", requested_headers[0] if requested_headers else CORS_HEADERS)]
        if self.command == "OPTIONS":
            return self._negotiated(Reply(200), cors, action.full_name, header_items, transaction_id)
        try:
            params = build_params(self.command, route, header_items, raw_query, body, action.args.web == "raw",
                                  transaction_id)
        except RequestRejected as rejected:
            if not rejected.in_route:
                return rejected.reply, [], action.full_name
            return self._negotiated(rejected.reply, cors, action.full_name, header_items, transaction_id)
        activation_id = new_activation_id()
        outcome = self.server.pools[action.route_key].invoke(params, activation_id, transaction_id,
                                                            started + args.timeout, self.server.throttle)
        if outcome.kind == DEVELOPER_ERROR:
            say("%s %s: the action failed: %s" % (action.full_name, activation_id, outcome.message))
        elif outcome.kind == NOT_READY:
            say("%s %s: no result within %g s" % (action.full_name, activation_id, args.timeout))
        reply = outcome_reply(outcome, route.extension, transaction_id)
        return self._negotiated(reply, cors + [(ACTIVATION_HEADER, activation_id)],
                                action.full_name + " " + activation_id, header_items, transaction_id)

    @staticmethod
    def _negotiated(reply: Reply, headers: List[Tuple[str, str]], label: str, header_items: List[Tuple[str, str]],
                    transaction_id: str) -> Tuple[Reply, List[Tuple[str, str]], str]:
        """The reply as content negotiation leaves it; a 406 is a rejection, so it loses the headers the
        route would have added (respondWithHeaders only changes a completed response)."""
        if not reply.negotiated:
            return reply, headers, label
        accepted = negotiate(reply, header_items)
        if accepted is None:
            return not_acceptable_reply(reply, transaction_id), [], label
        return accepted, headers, label

    def _read_body(self, limit: int) -> Tuple[int, Optional[bytes]]:
        """The body's length, and the body unless it is over the limit (then it is read and dropped).

        Chunked bodies are accepted: the controller reads the whole entity before it looks at it.
        """
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size_line = self.rfile.readline(65537).split(b";")[0].strip()
                if not re.match(rb"\A[0-9A-Fa-f]+\Z", size_line):
                    raise ValueError("Illegal request: malformed chunk size")
                size = int(size_line, 16)
                if size == 0:
                    break
                total += size
                if total <= limit:
                    chunks.append(self.rfile.read(size))
                else:  # counted, not kept: a chunk's declared size must not decide what is buffered
                    _discard(self.rfile, size)
                self.rfile.readline()
            while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return total, b"".join(chunks) if total <= limit else None
        header = self.headers.get("Content-Length", "0").strip()
        if not header.isdigit():
            raise ValueError("Illegal request: invalid Content-Length")
        length = int(header)
        if length <= limit:
            return length, self.rfile.read(length)
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)
        return length, None

    def _send(self, reply: Reply, headers: List[Tuple[str, str]]) -> None:
        self.send_response(reply.status)
        for name, value in headers + reply.headers:
            self.send_header(name, value)
        has_entity = reply.status >= 200 and reply.status not in NO_BODY_STATUSES
        body = reply.body if has_entity else b""
        if has_entity and reply.content_type is not None:
            self.send_header("Content-Type", reply.content_type)
        if reply.status >= 200 and reply.status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def version_string(self) -> str:
        return "local-openwhisk"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one access line per request is printed by _serve


# ----------------------------------------------------------------------------- command line


def parse_action(spec: str) -> Tuple[str, Optional[str], Optional[Tuple[str, int]]]:
    """[NAME=]MODEL_DIR or NAME=http://HOST:PORT -> (name, model directory, address)."""
    name, equals, target = spec.partition("=")
    if equals and "://" in target:
        return _named(name), None, _address(target)
    if "://" in spec:
        raise UsageError("%s: an action given by URL needs a name, as NAME=http://HOST:PORT" % spec)
    if not equals or not all(_ENTITY_NAME.match(part) for part in name.split("/", 1)):
        name, target = "", spec  # a directory whose path holds '='
    model_dir = os.path.abspath(target)
    if not os.path.isfile(os.path.join(model_dir, "app.py")):
        raise UsageError("%s is not a MAX model directory: it has no app.py" % target)
    return _named(name or os.path.basename(model_dir)), model_dir, None


def check_model_dependencies(name: str, model_dir: str, python: str) -> None:
    """A model built on maxfw needs a Python that has it (and the rest of the model's requirements):
    without it the shim could only report the model's ImportError, so say what to do instead."""
    with open(os.path.join(model_dir, "app.py"), encoding="utf-8", errors="replace") as app:
        if "maxfw" not in app.read():
            return
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('maxfw') else 3)"
    try:
        found = subprocess.run([python, "-c", probe], cwd=model_dir, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as error:
        raise UsageError("cannot run the Python %s for the model %s: %s" % (python, name, error))
    if not found:
        requirements = os.path.relpath(os.path.join(model_dir, "requirements.txt"))
        raise UsageError("%s cannot import maxfw, which the model %s needs: run %s (it installs the example "
                         "models' dependencies), or give --python a Python that has the model's dependencies "
                         "(pip install -r %s)" % (python, name, os.path.relpath(SERVE_EXAMPLE), requirements))


def _named(name: str) -> str:
    """NAME, or PACKAGE/NAME for an action in a package (the package "default" is no package)."""
    parts = name.split("/", 1)
    if any(len(part) > 256 or not _ENTITY_NAME.match(part) for part in parts):
        raise UsageError("%r is not a valid OpenWhisk action name (letters, digits, _ @ . - and inner spaces, "
                         "optionally after PACKAGE/)" % name)
    return parts[1] if parts[0] == "default" and len(parts) == 2 else name


def _address(url: str) -> Tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None or parts.path not in ("", "/") or parts.query:
        raise UsageError("%s is not an action address: expected http://HOST:PORT" % url)
    return parts.hostname, port


# ------------------------------------------------------------------------ wskdeploy manifests

# wskdeploy's web values (webaction.go): yes/true is a web action, raw a raw one, no/false none.
MANIFEST_WEB_MODES = {"true": "true", "yes": "true", "raw": "raw"}
# The ranges wskdeploy documents for these limits (specification/html/spec_actions.md); a deployment's
# own maximum may be lower (a stock one allows 512 MB and 300000 ms).
MANIFEST_MEMORY_MB = (128, 2048)
MANIFEST_TIMEOUT_MS = (100, 600000)
CONTAINER_ACTION_PORT = 8080


class ManifestAction(Action):
    """A docker action declared in a wskdeploy manifest, run as the invoker runs one: the image in
    a container limited to the action's memory, one activation at a time (the default, which a
    manifest cannot change), and killed when it overruns the action's time limit."""

    def __init__(self, name: str, args: argparse.Namespace, image: str, memory_mb: int, timeout_ms: int,
                 web: str):
        Action.__init__(self, name, argparse.Namespace(**dict(vars(args), web=web)))
        self.image = image
        self.memory_mb = memory_mb
        self.timeout_ms = timeout_ms
        self.container = "smx-endpoint-%s-%s" % (re.sub(r"[^a-zA-Z0-9_.-]", "-", self.name), uuid.uuid4().hex[:8])
        self.timed_out = set()  # type: set

    def launch(self) -> None:
        self.port = free_port()
        command = ["docker", "run", "--rm", "--name", self.container, "--publish",
                   "127.0.0.1:%d:%d" % (self.port, CONTAINER_ACTION_PORT),
                   "--memory", "%dm" % self.memory_mb, "--memory-swap", "%dm" % self.memory_mb, self.image]
        with self.process_lock, _signals_deferred():
            if self.closed:
                raise ActionStartError("action %s: the endpoint is stopping" % self.full_name)
            try:
                self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, start_new_session=True)
            except OSError as error:
                raise ActionStartError("action %s: cannot run docker: %s" % (self.full_name, error))
        self.run_ids = []
        self.pumps = [threading.Thread(target=self._pump, args=(stream, label, self.run_ids), daemon=True)
                      for stream, label in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr"))]
        for pump in self.pumps:
            pump.start()

    def initialize(self) -> None:
        # docker's port proxy accepts connections before the container listens: only an HTTP answer
        # (the runtime's 405 to a GET) shows the action is there to be sent /init.
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers_http():
            if self.process is not None and self.process.poll() is not None:
                raise ActionStartError(self._with_output("action %s: the container of %s exited with status %d"
                                                         % (self.full_name, self.image, self.process.returncode)))
            if time.monotonic() > deadline:
                raise ActionStartError(self._with_output("action %s: the container of %s did not answer within %d s"
                                                         % (self.full_name, self.image, START_TIMEOUT)))
            time.sleep(0.2)
        Action.initialize(self)

    def _answers_http(self) -> bool:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def invoke(self, params: Dict[str, Any], activation_id: str, transaction_id: str) -> Outcome:
        outcome = Action.invoke(self, params, activation_id, transaction_id)
        if activation_id in self.timed_out:
            self.timed_out.discard(activation_id)
            return Outcome(DEVELOPER_ERROR, message="The action exceeded its time limits of %d milliseconds."
                           % self.timeout_ms)
        return outcome

    def _post(self, path: str, message: Dict[str, Any], timeout: float) -> Tuple[int, Optional[int], bytes]:
        # The time limit runs from the /run on, as the invoker's does: waiting for the container is not in it.
        limit = self.timeout_ms / 1000.0
        if path != "/run" or timeout <= limit:
            return Action._post(self, path, message, timeout)
        try:
            return Action._post(self, path, message, limit)
        except socket.timeout:
            self.timed_out.add(message["activation_id"])
            raise

    def stop(self, final: bool = False) -> None:
        Action.stop(self, final)
        # The container outlives a docker client that had to be killed: remove it by name.
        subprocess.run(["docker", "rm", "--force", self.container], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def _discard(self) -> None:
        self.stop()
        self.needs_start = True


def manifest_actions(path: str, args: argparse.Namespace) -> List[ManifestAction]:
    """The docker web actions a wskdeploy manifest declares, with their web mode and limits."""
    try:
        import yaml  # a YAML reader only for --manifest: the endpoint itself needs the standard library alone
    except ImportError:
        raise UsageError("--manifest reads YAML with PyYAML: pip install PyYAML")
    try:
        with open(path, encoding="utf-8") as manifest_file:
            manifest = yaml.safe_load(manifest_file)
    except (OSError, yaml.YAMLError) as error:
        raise UsageError("cannot read the manifest %s: %s" % (path, error))
    packages = (manifest or {}).get("packages") if isinstance(manifest, dict) else None
    if not isinstance(packages, dict) or not packages:
        raise UsageError("%s declares no packages: a wskdeploy manifest has packages: NAME: actions: ..." % path)
    actions = []
    for package, content in packages.items():
        for name, action in ((content or {}).get("actions") or {}).items():
            actions.append(_manifest_action(path, package, str(name), action, args))
    if not actions:
        raise UsageError("%s declares no actions" % path)
    return actions


def _manifest_action(path: str, package: str, name: str, action: Any, args: argparse.Namespace) -> ManifestAction:
    where = "%s: action %s" % (path, name)
    if not isinstance(action, dict) or not isinstance(action.get("docker"), str) or not action["docker"]:
        raise UsageError("%s: the endpoint deploys docker actions only (docker: IMAGE)" % where)
    web = str(action.get("web", (action.get("annotations") or {}).get("web-export", "no"))).lower()
    if web not in MANIFEST_WEB_MODES:
        raise UsageError("%s is not a web action (web: %s); the endpoint serves web actions only" % (where, web))
    limits = action.get("limits") or {}
    memory = limits.get("memorySize", 256)
    timeout = limits.get("timeout", int(DEFAULT_TIMEOUT * 1000))
    for key, value, (low, high), unit in (("memorySize", memory, MANIFEST_MEMORY_MB, "MB"),
                                         ("timeout", timeout, MANIFEST_TIMEOUT_MS, "ms")):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise UsageError("%s: limits.%s must be a whole number of %s from %d to %d, not %r"
                             % (where, key, unit, low, high, value))
    full_name = name if package == "default" else "%s/%s" % (package, name)
    return ManifestAction(_named(full_name), args, action["docker"], memory, timeout, MANIFEST_WEB_MODES[web])


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="local_endpoint.py",
        description="Serve OpenWhisk Web Actions locally, as the controller does: "
                    "http://HOST:PORT/api/v1/web/NAMESPACE/default/ACTION[.EXT][/PATH].",
        epilog="ACTION is [NAME=]MODEL_DIR (the shim is started for it as a local process; NAME defaults to "
               "the directory's name) or NAME=http://HOST:PORT (an action container already listening, e.g. "
               "docker run -p 127.0.0.1:PORT:8080 IMAGE). Without ACTION or --manifest: "
               "examples/max-example-digit-classifier.")
    parser.add_argument("actions", nargs="*", metavar="ACTION", help="an action to serve (several allowed)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default %(default)s)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the namespace in the URL (default %(default)s)")
    parser.add_argument("--web", choices=("raw", "true"), default="raw",
                        help="the actions' web mode, as wsk action create --web (default %(default)s)")
    parser.add_argument("--payload-limit", type=int, default=DEFAULT_LIMIT, metavar="BYTES",
                        help="largest request body; larger ones get 413 (default %(default)s)")
    parser.add_argument("--result-limit", type=int, default=DEFAULT_LIMIT, metavar="BYTES",
                        help="largest /run reply the invoker accepts (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help="how long the controller waits for a result before answering 202, and each "
                             "activation's time limit (default %(default)g)")
    parser.add_argument("--read-timeout", type=float, default=DEFAULT_READ_TIMEOUT, metavar="SECONDS",
                        help="how long a client may take to send a whole request (default %(default)g)")
    parser.add_argument("--containers", type=_count(1), default=1, metavar="N",
                        help="action processes per model directory: the first starts with the endpoint, the others "
                             "when an activation finds every running one busy (default %(default)s)")
    parser.add_argument("--concurrency", type=_count(1), default=1, metavar="N",
                        help="activations one action process runs at once, as wsk action create --concurrency; "
                             "above 1 the shim gets __OW_ALLOW_CONCURRENT=true (default %(default)s)")
    parser.add_argument("--concurrent-limit", type=_count(0), metavar="N",
                        help="the namespace's activations in flight, queued ones included; more get 429 "
                             "(OpenWhisk's default 30; default here: no limit)")
    parser.add_argument("--minute-limit", type=_count(0), metavar="N",
                        help="the namespace's requests per wall-clock minute; more get 429 "
                             "(OpenWhisk's default 60; default here: no limit)")
    parser.add_argument("--python", default=sys.executable, metavar="PATH",
                        help="the Python that runs the shim for model directories (default: this one)")
    parser.add_argument("--manifest", metavar="FILE",
                        help="also deploy the docker web actions this wskdeploy manifest declares, each in a "
                             "docker container with its web mode, memory and time limit")
    parser.add_argument("--shim", default=DEFAULT_SHIM, metavar="PATH",
                        help="the action proxy started for model directories (default: openwhisk.py beside this file)")
    return parser.parse_args(argv)


def _count(least: int) -> Any:
    def parse(text: str) -> int:
        if not re.match(r"\A[0-9]+\Z", text) or int(text) < least:
            raise argparse.ArgumentTypeError("%r is not a whole number of at least %d" % (text, least))
        return int(text)
    return parse


class Shutdown(BaseException):
    """SIGINT or SIGTERM: stop serving and stop the actions. A BaseException, as KeyboardInterrupt is,
    so that no `except Exception` on the way (the server loop's, a request's) can swallow it."""


class _StopState(object):
    """Set by the stop signal handler, which runs in the main thread only. Plain attributes, not a
    threading.Event: setting an Event takes a lock that the interrupted main thread may hold."""

    requested = False
    deferring = False


def _on_stop_signal(signum: int, frame: Any) -> None:
    if _StopState.requested:
        return  # a second signal (a supervisor repeating it, Ctrl-C twice) must not cut the cleanup short
    _StopState.requested = True
    if not _StopState.deferring:
        raise Shutdown()


class _signals_deferred(object):
    """In the main thread, a stop signal arriving inside waits until the block is done: a process or
    thread is started and recorded as a whole, never started and then lost, so the stop can end it."""

    def __enter__(self) -> None:
        self.applies = threading.current_thread() is threading.main_thread() and not _StopState.deferring
        if self.applies:
            _StopState.deferring = True

    def __exit__(self, *exc_info: Any) -> None:
        if self.applies:
            _StopState.deferring = False
            if _StopState.requested:
                raise Shutdown()


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        specs = [parse_action(spec) for spec in args.actions or ([] if args.manifest else [DEFAULT_MODEL_DIR])]
        declared = manifest_actions(args.manifest, args) if args.manifest else []
        names = [name for name, _, _ in specs] + [action.full_name for action in declared]
        duplicates = sorted(set(name for name in names if names.count(name) > 1))
        if duplicates:
            raise UsageError("two actions are named %s; name them apart with NAME=..." % duplicates[0])
        if any(model_dir for _, model_dir, _ in specs) and not os.path.isfile(args.shim):
            raise UsageError("the shim %s does not exist" % args.shim)
        for name, model_dir, _ in specs:
            if model_dir is not None:
                check_model_dependencies(name, model_dir, args.python)
        server = _listen(args)
    except UsageError as error:
        sys.stderr.write("local_endpoint.py: error: %s\n" % error)
        return 2
    # Both signals are handled here, whatever was inherited: a shell without job control starts a
    # background command with SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)
    # The kernel may hand the signal to any thread, and Python runs the handler in the main thread
    # only once that thread runs again: the main thread waits on this pipe, which the signal wakes.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    actions = [Action(name, args, model_dir, address) for name, model_dir, address in specs] + declared
    serving = threading.Thread(target=server.serve_forever, name="server", daemon=True)
    try:
        for action in actions:
            server.actions[action.route_key] = action
            server.pools[action.route_key] = ContainerPool(action, args.containers, args.concurrency)
            action.launch()
        for action in actions:
            action.initialize()
        # The server loop runs in its own thread; this one only waits for a stop signal, so the
        # signal never lands inside the loop's or a request's exception handling. The thread is
        # started as a whole (signals deferred), so that the stop below knows whether to end it.
        with _signals_deferred():
            serving.start()
        _announce(args, actions)
        while True:  # until a stop signal's handler raises Shutdown here
            select.select([wake_read], [], [])
            os.read(wake_read, 512)
    except ActionStartError as error:
        sys.stderr.write("local_endpoint.py: error: %s\n" % error)
        return 2
    except Shutdown:
        pass
    finally:
        _StopState.requested = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if serving.is_alive():
            server.shutdown()
        server.server_close()
        for pool in server.pools.values():
            pool.close()
    return 0


def _listen(args: argparse.Namespace) -> EndpointServer:
    try:
        return EndpointServer(args)
    except OSError as error:
        raise UsageError("cannot listen on %s:%d: %s" % (args.host, args.port, error.strerror or error))


def _announce(args: argparse.Namespace, actions: List[Action]) -> None:
    base = "http://%s:%d" % (args.host, args.port)
    for action in actions:
        say("%s: %s%s" % (action.full_name, base, action.url_path))
        if args.containers > 1 and action.model_dir is None:
            say("%s: an action given by address is one container; --containers applies to model directories"
                % action.full_name)
    say("ready")
    hints = []
    for action in actions:
        url = base + action.url_path
        hints.append("curl %s/model/metadata" % url)
        if action.model_dir is not None:
            images = sorted(glob.glob(os.path.join(action.model_dir, "samples", "*.png")))
            if images:
                hints.append('curl -F "image=@%s" -XPOST %s' % (os.path.relpath(images[0]), url))
    for number, hint in enumerate(hints):
        say(("try:  " if number == 0 else "      ") + hint)


if __name__ == "__main__":
    sys.exit(main())
