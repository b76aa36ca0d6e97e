#!/usr/bin/env bash
# kafkajs (a pure-JavaScript Kafka client) from the npm registry, for the
# tests that drive Sluice with it (tests/e2e/test_admin_parity.py).
#
#   deploy/install-kafkajs.sh          -> prints the node_modules dir
#
# Cached outside the clone in ${SLUICE_CACHE:-$HOME/.cache/sluice}/kafkajs-<ver>/;
# idempotent: a complete install is reused without touching the network.
# Needs node (18+) and npm. KAFKAJS_VERSION overrides the pinned version.
set -euo pipefail

KAFKAJS_VERSION=${KAFKAJS_VERSION:-2.2.4}
CACHE=${SLUICE_CACHE:-$HOME/.cache/sluice}
HOME_DIR=$CACHE/kafkajs-$KAFKAJS_VERSION
MODULES=$HOME_DIR/node_modules
STAMP=$HOME_DIR/.complete

if [ -f "$STAMP" ] && [ -f "$MODULES/kafkajs/package.json" ]; then echo "$MODULES"; exit 0; fi

command -v node >/dev/null || { echo "install-kafkajs: node not found" >&2; exit 1; }
command -v npm >/dev/null || { echo "install-kafkajs: npm not found" >&2; exit 1; }

mkdir -p "$HOME_DIR"
work=$(mktemp -d "$HOME_DIR/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo '{"name": "sluice-kafkajs", "private": true}' > "$work/package.json"
echo "install-kafkajs: installing kafkajs $KAFKAJS_VERSION from the npm registry ..." >&2
if ! npm install --prefix "$work" --no-audit --no-fund --silent "kafkajs@$KAFKAJS_VERSION" >"$work/npm.log" 2>&1; then
  cat "$work/npm.log" >&2
  echo "install-kafkajs: npm failed" >&2
  exit 1
fi
rm -rf "$MODULES"
mv "$work/node_modules" "$MODULES"
touch "$STAMP"
echo "$MODULES"
