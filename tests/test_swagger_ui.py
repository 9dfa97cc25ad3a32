"""The example models' Swagger UI in a real browser, through the local Web Action endpoint.

A MAX model's landing page is its Swagger UI: maxfw serves it at `/`, and the page loads
`swagger.json` and its scripts from under the prefix the app is mounted at. Through OpenWhisk that
prefix is the action's URL, /api/v1/web/<namespace>/<package>/<action>. Headless Chromium (Debian's
chromium and chromium-driver packages, see scripts/install-browser.sh) opens each example's page
there, waits for the operations list the UI builds from swagger.json, and runs "Try it out" on
POST /model/predict with one of the model's recorded samples, typed or uploaded through the form:
the answer the page shows must be the recorded one. Those runs raise the result limit, since
the UI's main script alone is over OpenWhisk's default; a last test opens the page within the
default limits.

The browser is driven through chromedriver's W3C WebDriver HTTP API with urllib. Without the
browser the tests skip, unless SMX_BROWSER=1 (scripts/test.sh sets it): then they fail.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from samples import EXAMPLES_DIR, SampleRequest, check_expected, load_samples
from support import free_port
from test_local_endpoint import LocalEndpoint

# Debian's /usr/bin/chromium is a shell wrapper; chromedriver starts the browser binary itself.
CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600",
    # Without these the browser calls home at start; this network refuses those connections.
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = "install them with scripts/install-browser.sh (Debian's chromium and chromium-driver)"
# W3C WebDriver's key for an element reference, in JSON both ways.
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
# Generous: the suite may run on a loaded 2-core machine. A wait ends as soon as its condition holds.
WAIT_SECONDS = 90.0

# The controller negotiates the result's content type against the request's Accept (pekko-http's
# marshalling; WebActionsApiTests pins the 406). The upscaler answers image/png, but its Swagger
# document, like the real resolution enhancer's, lists no response type, so the UI asks for
# application/json: through OpenWhisk, "Try it out" gets the controller's 406 (curl, sending */*,
# gets the image).
REFUSED_BY_ACCEPT = {"max-example-image-upscaler": "image/png"}

# The sample each model's "Try it out" sends; its input goes through the form as a user's would.
TRY_IT_OUT = {
    "max-example-text-sentiment": "predict-one",
    "max-example-digit-classifier": "predict-digit-3",
    "max-example-image-upscaler": "predict-shapes",
}


# ----------------------------------------------------------------------------- WebDriver client


class WebDriverError(Exception):
    pass


class Browser(object):
    """A headless Chromium session behind its own chromedriver, on a free loopback port."""

    def __init__(self, chromedriver: str, chromium: str, work_dir: str):
        self.port = free_port()
        self.log_path = os.path.join(work_dir, "chromedriver.log")
        self.process = subprocess.Popen([chromedriver, "--port=%d" % self.port, "--log-path=" + self.log_path],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.session = ""
        try:
            self._wait_for_driver()
            options = {"binary": chromium, "args": CHROMIUM_FLAGS + ["--user-data-dir=" + os.path.join(work_dir, "profile")]}
            capabilities = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options,
                                            "timeouts": {"pageLoad": int(WAIT_SECONDS * 1000),
                                                         "script": int(WAIT_SECONDS * 1000)}}}
            reply = self._call("POST", "/session", {"capabilities": capabilities})
            self.session = "/session/" + reply["sessionId"]
        except BaseException:
            self.close()
            raise

    def _wait_for_driver(self) -> None:
        deadline = time.time() + WAIT_SECONDS
        while True:
            try:
                if self._call("GET", "/status").get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            if self.process.poll() is not None or time.time() > deadline:
                raise WebDriverError("chromedriver did not start; see " + self.log_path)
            time.sleep(0.1)

    def _call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data, method=method,
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=WAIT_SECONDS + 30) as response:
                return json.loads(response.read().decode("utf-8"))["value"]
        except urllib.error.HTTPError as error:
            reply = json.loads(error.read().decode("utf-8", "replace") or "{}").get("value", {})
            raise WebDriverError("%s %s: %s: %s" % (method, path, reply.get("error"), reply.get("message")))

    def command(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        return self._call(method, self.session + path, body)

    def open(self, url: str) -> None:
        self.command("POST", "/url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """The value of a JavaScript function body, called with args (elements as references)."""
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def run_async(self, script: str, *args: Any) -> Any:
        """Like run, for a body that passes its value to the callback given as its last argument."""
        return self.command("POST", "/execute/async", {"script": script, "args": list(args)})

    def wait_for(self, script: str, *args: Any, what: str) -> Any:
        """Polls a function body until it returns something truthy, and returns that."""
        deadline = time.time() + WAIT_SECONDS
        while True:
            value = self.run(script, *args)
            if value:
                return value
            if time.time() > deadline:
                raise AssertionError("the page never showed %s; it shows:\n%s" % (what, self.page_text()))
            time.sleep(0.1)

    def page_text(self) -> str:
        return self.run("return document.body ? document.body.innerText : ''")

    def click(self, element: Dict[str, str]) -> None:
        self.command("POST", "/element/%s/click" % element[ELEMENT], {})

    def type_into(self, element: Dict[str, str], text: str) -> None:
        self.command("POST", "/element/%s/value" % element[ELEMENT], {"text": text})

    def screenshot(self, path: str) -> None:
        with open(path, "wb") as image:
            image.write(base64.b64decode(self.command("GET", "/screenshot")))

    def close(self) -> None:
        try:
            if self.session:
                self.command("DELETE", "")
        finally:
            self.session = ""
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()


def browser_programs() -> Tuple[str, str]:
    """chromedriver and the Chromium binary; a skip, or with SMX_BROWSER=1 a failure, without them."""
    chromedriver = shutil.which("chromedriver")
    chromium = next((path for path in CHROMIUM_PATHS if os.access(path, os.X_OK)), None)
    if chromedriver and chromium:
        return chromedriver, chromium
    message = "headless Chromium and chromedriver are needed: " + INSTALL_HINT
    if os.environ.get("SMX_BROWSER") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# ----------------------------------------------------------------------------- the Swagger UI


# The pieces of the UI the test reads, by their looks rather than their markup alone: Swagger UI
# 3.4 (flask-restplus 0.11, the max-era) and 3.x of flask-restx differ in the details.
FIND_OPERATION = """
var method = arguments[0], path = arguments[1];
return Array.from(document.querySelectorAll('.opblock')).find(function (block) {
  var shownMethod = block.querySelector('.opblock-summary-method');
  var shownPath = block.querySelector('.opblock-summary-path');
  return shownMethod && shownPath && shownMethod.innerText.trim() === method && shownPath.innerText.trim() === path;
}) || null;
"""
# What the page could not load, with the HTTP status it got (Chromium reports it per resource).
FAILED_RESOURCES = """
return performance.getEntriesByType('resource').filter(function (entry) {
  return entry.responseStatus >= 400;
}).map(function (entry) { return entry.name + ' -> ' + entry.responseStatus; });
"""
OPERATION_PATHS = """
var paths = Array.from(document.querySelectorAll('.opblock-summary-path'));
return paths.length ? paths.map(function (path) { return path.innerText.trim(); }) : null;
"""
# The live answer: the responses table whose header reads Code / Details, once it has a status.
LIVE_RESPONSE = """
var operation = arguments[0];
var table = Array.from(operation.querySelectorAll('table.responses-table')).find(function (table) {
  var header = table.querySelector('thead');
  return header && /Details/.test(header.innerText);
});
var row = table && table.querySelector('tbody tr');
var status = row && parseInt(row.querySelector('.response-col_status').innerText, 10);
if (!status) return null;
function section(title) {
  var heading = Array.from(row.querySelectorAll('h5')).find(function (h) { return h.innerText.trim() === title; });
  return heading ? heading.parentElement : null;
}
var body = section('Response body'), headers = section('Response headers');
var image = body && body.querySelector('img');
var text = body && body.querySelector('pre');
var url = operation.querySelector('.request-url');
return {status: status, headers: headers ? headers.innerText : '', image: image ? image.src : null,
        text: text ? text.innerText : null, requestUrl: url ? url.innerText : ''};
"""
# A textarea's whole new value as one input event, as a paste makes it, which React picks up.
# Typed keys do not work on Swagger UI 3.4: its body textarea is re-rendered after the first key
# and the next ones are lost.
SET_TEXTAREA = """
var area = arguments[0];
Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set.call(area, arguments[1]);
area.dispatchEvent(new Event('input', {bubbles: true}));
"""
FETCH_AS_BASE64 = """
var done = arguments[arguments.length - 1];
fetch(arguments[0]).then(function (response) { return response.blob(); }).then(function (blob) {
  var reader = new FileReader();
  reader.onload = function () { done(reader.result.split(',')[1]); };
  reader.readAsDataURL(blob);
}).catch(function (error) { done('error: ' + error); });
"""


def sample_case(model_dir: str, name: str) -> Dict[str, Any]:
    """A case of the model's samples/requests.json as recorded: the input files it names."""
    with open(os.path.join(model_dir, "samples", "requests.json"), encoding="utf-8") as manifest:
        return next(case for case in json.load(manifest) if case["name"] == name)


def open_operations(browser: Browser, url: str) -> List[str]:
    """Opens the landing page; returns the paths of the operations listed (every tag expanded)."""
    browser.open(url)  # returns once the page has loaded, its scripts run
    loaded = browser.run("return typeof SwaggerUIBundle !== 'undefined'")
    assert loaded, "the Swagger UI's script did not load: %s" % browser.run(FAILED_RESOURCES)
    browser.wait_for("return document.querySelector('.opblock-tag')", what="the operations from swagger.json")
    for tag in browser.run("return Array.from(document.querySelectorAll('.opblock-tag'))"):
        browser.click(tag)  # the examples set docExpansion 'none': every tag starts closed
    return browser.wait_for(OPERATION_PATHS, what="the operations under the tags")


def try_it_out(browser: Browser, model_dir: str, case: Dict[str, Any]) -> Dict[str, Any]:
    """Fills POST /model/predict's form with the case's input, executes it, returns the live answer."""
    operation = browser.wait_for(FIND_OPERATION, "POST", "/model/predict", what="POST /model/predict")
    browser.click(browser.run("return arguments[0].querySelector('.opblock-summary')", operation))
    browser.click(browser.wait_for("return arguments[0].querySelector('.try-out__btn')", operation,
                                   what="the Try it out button"))
    if "json" in case:
        area = browser.wait_for("return arguments[0].querySelector('textarea.body-param__text')", operation,
                                what="the body's text area")
        browser.run(SET_TEXTAREA, area, json.dumps(case["json"]))
    else:
        (field, part), = case["multipart"].items()  # the one upload, the image
        chooser = browser.wait_for("return arguments[0].querySelector('input[type=file]')", operation,
                                   what="the file input for %s" % field)
        # chromedriver sets a file input's files from a path sent as its keys.
        browser.type_into(chooser, os.path.join(model_dir, "samples", part["file"]))
    browser.click(browser.run("return arguments[0].querySelector('.execute')", operation))
    return browser.wait_for(LIVE_RESPONSE, operation, what="the answer to Execute")


def answer_body(browser: Browser, answer: Dict[str, Any]) -> bytes:
    """The answer's bytes as the page holds them: the image it shows, or the text."""
    if answer["image"]:
        data = browser.run_async(FETCH_AS_BASE64, answer["image"])
        assert not data.startswith("error"), data
        return base64.b64decode(data)
    assert answer["text"] is not None, "the answer shows no body: %r" % answer
    return answer["text"].encode("utf-8")


def content_type(headers_text: str) -> str:
    match = re.search(r"^\s*content-type:\s*(.+?)\s*$", headers_text, re.IGNORECASE | re.MULTILINE)
    assert match, "the answer shows no Content-Type:\n" + headers_text
    return match.group(1)


# ----------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromedriver, chromium = browser_programs()
    work_dir = tempfile.mkdtemp(prefix="smx-browser-")
    session = Browser(chromedriver, chromium, work_dir)
    try:
        yield session
    finally:
        session.close()
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    model_dirs = [os.path.join(EXAMPLES_DIR, model) for model in sorted(TRY_IT_OUT)]
    # Stock limits: the Swagger UI's 1.0-1.4 MB script bundle fits the 1 MB result only gzipped, which
    # the runtime does as the browser accepts gzip.
    with LocalEndpoint(*model_dirs) as running:
        yield running


@pytest.mark.parametrize("model", sorted(TRY_IT_OUT))
def test_swagger_ui_tries_predict_through_the_action_url(browser: Browser, endpoint: LocalEndpoint,
                                                         model: str, tmp_path: Any) -> None:
    model_dir = os.path.join(EXAMPLES_DIR, model)
    sample = next(s for s in load_samples(model_dir) if s.name == TRY_IT_OUT[model])  # type: SampleRequest
    action_url = endpoint.url(model)

    paths = open_operations(browser, action_url + "/")
    assert {"/model/metadata", "/model/predict"} <= set(paths), paths
    assert browser.run(FAILED_RESOURCES) == []  # swagger.json, scripts, styles: all through the action URL
    answer = try_it_out(browser, model_dir, sample_case(model_dir, sample.name))
    browser.run("document.querySelector('.request-url').scrollIntoView()")
    browser.screenshot(str(tmp_path / (model + ".png")))

    # The UI sent the request to the action's URL, the spec's basePath, not to the host's root.
    assert action_url + "/model/predict" in answer["requestUrl"], answer["requestUrl"]
    if model in REFUSED_BY_ACCEPT:
        assert answer["status"] == 406, answer
        assert REFUSED_BY_ACCEPT[model] in answer_body(browser, answer).decode("utf-8")
        return
    check_expected(sample, answer["status"], content_type(answer["headers"]), answer_body(browser, answer))
