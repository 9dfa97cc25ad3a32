"""Sending one request: over HTTP to a deployed URL, or to lambda://FUNCTION through Lambda's Invoke API.

Both answer an `Answer` (status, lower-case headers, body) or raise `SendError` with a short kind
("connection refused", "connection reset", "timeout", ...) that the retry logic and the attempt log use.
"""

import asyncio
import base64
import json
import os
import socket
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Optional

import aiohttp

from . import __version__
from .inputs import UsageError
from .platforms import lower_headers

INVOKE_PATH = "/2015-03-31/functions/%s/invocations"
USER_AGENT = "serverless-max/%s" % __version__
BOTOCORE_MISSING = ("AWS SigV4 needs botocore, which is not installed: pip install 'serverless-max-client[aws]' "
                    "(or pip install botocore)")


@dataclass
class Answer:
    status: int
    headers: Dict[str, str]
    body: bytes


class SendError(Exception):
    def __init__(self, kind: str, detail: str = ""):
        Exception.__init__(self, kind + (": " + detail if detail else ""))
        self.kind = kind


def _send_error(error: BaseException) -> SendError:
    if isinstance(error, asyncio.TimeoutError):
        return SendError("timeout")
    if isinstance(error, aiohttp.ClientConnectorError):
        reason = getattr(error.os_error, "strerror", None) or str(error.os_error)
        if isinstance(error.os_error, socket.gaierror):
            return SendError("unknown host", reason)
        if isinstance(error.os_error, ConnectionRefusedError):
            return SendError("connection refused", reason)
        return SendError("connection failed", reason)
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return SendError("connection closed", "the server closed the connection without an answer")
    if isinstance(error, aiohttp.ClientPayloadError):
        return SendError("answer cut short", str(error))
    if isinstance(error, (aiohttp.ClientOSError, ConnectionError)):
        return SendError("connection reset", str(error))
    return SendError("connection failed", "%s: %s" % (type(error).__name__, error))


class Signer(object):
    """AWS SigV4 with botocore's signer and credential chain; region from --region, the URL or AWS config."""

    def __init__(self, region: Optional[str]):
        try:
            from botocore.session import Session
        except ImportError:
            raise UsageError(BOTOCORE_MISSING)
        self.session = Session()
        # AWS_REGION is what Lambda and the newer SDKs set; botocore itself reads AWS_DEFAULT_REGION.
        self.region = region or os.environ.get("AWS_REGION") or self.session.get_config_variable("region")
        credentials = self.session.get_credentials()
        if credentials is None:
            raise UsageError("AWS SigV4: no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                             "AWS_PROFILE, or run aws configure / aws sso login)")
        if not self.region:
            raise UsageError("AWS SigV4: no region (give --region, or set AWS_REGION or AWS_DEFAULT_REGION)")
        self.credentials = credentials

    def sign(self, method: str, url: str, body: bytes, headers: Dict[str, str]) -> Dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(self.credentials.get_frozen_credentials(), "lambda", self.region).add_auth(request)
        return dict(request.headers.items())


def region_of_function_url(url: str) -> Optional[str]:
    host = urllib.parse.urlsplit(url).hostname or ""
    parts = host.split(".")
    if "lambda-url" in parts and parts.index("lambda-url") + 1 < len(parts):
        return parts[parts.index("lambda-url") + 1]
    return None


class HttpTransport(object):
    """Requests to the deployed model's base URL, over one pooled aiohttp session."""

    def __init__(self, base_url: str, headers: Dict[str, str], connections: int, timeout: float,
                 signer: Optional[Signer] = None):
        self.base_url = base_url
        self.headers = headers
        self.signer = signer
        self.connections = connections
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0))
        self.session: Optional[aiohttp.ClientSession] = None

    async def __aenter__(self) -> "HttpTransport":
        connector = aiohttp.TCPConnector(limit=self.connections, limit_per_host=0, ttl_dns_cache=300)
        self.session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, auto_decompress=True,
                                             headers={"User-Agent": USER_AGENT})
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.session is not None:
            await self.session.close()

    async def send(self, method: str, path: str, body: bytes = b"", content_type: Optional[str] = None) -> Answer:
        url = self.base_url.rstrip("/") + path
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        if self.signer is not None:
            headers = self.signer.sign(method, url, body, headers)
        assert self.session is not None
        try:
            async with self.session.request(method, url, data=body or None, headers=headers,
                                            allow_redirects=True) as response:
                data = await response.read()
                return Answer(response.status, lower_headers(response.headers), data)
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            raise _send_error(error)


class LambdaTransport(object):
    """lambda://FUNCTION: each request becomes a function URL event (payload format 2.0) sent through
    the Invoke API, and the function's result becomes the HTTP answer, as a function URL would."""

    def __init__(self, function: str, endpoint: Optional[str], region: Optional[str], headers: Dict[str, str],
                 connections: int, timeout: float):
        self.function = function
        self.extra_headers = lower_headers(headers)
        local = endpoint is not None and urllib.parse.urlsplit(endpoint).hostname in ("127.0.0.1", "localhost", "::1")
        signer = None
        if not local:
            signer = Signer(region)  # AWS itself: SigV4 is required
            endpoint = endpoint or "https://lambda.%s.amazonaws.com" % signer.region
        else:
            try:
                signer = Signer(region)  # the emulator ignores a signature; sign when credentials exist
            except UsageError:
                signer = None
        self.http = HttpTransport(endpoint or "", {}, connections, timeout, signer)

    async def __aenter__(self) -> "LambdaTransport":
        await self.http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.http.__aexit__(*exc_info)

    def event(self, method: str, path: str, body: bytes, content_type: Optional[str]) -> Dict[str, Any]:
        raw_path, _, raw_query = path.partition("?")
        headers = dict(self.extra_headers)
        headers.setdefault("host", "%s.lambda-url.invoke" % self.function)
        headers.setdefault("user-agent", USER_AGENT)
        if content_type:
            headers["content-type"] = content_type
        headers["content-length"] = str(len(body))
        now = time.time()
        event: Dict[str, Any] = {
            "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": {
                "accountId": "anonymous", "apiId": self.function, "domainName": headers["host"],
                "domainPrefix": self.function,
                "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                         "userAgent": headers["user-agent"]},
                "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
            },
            "isBase64Encoded": bool(body),
        }
        if raw_query:
            event["queryStringParameters"] = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
        if body:
            event["body"] = base64.b64encode(body).decode("ascii")
        return event

    async def send(self, method: str, path: str, body: bytes = b"", content_type: Optional[str] = None) -> Answer:
        payload = json.dumps(self.event(method, path, body, content_type)).encode("utf-8")
        answer = await self.http.send("POST", INVOKE_PATH % urllib.parse.quote(self.function, safe=""), payload,
                                      "application/json")
        if answer.status != 200:
            return answer  # the Invoke API's own error (429 TooManyRequestsException, 413, 404...)
        return function_answer(answer)


def function_answer(invoke: Answer) -> Answer:
    """The HTTP answer a function URL makes of a function's result (or its error)."""
    request_id = invoke.headers.get("x-amzn-requestid")
    extra = {"x-amzn-requestid": request_id} if request_id else {}
    try:
        result = json.loads(invoke.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        result = None
    if "x-amz-function-error" in invoke.headers or (isinstance(result, dict) and "errorType" in result
                                                    and "statusCode" not in result):
        message = result.get("errorMessage") if isinstance(result, dict) else None
        kind = result.get("errorType") if isinstance(result, dict) else invoke.headers.get("x-amz-function-error")
        body = json.dumps({"message": "the function failed: %s: %s" % (kind, message)}).encode("utf-8")
        return Answer(502, dict(extra, **{"content-type": "application/json", "x-amz-function-error": str(kind)}), body)
    if not (isinstance(result, dict) and "statusCode" in result):
        return Answer(200, dict(extra, **{"content-type": "application/json"}), invoke.body)
    headers = lower_headers(result.get("headers") or {})
    headers.update(extra)
    body_text = result.get("body") or ""
    body = base64.b64decode(body_text) if result.get("isBase64Encoded") else body_text.encode("utf-8")
    return Answer(int(result["statusCode"]), headers, body)


def parse_lambda_target(url: str) -> Optional[str]:
    if not url.startswith("lambda://"):
        return None
    function = url[len("lambda://"):].strip("/")
    if not function:
        raise UsageError("lambda:// needs a function name or ARN, e.g. lambda://max-digit-classifier")
    return function

