#!/usr/bin/env bash
# Set up (idempotent: venv, test clients, kcat) and run the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh --test
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
