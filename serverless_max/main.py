"""The command line: which platform the environment asks for, then load the model and serve it.

| platform    | chosen when                                                      | module           |
|-------------|------------------------------------------------------------------|------------------|
| `lambda`    | `AWS_LAMBDA_RUNTIME_API` is set                                  | `aws_lambda`     |
| `http`      | `K_SERVICE` is set (Knative, Cloud Run, Code Engine), or `PORT`  | `http_service`   |
|             | is set outside OpenWhisk (whose invoker sets `__OW_API_HOST`)    |                  |
| `openwhisk` | otherwise                                                        | `openwhisk`      |

`SERVERLESS_MAX_PLATFORM` or `--platform` forces one.
"""

import argparse
import os
import signal
import sys
from typing import List, Mapping, Optional, Tuple

from . import __version__, runtime

PLATFORMS = ("openwhisk", "http", "lambda")
PLATFORM_ENV = "SERVERLESS_MAX_PLATFORM"


def choose_platform(environ: Mapping[str, str], forced: Optional[str] = None) -> Tuple[str, str]:
    """The platform to serve, and why, from the process environment."""
    if forced:
        return forced, "--platform"
    if environ.get(PLATFORM_ENV):
        return environ[PLATFORM_ENV], PLATFORM_ENV + " is set"
    if environ.get("AWS_LAMBDA_RUNTIME_API"):
        return "lambda", "AWS_LAMBDA_RUNTIME_API is set"
    if environ.get("K_SERVICE"):
        return "http", "K_SERVICE is set"
    if environ.get("PORT") and not environ.get("__OW_API_HOST"):
        return "http", "PORT is set"
    return "openwhisk", "no other platform's variables are set"


def _terminate(signum: int, frame: object) -> None:
    raise runtime.Terminated(signal.Signals(signum).name)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="openwhisk.py",
        description="Serve a MAX model app on a serverless platform: an OpenWhisk Docker action (POST /init, "
                    "POST /run), plain HTTP on $PORT (Knative, Cloud Run, Code Engine), or an AWS Lambda "
                    "custom runtime. The platform is chosen from the environment.")
    parser.add_argument("--platform", choices=PLATFORMS,
                        help="force the platform (default: from the environment; " + PLATFORM_ENV + " also forces it)")
    parser.add_argument("--port", type=int, default=None,
                        help="port to listen on (default: $PORT for http, else 8080; not used by lambda)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default %(default)s)")
    parser.add_argument("--app-dir", default=".", help="the model's directory, holding app.py (default: current)")
    parser.add_argument("--default-path", default=runtime.DEFAULT_PATH,
                        help="app path for a request to the bare function URL (default %(default)s; "
                             "the environment variable " + runtime.DEFAULT_PATH_ENV + " overrides it)")
    parser.add_argument("--result-limit", type=int, default=None,
                        help="largest result in bytes (default: the platform's; "
                             "the environment variable " + runtime.RESULT_LIMIT_ENV + " overrides it)")
    parser.add_argument("--request-limit", type=int, default=None,
                        help="largest request in bytes (default: the platform's; "
                             "the environment variable " + runtime.REQUEST_LIMIT_ENV + " overrides it)")
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    options = parse_args(argv)
    platform, reason = choose_platform(os.environ, options.platform)
    if platform not in PLATFORMS:
        runtime.log("error: %s=%r is not a platform; use one of %s" % (PLATFORM_ENV, platform, ", ".join(PLATFORMS)))
        sys.exit(2)
    runtime.log("version %s, serving %s (%s); loading the model from %s"
                % (__version__, platform, reason, os.path.abspath(options.app_dir)))
    # As PID 1 in a container the process has no default SIGTERM action: a platform that stops it
    # while the model is still loading (a scale-down, a new revision) must not wait for SIGKILL.
    # SIGINT (Ctrl-C, `docker stop` of an image whose stop signal is SIGINT) stops it as cleanly.
    # Each platform installs its own handlers once it serves.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        model, load_error = runtime.load_model(options.app_dir)
    except runtime.Terminated as stop:
        runtime.log("stopped by %s while the model was loading" % stop)
        sys.exit(0)
    if platform == "openwhisk":
        from . import openwhisk as chosen
    elif platform == "http":
        from . import http_service as chosen  # type: ignore
    else:
        from . import aws_lambda as chosen  # type: ignore
    try:
        chosen.run(model, load_error, options)
    except runtime.Terminated as stop:  # a platform whose module keeps these handlers (Lambda)
        runtime.log("stopped by %s" % stop)
        sys.exit(0)
