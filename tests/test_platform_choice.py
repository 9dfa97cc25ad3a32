"""Which platform the runtime serves, from the environment alone (serverless_max/main.py)."""

import subprocess
import sys

import pytest

from serverless_max.main import choose_platform
from support import ECHO_APP, SHIM


@pytest.mark.parametrize("environ, forced, platform", [
    ({}, None, "openwhisk"),
    ({"__OW_API_HOST": "https://controller"}, None, "openwhisk"),
    ({"PORT": "8080", "__OW_API_HOST": "https://controller"}, None, "openwhisk"),  # the invoker's containers
    ({"PORT": "8080"}, None, "http"),
    ({"K_SERVICE": "emotions", "PORT": "8080"}, None, "http"),
    ({"K_SERVICE": "emotions", "__OW_API_HOST": "x"}, None, "http"),
    ({"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "PORT": "8080"}, None, "lambda"),
    ({"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "SERVERLESS_MAX_PLATFORM": "http"}, None, "http"),
    ({"SERVERLESS_MAX_PLATFORM": "http"}, "openwhisk", "openwhisk"),  # the flag wins
])
def test_the_platform_follows_the_environment(environ, forced, platform):
    chosen, reason = choose_platform(environ, forced)
    assert chosen == platform and reason


def test_an_unknown_forced_platform_is_refused_in_one_line():
    result = subprocess.run([sys.executable, SHIM], cwd=ECHO_APP, env={"SERVERLESS_MAX_PLATFORM": "heroku"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "heroku" in result.stderr and "openwhisk, http, lambda" in result.stderr
