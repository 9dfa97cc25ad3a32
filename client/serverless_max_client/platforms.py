"""What each platform's answer means for a batch: done, the input's fault, or "not now" (re-send).

The platforms' ways of saying "not now", from their sources and documentation:
  OpenWhisk controller   429 {"error": "Too many concurrent requests in flight (count: N, allowed: M).", "code": ...}
                         429 {"error": "Too many requests in the last minute (count: N, allowed: M).", ...}
                         (common/scala .../http/ErrorResponse.scala Messages; no Retry-After)
                         503 {"error": "System is overloaded, try again later.", ...}: no invoker free
                         202 {"error": "Response not yet ready.", ...} with x-openwhisk-activation-id: the
                         action ran past the controller's wait; predictions are idempotent, so re-send
  Lambda Invoke API      429 TooManyRequestsException {"Reason": ..., "retryAfterSeconds": ..., "message": ...}
  Lambda function URL    429 with x-amzn-ErrorType: ThrottlingException (or TooManyRequestsException); with
                         provisioned concurrency it has also answered 400 with that header, {"message": "Rate Exceeded."}
  API Gateway + Lambda   500 {"message": "Internal server error"}: a throttled (or failed) function, masked
                         (AWS knowledge center: "API Gateway ... might return an Internal server error"; back off)
  Knative queue-proxy    503 "pending request queue full" (the revision's queue is full)
  Cloud Run              429 when no instance frees up within 60 s at max instances
Anything 429 or 503 cuts the concurrency; 502 and 504 are retried without a cut.
"""

import email.utils
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

OK, FAIL, THROTTLED, TRANSIENT = "ok", "fail", "throttled", "transient"
ALLOWED = re.compile(r"allowed: (\d+)\)")

# Response headers that name the request on each platform, most specific first.
REQUEST_ID_HEADERS = ("x-openwhisk-activation-id", "x-amzn-requestid", "x-amz-apigw-id", "x-cloud-trace-context",
                      "x-request-id", "traceparent")

LIMIT_ADVICE = ("the request is over the platform's request size limit (OpenWhisk: 1 MB by default, the "
                "controller's whisk.activation.payload.max; Lambda: 6 MB per synchronous invocation, behind a "
                "function URL or API Gateway too, and the body travels base64-encoded in the event, so about "
                "4.4 MB of input fits; Cloud Run: 32 MiB over HTTP/1): send smaller inputs (e.g. resize images) "
                "or raise the limit where the platform allows it")


@dataclass
class Verdict:
    kind: str                      # OK, FAIL, THROTTLED or TRANSIENT
    signal: Optional[str] = None   # the platform's "not now" met, for the summary
    message: Optional[str] = None  # for FAIL: what went wrong, in the platform's or model's words
    retry_after: Optional[float] = None
    allowed: Optional[int] = None  # the concurrency the platform says it allows (OpenWhisk's "allowed: M")


def message_of(body: bytes, limit: int = 500) -> str:
    """The error text of an answer: its JSON error/message field, else the start of its text."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        value = None
    if isinstance(value, dict):
        for key in ("error", "message", "errorMessage", "Message", "detail"):
            if isinstance(value.get(key), str):
                return value[key][:limit]
        return json.dumps(value)[:limit]
    text = body.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:limit] or "(empty body)"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def retry_after_seconds(headers: Mapping[str, str], body_json: Any) -> Optional[float]:
    value = headers.get("retry-after")
    if value is None and isinstance(body_json, dict):
        value = body_json.get("retryAfterSeconds")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:  # Retry-After may also be an HTTP date
        return max(0.0, email.utils.parsedate_to_datetime(str(value)).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    """headers: lower-case names."""
    if 200 <= status < 300 and status != 202:
        return Verdict(OK)
    body_json = _json(body)
    text = message_of(body)
    error_type = headers.get("x-amzn-errortype", "").split(":")[0]
    if status == 202:
        if "not yet ready" in text or "x-openwhisk-activation-id" in headers:
            return Verdict(THROTTLED, "OpenWhisk 202 Response not yet ready (re-sent)")
        return Verdict(FAIL, message="HTTP 202 without a result: " + text)
    if error_type in ("ThrottlingException", "TooManyRequestsException") and status in (400, 429):
        # A function URL throttles with 429 (and, with provisioned concurrency, has answered 400) and this header.
        reason = body_json.get("Reason") if isinstance(body_json, dict) else None
        name = "Lambda function URL" if error_type == "ThrottlingException" else "Lambda"
        return Verdict(THROTTLED, "%s %d %s%s" % (name, status, error_type, " (%s)" % reason if reason else ""),
                       retry_after=retry_after_seconds(headers, body_json))
    if status == 429:
        if "Too many concurrent requests in flight" in text:
            allowed = ALLOWED.search(text)
            return Verdict(THROTTLED, "OpenWhisk 429 Too many concurrent requests in flight",
                           allowed=int(allowed.group(1)) if allowed else None)
        elif "Too many requests in the last minute" in text:
            # The controller counts per minute of its clock (RateThrottler: currentTimeMillis / 60000);
            # nothing passes before the next one starts, so every request waits for it (1 s for skew).
            return Verdict(THROTTLED, "OpenWhisk 429 Too many requests in the last minute",
                           retry_after=60.0 - time.time() % 60.0 + 1.0)
        elif isinstance(body_json, dict) and "Reason" in body_json:
            signal = "Lambda 429 TooManyRequestsException (%s)" % body_json["Reason"]
        else:
            signal = "HTTP 429 Too Many Requests (Cloud Run: no instance available; or a gateway's rate limit)"
        return Verdict(THROTTLED, signal, retry_after=retry_after_seconds(headers, body_json))
    if status == 503:
        if "pending request queue full" in text:
            signal = "Knative queue-proxy 503 pending request queue full"
        elif "System is overloaded" in text:
            signal = "OpenWhisk 503 System is overloaded"
        else:
            signal = "HTTP 503 Service Unavailable"
        return Verdict(THROTTLED, signal, retry_after=retry_after_seconds(headers, body_json))
    if status == 500 and body_json == {"message": "Internal server error"} and (
            "x-amzn-requestid" in headers or "x-amz-apigw-id" in headers):
        return Verdict(THROTTLED, "API Gateway 500 Internal server error (a throttled or failed Lambda)")
    if status in (502, 504):
        return Verdict(TRANSIENT, "HTTP %d from a gateway" % status)
    if status == 413:
        return Verdict(FAIL, message="413 %s; %s" % (text, LIMIT_ADVICE))
    if status == 403 and error_type == "AccessDeniedException":
        return Verdict(FAIL, message="403 %s; an IAM-authenticated function URL needs --aws-sigv4" % text)
    return Verdict(FAIL, message="%d %s" % (status, text))


def request_id(headers: Mapping[str, str]) -> Optional[str]:
    for name in REQUEST_ID_HEADERS:
        if headers.get(name):
            return headers[name]
    return None


def platform_of(url: str) -> str:
    """The platform a URL points at, for the run's header line (classification goes by the answers)."""
    lowered = url.lower()
    if lowered.startswith("lambda://"):
        return "AWS Lambda (Invoke API)"
    if "/api/v1/web/" in lowered:
        return "Apache OpenWhisk web action"
    if ".lambda-url." in lowered:
        return "AWS Lambda function URL"
    if ".execute-api." in lowered:
        return "Amazon API Gateway"
    if ".run.app" in lowered:
        return "Google Cloud Run"
    if "codeengine.appdomain.cloud" in lowered:
        return "IBM Code Engine"
    return "HTTP (Knative, Cloud Run, Code Engine or local)"


def lower_headers(headers: Mapping[str, Any]) -> Dict[str, str]:
    return dict((str(name).lower(), str(value)) for name, value in headers.items())
