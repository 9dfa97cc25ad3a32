#!/usr/bin/env bash
# Creates (or refreshes) the virtualenv of one dependency era under .venv/ and prints its path.
#   max-era   Python 3.6 with the oldest MAX image pins (maxfw 1.1.0, Flask 1.0.2, Werkzeug 0.14.1)
#   current   Python 3.11 with today's maxfw 1.1.6 and the Flask/Werkzeug it resolves to
# Both get the example models' and the test suite's requirements; current also gets the batch
# client (client/, Python 3.9+) installed editable with its test extras. A venv is rebuilt only
# when its requirement files change.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<USAGE
Usage: scripts/setup-venv.sh max-era|current
Creates or refreshes .venv/<era> and prints its path on stdout (progress goes to stderr).
USAGE
}

log() { printf '==> %s\n' "$*" >&2; }

# The interpreter for a Python version: pyenv's build, else one on PATH.
find_python() {
  local version=$1 candidate
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python "$(command -v "python$version" || true)"; do
    if [[ -x "$candidate" ]]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  log "error: Python $version not found; install it (e.g. 'pyenv install $version') and rerun"
  return 1
}

main() {
  local era=${1:-} version pins
  case "$era" in
    -h | --help) usage; exit 0 ;;
    max-era) version=3.6 pins=requirements/max-era.txt ;;
    current) version=3.11 pins=requirements/current.txt ;;
    *) usage >&2; exit 2 ;;
  esac
  local venv="$ROOT/.venv/$era"
  local files=("$pins" requirements/examples.txt requirements/test.txt)
  local client=()
  if [[ $era == current ]]; then
    client=(client/pyproject.toml)
  fi
  local stamp
  stamp=$(cd "$ROOT" && cat "${files[@]}" "${client[@]}" | sha256sum | cut -d' ' -f1)
  local installed_stamp=""
  if [[ -f "$venv/.requirements-stamp" ]]; then
    installed_stamp="$(cat "$venv/.requirements-stamp")"
  fi
  if [[ "$installed_stamp" == "$stamp" ]]; then
    printf '%s\n' "$venv"
    return 0
  fi
  local python
  python=$(find_python "$version")
  log "creating $venv with $python"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  if [[ $era == max-era ]]; then
    # The newest pip for Python 3.6; the one venv ships cannot resolve these pins.
    "$venv/bin/python" -m pip install -qq "pip==21.3.1" >&2
  fi
  local args=()
  local file
  for file in "${files[@]}"; do args+=(-r "$ROOT/$file"); done
  log "installing ${files[*]} into $era"
  "$venv/bin/python" -m pip install -qq --disable-pip-version-check "${args[@]}" >&2
  if ((${#client[@]})); then
    log "installing the batch client (client/) into $era"
    "$venv/bin/python" -m pip install -qq --disable-pip-version-check -e "$ROOT/client[test]" >&2
  fi
  printf '%s\n' "$stamp" >"$venv/.requirements-stamp"
  printf '%s\n' "$venv"
}

main "$@"
