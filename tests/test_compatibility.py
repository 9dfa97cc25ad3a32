"""The code that runs inside MAX images (and the suite that runs on their era) stays Python 3.6."""

import os
import subprocess
import sys

import pytest

from support import ROOT

PYTHON_36_CODE = ["openwhisk.py", "serverless_max", "local_endpoint.py", "tests", "examples"]

needs_newer_parser = pytest.mark.skipif(
    sys.version_info < (3, 8), reason="vermin parses with the running Python, which cannot read newer syntax "
                                      "to flag it; on this era every file is compiled instead")


def python_files():
    for entry in PYTHON_36_CODE:
        path = os.path.join(ROOT, entry)
        if os.path.isfile(path):
            yield path
        for directory, _, names in os.walk(path):
            for name in names:
                if name.endswith(".py"):
                    yield os.path.join(directory, name)


def vermin(*arguments):
    command = [os.path.join(os.path.dirname(sys.executable), "vermin"), "--no-tips", "--violations",
               "--target=3.6-"] + list(arguments)
    return subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)


def test_every_file_compiles_on_this_python():
    for path in python_files():
        with open(path, "rb") as source:
            compile(source.read(), path, "exec")


@needs_newer_parser
def test_code_needs_nothing_newer_than_python_3_6():
    result = vermin(*python_files())
    assert result.returncode == 0, result.stdout


@needs_newer_parser
def test_the_check_catches_newer_syntax(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text("if (n := 3) > 2:\n    print(n)\n")
    assert vermin(str(newer)).returncode != 0
