#!/usr/bin/env bash
# Fetches AWS's Lambda Runtime Interface Emulator (RIE) and prints the path of its binary.
#
# The emulator ships inside the aws-sam-cli wheel on PyPI (samcli/local/rapid/aws-lambda-rie-*),
# so it comes through pip like any package: the pinned wheel is downloaded once, the one binary is
# extracted, and later runs only print the cached path.
set -Eeuo pipefail

readonly SAM_CLI_VERSION="1.170.0"
readonly CACHE_DIR="${SMX_CACHE_DIR:-/var/cache/smx}/lambda-rie/$SAM_CLI_VERSION"
readonly SAM_VENV="$CACHE_DIR/sam-cli"

usage() {
  cat <<EOF
Usage: $(basename "$0") [--arch x86_64|arm64] | --sam | --help

Downloads aws-sam-cli==$SAM_CLI_VERSION with pip (no dependencies), extracts
samcli/local/rapid/aws-lambda-rie-<arch> into $CACHE_DIR and prints its path on stdout.
Idempotent: a binary already extracted is reused. The architecture defaults to this machine's.
Run it as:  RIE CMD...   (it starts CMD with AWS_LAMBDA_RUNTIME_API set and takes invocations at
POST http://ADDRESS/2015-03-31/functions/function/invocations; flags
--runtime-interface-emulator-address HOST:PORT (default 0.0.0.0:8080) and
--runtime-api-address HOST:PORT (default 127.0.0.1:9001)).
--sam: instead, install aws-sam-cli==$SAM_CLI_VERSION with its dependencies into its own
virtualenv ($SAM_VENV, Python 3.9 or later) and print the path of its 'sam' command
(for 'sam local start-api'; kept apart so its pins never reach the test virtualenvs).
Environment: SMX_CACHE_DIR (default /var/cache/smx), PYTHON (default python3).
EOF
}

log() { printf '[lambda-rie] %s\n' "$*" >&2; }
die() { printf '[lambda-rie] error: %s\n' "$*" >&2; exit 1; }

machine_arch() {
  local machine
  machine=$(uname -m)
  case "$machine" in
    x86_64 | amd64) printf 'x86_64\n' ;;
    aarch64 | arm64) printf 'arm64\n' ;;
    *) die "no emulator build for $machine; pass --arch x86_64 or --arch arm64" ;;
  esac
}

# Extracts one member of the wheel to a temporary name, then moves it in place, so an
# interrupted run never leaves a partial binary behind.
extract_binary() {
  local wheel="$1" member="$2" target="$3" python="$4"
  "$python" - "$wheel" "$member" "$target.partial" <<'PY'
import shutil, sys, zipfile
wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(target, "wb") as out:
    shutil.copyfileobj(source, out)
PY
  chmod 0755 "$target.partial"
  mv -f "$target.partial" "$target"
}

# A virtualenv of its own for the whole SAM CLI; the marker file is written only once pip succeeded.
install_sam() {
  local python="$1" marker="$SAM_VENV/.installed-$SAM_CLI_VERSION"
  if [[ ! -e "$marker" ]]; then
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "aws-sam-cli needs Python 3.9 or later; set PYTHON"
    log "installing aws-sam-cli==$SAM_CLI_VERSION into $SAM_VENV (a few minutes the first time)"
    rm -rf "$SAM_VENV"
    "$python" -m venv "$SAM_VENV" >&2
    "$SAM_VENV/bin/python" -m pip install --quiet "aws-sam-cli==$SAM_CLI_VERSION" >&2 \
      || die "pip could not install aws-sam-cli==$SAM_CLI_VERSION"
    touch "$marker"
  fi
  printf '%s\n' "$SAM_VENV/bin/sam"
}

main() {
  local arch="" sam=0
  while (($#)); do
    case "$1" in
      -h | --help) usage; return 0 ;;
      --sam) sam=1; shift ;;
      --arch)
        [[ $# -ge 2 ]] || die "--arch needs a value"
        arch="$2"
        shift 2
        ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
  done
  local python="${PYTHON:-python3}"
  command -v "$python" >/dev/null || die "$python not found; set PYTHON to a Python with pip"
  if ((sam)); then
    install_sam "$python"
    return 0
  fi
  [[ -n "$arch" ]] || arch="$(machine_arch)"
  [[ "$arch" == "x86_64" || "$arch" == "arm64" ]] || die "--arch must be x86_64 or arm64, not $arch"

  local binary="$CACHE_DIR/aws-lambda-rie-$arch"
  if [[ -x "$binary" ]]; then
    printf '%s\n' "$binary"
    return 0
  fi
  mkdir -p "$CACHE_DIR"
  local wheel="$CACHE_DIR/aws_sam_cli-$SAM_CLI_VERSION-py3-none-any.whl"
  if [[ ! -s "$wheel" ]]; then
    log "downloading aws-sam-cli==$SAM_CLI_VERSION (the wheel carries the emulator)"
    "$python" -m pip download --quiet --no-deps --only-binary=:all: "aws-sam-cli==$SAM_CLI_VERSION" \
      -d "$CACHE_DIR" >&2 || die "pip could not download aws-sam-cli==$SAM_CLI_VERSION"
  fi
  [[ -s "$wheel" ]] || die "pip did not leave $wheel"
  extract_binary "$wheel" "samcli/local/rapid/aws-lambda-rie-$arch" "$binary" "$python"
  log "extracted $binary"
  printf '%s\n' "$binary"
}

main "$@"
