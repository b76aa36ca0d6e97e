#!/usr/bin/env bash
# Set up (idempotent) and run one broker on the embedded default object store.
# Extra arguments go to `sluice serve` (e.g. --listen 0.0.0.0:9092 --override num.partitions=6).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
exec .venv/bin/sluice serve --listen 127.0.0.1:9092 --data-dir ./data "$@"
