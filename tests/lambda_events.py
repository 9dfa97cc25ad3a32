"""The events AWS services send a Lambda function for one HTTP request, and the HTTP response
rebuilt from a function's result, as those services do.

Shapes from AWS's documentation: API Gateway REST API Lambda proxy integration input (payload
1.0), HTTP API payload format 2.0, Lambda function URL request payloads (2.0 without a stage),
and Application Load Balancer Lambda target events (with and without multi-value headers); the
habits AWS's documentation leaves out follow the live captures in tests/data/lambda-events/ (a
payload 2.0 event sends the cookies both in ``cookies`` and in the ``cookie`` header).
Python 3.6 compatible, stdlib only.
"""

import base64
import uuid
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl

API_ID = "a1b2c3d4e5"
API_DOMAIN = API_ID + ".execute-api.us-east-1.amazonaws.com"
URL_DOMAIN = "k3n9x2q7w5r8t1y4u6i0o2p3a5s7d9f1.lambda-url.us-east-1.on.aws"
ALB_DOMAIN = "smx-alb-123456789.us-east-1.elb.amazonaws.com"
TARGET_GROUP = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/smx/0123456789abcdef"
SOURCE_IP = "203.0.113.7"
STAGE = "prod"

Headers = List[Tuple[str, str]]
KINDS = ("apigateway-v1", "apigateway-v2", "function-url", "alb", "alb-multi-value")


# Where AWS's Runtime Interface Emulator takes invocations (the event as the body).
INVOCATIONS = "/2015-03-31/functions/function/invocations"

def host_of(kind: str) -> str:
    """The Host header each service's requests carry."""
    return {"function-url": URL_DOMAIN, "alb": ALB_DOMAIN, "alb-multi-value": ALB_DOMAIN}.get(kind, API_DOMAIN)


def script_name_of(kind: str) -> str:
    """The prefix the app is mounted under: the stage in the events this module builds."""
    return "/" + STAGE if kind in ("apigateway-v1", "apigateway-v2") else ""


def forwarded_headers(kind: str, headers: Headers) -> Headers:
    """The request headers as the service forwards them: its Host and X-Forwarded-* added."""
    added = [("Host", host_of(kind)), ("X-Forwarded-For", SOURCE_IP), ("X-Forwarded-Port", "443"),
             ("X-Forwarded-Proto", "https")]
    names = set(name.lower() for name, _ in added)
    return added + [(name, value) for name, value in headers if name.lower() not in names]


def _body_fields(body: bytes, force_base64: bool) -> Dict[str, Any]:
    if not body:
        return {"body": None, "isBase64Encoded": False}
    if not force_base64:
        try:
            return {"body": body.decode("utf-8"), "isBase64Encoded": False}
        except UnicodeDecodeError:
            pass
    return {"body": base64.b64encode(body).decode("ascii"), "isBase64Encoded": True}


def _multi(pairs: List[Tuple[str, str]]) -> Dict[str, List[str]]:
    multi = {}  # type: Dict[str, List[str]]
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    return multi


def _raw_query_pairs(query: str) -> List[Tuple[str, str]]:
    """The query's name=value pairs exactly as in the URL (ALB does not decode them)."""
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append((name, value))
    return pairs


def api_gateway_v1(method: str, path: str, query: str = "", headers: Optional[Headers] = None, body: bytes = b"",
                   force_base64: bool = False) -> Dict[str, Any]:
    """A REST API proxy integration event (resource /{proxy+}), through the default endpoint of stage prod."""
    headers = forwarded_headers("apigateway-v1", headers or [])
    query_pairs = parse_qsl(query, keep_blank_values=True)
    is_root = path == "/"
    event = {
        "resource": "/" if is_root else "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": _multi(headers),
        "queryStringParameters": dict(query_pairs) or None,
        "multiValueQueryStringParameters": _multi(query_pairs) or None,
        "pathParameters": None if is_root else {"proxy": path[1:]},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123", "resourcePath": "/" if is_root else "/{proxy+}", "httpMethod": method,
            "extendedRequestId": "c2lA3HIroAMFZ5w=", "requestTime": "28/Nov/2026:05:00:00 +0000",
            "path": "/" + STAGE + path, "accountId": "123456789012", "protocol": "HTTP/1.1", "stage": STAGE,
            "domainPrefix": API_ID, "requestTimeEpoch": 1795842000000, "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": SOURCE_IP, "userAgent": "curl/8.5.0"}, "domainName": API_DOMAIN,
            "apiId": API_ID,
        },
    }  # type: Dict[str, Any]
    event.update(_body_fields(body, force_base64))
    return event


def _payload_v2(kind: str, method: str, path: str, query: str, headers: Headers, body: bytes, stage: str,
                domain: str) -> Dict[str, Any]:
    headers = forwarded_headers(kind, headers)
    cookies = []  # type: List[str]
    joined = {}  # type: Dict[str, str]
    for name, value in headers:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            # ... and the header too, as the client sent it (function-url-request-with-headers-and-cookies-*.json).
            joined[lower] = joined[lower] + "; " + value if lower in joined else value
            continue
        joined[lower] = joined[lower] + "," + value if lower in joined else value
    query_pairs = parse_qsl(query, keep_blank_values=True)
    single = {}  # type: Dict[str, str]
    for name, value in query_pairs:
        single[name] = single[name] + "," + value if name in single else value
    raw_path = ("/" + stage if stage != "$default" else "") + path
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "accountId": "123456789012", "apiId": domain.split(".")[0], "domainName": domain,
            "domainPrefix": domain.split(".")[0], "requestId": str(uuid.uuid4()), "routeKey": "$default",
            "stage": stage, "time": "28/Nov/2026:05:00:00 +0000", "timeEpoch": 1795842000000,
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": SOURCE_IP,
                     "userAgent": "curl/8.5.0"},
        },
    }  # type: Dict[str, Any]
    if cookies:
        event["cookies"] = cookies
    if single:
        event["queryStringParameters"] = single
    # HTTP APIs and function URLs carry every body that is not text as base64.
    event.update(_body_fields(body, False))
    if event["body"] is None:
        del event["body"]
    return event


def api_gateway_v2(method: str, path: str, query: str = "", headers: Optional[Headers] = None,
                   body: bytes = b"") -> Dict[str, Any]:
    """An HTTP API event, payload format 2.0, through the default endpoint of stage prod."""
    return _payload_v2("apigateway-v2", method, path, query, headers or [], body, STAGE, API_DOMAIN)


def function_url(method: str, path: str, query: str = "", headers: Optional[Headers] = None,
                 body: bytes = b"") -> Dict[str, Any]:
    """A Lambda function URL event: payload 2.0, stage $default."""
    return _payload_v2("function-url", method, path, query, headers or [], body, "$default", URL_DOMAIN)


def alb(method: str, path: str, query: str = "", headers: Optional[Headers] = None, body: bytes = b"",
        multi_value: bool = False) -> Dict[str, Any]:
    """An Application Load Balancer event; query values as they were in the URL."""
    kind = "alb-multi-value" if multi_value else "alb"
    headers = [(name.lower(), value) for name, value in forwarded_headers(kind, headers or [])]
    query_pairs = _raw_query_pairs(query)
    event = {"requestContext": {"elb": {"targetGroupArn": TARGET_GROUP}}, "httpMethod": method,
             "path": path}  # type: Dict[str, Any]
    if multi_value:
        event["multiValueQueryStringParameters"] = _multi(query_pairs)
        event["multiValueHeaders"] = _multi(headers)
    else:
        event["queryStringParameters"] = dict(query_pairs)
        event["headers"] = dict(headers)
    event.update(_body_fields(body, False))
    if event["body"] is None:
        event["body"] = ""
    return event


def event_for(kind: str, method: str, path: str, query: str = "", headers: Optional[Headers] = None,
              body: bytes = b"") -> Dict[str, Any]:
    builders = {
        "apigateway-v1": api_gateway_v1, "apigateway-v2": api_gateway_v2, "function-url": function_url,
        "alb": alb,
    }  # type: Dict[str, Callable[..., Dict[str, Any]]]
    if kind == "alb-multi-value":
        return alb(method, path, query, headers, body, multi_value=True)
    return builders[kind](method, path, query, headers, body)


def http_response(result: Dict[str, Any]) -> Tuple[int, Headers, bytes]:
    """The HTTP response a service sends for a function's result: status, headers, body bytes."""
    headers = []  # type: Headers
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, value) for value in values)
    names = set(name.lower() for name, _ in headers)
    for name, value in (result.get("headers") or {}).items():
        if name.lower() not in names:
            headers.append((name, value))
    headers.extend(("Set-Cookie", cookie) for cookie in result.get("cookies") or [])
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    return result["statusCode"], headers, data


def header(headers: Headers, name: str) -> str:
    return next((value for key, value in headers if key.lower() == name.lower()), "")
