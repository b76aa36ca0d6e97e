#!/usr/bin/env bash
# Idempotent setup: a virtualenv in .venv with Sluice.
# Usage: deploy/setup.sh [--test]
#   without --test: only what `sluice serve` needs (no extras; deploy/serve.sh)
#   --test: also the test and bench extras (test clients, MinIO's boto3, the
#           benches' librdkafka, plots and profilers), kcat, kafkajs (npm, cached
#           in ~/.cache/sluice) and docker-compose (deploy/test.sh; the tests
#           validate deploy/compose.yaml with it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extras=""
[ "${1:-}" = "--test" ] && extras="test,bench"
hash=$(sha1sum pyproject.toml | cut -c1-12)
stamp=".venv/.installed-$hash-${extras:-serve}"
if [ -z "$extras" ] && [ -f ".venv/.installed-$hash-test,bench" ]; then
  stamp=".venv/.installed-$hash-test,bench"     # --test installed a superset of what serving needs
fi
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
if [ "${1:-}" = "--test" ]; then
  deploy/install-kcat.sh
  deploy/install-kafkajs.sh >/dev/null
  deploy/install-docker-compose.sh
fi
