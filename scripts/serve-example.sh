#!/usr/bin/env bash
# Serves a MAX model behind a local OpenWhisk Web Action endpoint on port 3233, without Docker.
# With no arguments: the example digit classifier from examples/. Any arguments go to
# local_endpoint.py (see scripts/serve-example.sh --help). Installs what it needs into .venv/current.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$("$ROOT/scripts/setup-venv.sh" current)
exec "$venv/bin/python" "$ROOT/local_endpoint.py" "$@"
