#!/usr/bin/env bash
# Real-browser end-to-end test of the web client (issue 13): two users in headless Chromium
# (Debian's `chromium` package, driven by npm `playwright-core`) chat and call each other
# through a freshly started `vchat-signal --dev`. Prints one line per case and exits non-zero
# on any failure. Screenshots: target/browser-artifacts/.
#
#   bash tests/browser/run.sh                 # every case
#   bash tests/browser/run.sh --only relay    # cases whose name contains "relay"
#
# Installs nothing but `npm ci` (when node_modules is missing). Needs /usr/bin/chromium
# (`apt-get install chromium chromium-driver`; .ci/run installs it). Builds the server when the
# binary is missing or older than the sources or the web files it embeds; VCHAT_BIN=<path> uses
# another binary as is.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -x /usr/bin/chromium ]; then
  echo "tests/browser: /usr/bin/chromium is missing (apt-get install chromium chromium-driver)" >&2
  exit 2
fi
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund

bin="${VCHAT_BIN:-target/release/vchat-signal}"
if [ -z "${VCHAT_BIN:-}" ]; then
  if [ ! -x "$bin" ] || [ -n "$(find src web Cargo.toml Cargo.lock migrations -newer "$bin" -print -quit 2>/dev/null)" ]; then
    cargo build --release --bin vchat-signal
  fi
fi

exec node tests/browser/e2e.mjs --bin "$bin" "$@"
