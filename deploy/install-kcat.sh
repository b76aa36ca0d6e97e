#!/usr/bin/env bash
# kcat (librdkafka's command-line client) from Debian's packages, if missing.
set -euo pipefail
if command -v kcat >/dev/null 2>&1; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq kcat >/dev/null
command -v kcat >/dev/null
