#!/usr/bin/env bash
# Measures what the runtime adds to a model (bench/run.py): latency against the model's own server
# and against the floor of parsing the /run JSON, peak memory, cold start and concurrency, on the
# echo test model, optionally beside the 2019 shim (--baseline). Prints the table and writes it to
# bench/results.md (--quick: bench/results/quick.md). Uses the current-era virtualenv
# (.venv/current, created on first use). Takes a few minutes on two cores. --harness clients
# measures the /run path as independent clients do (keep-alive requests.Session, http.client).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<USAGE
Usage: scripts/bench.sh [--quick] [bench/run.py options...]

  --quick               a few runs of everything, to check the benchmark works (about 30 s);
                        the table goes to bench/results/quick.md, not bench/results.md, and
                        only a wrong answer fails it (too few runs to judge latency targets)
  --harness NAME        invoker: the invoker's way (compact /run JSON, a connection per request)
                        on every platform path, plus memory, cold start and concurrency;
                        clients: the /run path as independent clients measure it (a Pillow
                        model over a keep-alive requests.Session, the echo model over
                        http.client); all (default): both, into bench/results.md; one alone
                        goes to bench/results/NAME.md
  --shim PATH           measure another copy of openwhisk.py (e.g. a change under test)
  --baseline PATH       measure another /run shim beside it, e.g. the 2019 shim
                        (../shared/reference/seed_openwhisk.py; its port comes in SEED_SHIM_PORT)
  --output FILE         where to write the table
  --cold-starts N       cold start repetitions (default 11)
  --model-load-seconds S  simulated model load time for the cold start (default 0)
  -h, --help            this help

Exit status: 0 when every target is met, 1 when one is missed (with --quick: when an answer was
wrong), 2 when a server could not be started.
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
