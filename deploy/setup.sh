#!/usr/bin/env bash
# Idempotent setup: a virtualenv in .venv with Sluice and its test tools.
# Usage: deploy/setup.sh [--test]   (--test also installs kcat and test clients)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extras="bench"
[ "${1:-}" = "--test" ] && extras="test,bench"
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)-$extras"
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[$extras]"
  touch "$stamp"
fi
if [ "${1:-}" = "--test" ]; then
  deploy/install-kcat.sh
fi
