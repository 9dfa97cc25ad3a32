#!/usr/bin/env bash
# Installs headless Chromium and chromedriver from Debian's packages (chromium, chromium-driver)
# when either is missing: tests/test_swagger_ui.py drives them to open the example models'
# Swagger UI. Does nothing when both are there.
set -Eeuo pipefail

PACKAGES=(chromium chromium-driver)

usage() {
  cat <<USAGE
Usage: scripts/install-browser.sh

Installs ${PACKAGES[*]} with apt-get (as root) unless chromium and chromedriver are
already installed. Progress goes to stderr.

  -h, --help    this help
USAGE
}

log() { printf '[install-browser] %s\n' "$*" >&2; }
die() { printf '[install-browser] error: %s\n' "$*" >&2; exit 1; }

# Prints the commands of the two that are not on PATH; nothing when both are.
missing_commands() {
  local name
  for name in chromium chromedriver; do
    command -v "$name" >/dev/null || printf '%s ' "$name"
  done
}

install_packages() {
  [[ $EUID -eq 0 ]] || die "chromium or chromedriver is missing; run as root or: apt-get install ${PACKAGES[*]}"
  command -v apt-get >/dev/null || die "apt-get not found; install ${PACKAGES[*]} with this system's package manager"
  log "installing ${PACKAGES[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" >&2
  local missing
  missing=$(missing_commands)
  [[ -z $missing ]] || die "${PACKAGES[*]} installed, but ${missing% } still not on PATH"
}

main() {
  case "${1:-}" in
    "") ;;
    -h | --help) usage; exit 0 ;;
    *) printf '[install-browser] error: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
  esac
  local missing
  missing=$(missing_commands)
  if [[ -z $missing ]]; then
    log "chromium and chromedriver are installed"
    return 0
  fi
  install_packages
}

main "$@"
