#!/usr/bin/env bash
# docker-compose (Compose v1, Debian's package) from Debian's packages, if
# missing: the tests validate deploy/compose.yaml with `docker-compose config`,
# which reads the file only and needs no Docker engine. Without recommends, so
# apt does not pull in docker.io (the engine). Idempotent, like install-kcat.sh.
set -euo pipefail
if command -v docker-compose >/dev/null 2>&1; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
command -v docker-compose >/dev/null
