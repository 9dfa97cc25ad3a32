#!/usr/bin/env bash
# Runs the whole test suite, installing what it needs:
#   1. every test on the oldest MAX image era (Python 3.6, maxfw 1.1.0, Flask 1.0.2, Werkzeug 0.14.1);
#   2. every test on current releases (Python 3.11, maxfw 1.1.6, Flask 3), including the container
#      build tests, for which it installs and starts a docker engine and a loopback registry.
# Ends with one line 'total: N passed, N failed, N skipped' and exits non-zero if anything failed
# or if a run collected no tests.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPORTS="$ROOT/.venv/reports"
ERAS=(max-era current)
WITH_CONTAINERS=1
FAILED=0 # set by run_era when an era's pytest run fails

usage() {
  cat <<USAGE
Usage: scripts/test.sh [--era max-era|current] [--no-containers] [-- PYTEST_ARGS...]

  --era ERA          run one era only (default: both)
  --no-containers    skip the docker engine and the container build tests
  -h, --help         this help

Anything after -- goes to pytest (e.g. -- -k protocol -x).
USAGE
}

log() { printf '\n==> %s\n' "$*"; }

# Sums the JUnit reports into the closing line.
print_totals() {
  python3 - "$REPORTS"/*.xml <<'PY'
import sys
import xml.etree.ElementTree as ElementTree

passed = failed = skipped = 0
for path in sys.argv[1:]:
    root = ElementTree.parse(path).getroot()
    for suite in ([root] if root.tag == "testsuite" else root.findall("testsuite")):
        tests, skips = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        passed += tests - skips - bad
        failed += bad
        skipped += skips
print("total: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
PY
}

run_era() {
  local era=$1
  shift
  local venv
  venv=$("$ROOT/scripts/setup-venv.sh" "$era")
  local python_version
  python_version=$("$venv/bin/python" --version 2>&1)
  log "pytest on $era ($python_version)"
  # The container tests build and run images: once, on the current era, is enough.
  local containers=0
  [[ $era == current && $WITH_CONTAINERS -eq 1 ]] && containers=1
  local status=0
  (cd "$ROOT" && SMX_DOCKER=$containers SMX_BROWSER=1 "$venv/bin/python" -m pytest -p no:cacheprovider --junitxml="$REPORTS/$era.xml" "$@") || status=$?
  if [[ $status -eq 5 ]]; then
    printf 'error: pytest collected no tests on %s\n' "$era" >&2
  fi
  if [[ $status -ne 0 ]]; then FAILED=1; fi
}

main() {
  local pytest_args=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --era) ERAS=("${2:?--era needs max-era or current}"); shift 2 ;;
      --no-containers) WITH_CONTAINERS=0; shift ;;
      -h | --help) usage; exit 0 ;;
      --) shift; pytest_args=("$@"); break ;;
      *) printf 'error: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
    esac
  done
  rm -rf "$REPORTS"
  mkdir -p "$REPORTS"
  "$ROOT/scripts/install-browser.sh" # tests/test_swagger_ui.py; SMX_BROWSER=1 makes it fail rather than skip without it

  if [[ $WITH_CONTAINERS -eq 1 ]] && [[ " ${ERAS[*]} " == *" current "* ]]; then
    log "starting the docker engine and a loopback registry"
    local engine_env
    engine_env=$("$ROOT/scripts/container-engine.sh" start)
    eval "$engine_env"
    trap '"$ROOT/scripts/container-engine.sh" stop >/dev/null 2>&1 || true' EXIT
  fi

  local era
  for era in "${ERAS[@]}"; do
    run_era "$era" "${pytest_args[@]}"
  done
  echo
  print_totals
  return "$FAILED"
}

main "$@"
