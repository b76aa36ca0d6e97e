#!/usr/bin/env bash
# Set up (idempotent: venv, test clients, kcat) and run the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh --test
echo "ruff check:"; .venv/bin/ruff check .
echo "mypy:"; .venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
