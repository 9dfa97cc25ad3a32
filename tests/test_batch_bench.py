"""The batch client's benchmark (bench/batch.py) in its --quick mode: it starts its two endpoints
(the no-op server, the local endpoint throttling a 50 ms model), runs the client and the naive
runners against them, and writes its tables and the picture of the client's throttled run. Its
exit status says the client answered every input exactly once. The numbers are not judged here:
the benchmark's own full run does that, on a quiet machine.
"""

import os
import subprocess
import sys
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench", "batch.py")

pytest.importorskip("aiohttp", reason="the batch client (client/, Python 3.9+) is not installed here")
pytest.importorskip("requests", reason="the naive thread-pool runner needs requests")


def test_quick_benchmark_runs_and_writes_its_tables(tmp_path: Any) -> None:
    output = str(tmp_path / "batch-quick.md")
    finished = subprocess.run([sys.executable, BENCH, "--quick", "--output", output], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    with open(output, encoding="utf-8") as stream:
        tables = stream.read()
    assert tables.strip() == finished.stdout.strip()
    for heading in ("## (1) The client's own ceiling", "## (2) A throttled endpoint", "## Targets"):
        assert heading in tables
    for runner in ("| client -j 64 |", "| floor: bare aiohttp loop", "| xargs -P 16 curl |",
                   "| thread pool of 16 requests |", "| told the limit: 4 threads"):
        assert runner in tables
    assert "| the client answers every input exactly once | yes | PASS |" in tables
    assert os.path.getsize(str(tmp_path / "batch-quick-throttled-run.png")) > 10000
