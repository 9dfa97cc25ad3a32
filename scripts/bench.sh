#!/usr/bin/env bash
# Measures what the shim adds to a model (bench/run.py): latency against the model's own server
# and against the floor of parsing the /run JSON, peak memory, cold start and concurrency, on the
# echo test model. Prints the table and writes it to bench/results.md. Uses the current-era
# virtualenv (.venv/current, created on first use). Takes about a minute on two cores.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<USAGE
Usage: scripts/bench.sh [--quick] [bench/run.py options...]

  --quick               a few runs of everything, to check the benchmark works (about 10 s);
                        the table goes to bench/results/quick.md, not bench/results.md
  --shim PATH           measure another copy of openwhisk.py (e.g. a change under test)
  --output FILE         where to write the table
  --cold-starts N       cold start repetitions (default 11)
  --model-load-seconds S  simulated model load time for the cold start (default 0)
  -h, --help            this help

Exit status: 0 when every target is met, 1 when one is missed, 2 when a server could not be started.
USAGE
}

main() {
  local argument
  for argument in "$@"; do
    case "$argument" in
      -h | --help) usage; exit 0 ;;
    esac
  done
  local venv
  venv=$("$ROOT/scripts/setup-venv.sh" current)
  exec "$venv/bin/python" "$ROOT/bench/run.py" "$@"
}

main "$@"
