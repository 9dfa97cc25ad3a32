"""The code that runs inside MAX images (and the suite that runs on their era) stays Python 3.6."""

import os
import subprocess
import sys

from support import ROOT

PYTHON_36_CODE = ["openwhisk.py", "local_endpoint.py", "tests", "examples"]


def vermin(*arguments):
    command = [os.path.join(os.path.dirname(sys.executable), "vermin"), "--no-tips", "--violations", "--target=3.6-"] + list(arguments)
    return subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)


def test_code_needs_nothing_newer_than_python_3_6():
    existing = [path for path in PYTHON_36_CODE if os.path.exists(os.path.join(ROOT, path))]
    result = vermin(*existing)
    assert result.returncode == 0, result.stdout


def test_the_check_catches_newer_syntax(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text("if (n := 3) > 2:\n    print(n)\n")
    assert vermin(str(newer)).returncode != 0
