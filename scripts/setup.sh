#!/usr/bin/env bash
# Installs what Inkan needs on a Debian/Ubuntu machine with Node.js 20+, then builds it:
#   - SoftHSM2, the embedded crypto module (apt-get when run as root; otherwise says what to install)
#   - the npm dependencies, with their native builds (pkcs11js, better-sqlite3), when the lockfile changed
#   - the TypeScript build (tsc -b), which also type-checks the product code
# Idempotent: a second run does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'inkan setup: %s\n' "$*" >&2; }

major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
  say "Node.js 20 or newer is needed (found: $(node --version 2>/dev/null || echo none))."
  exit 1
fi

if ! command -v softhsm2-util >/dev/null 2>&1 || [ ! -e /usr/lib/softhsm/libsofthsm2.so ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing softhsm2 with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 poppler-utils libnss3-tools >/dev/null
  else
    say "SoftHSM2 is missing. Install it, then run this again:  sudo apt-get install -y softhsm2"
    exit 1
  fi
fi

lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.inkan-lock.sha256 ] || [ "$(cat node_modules/.inkan-lock.sha256)" != "$lock_hash" ]; then
  say "installing npm dependencies (native modules build from source: a few minutes on 2 cores)"
  npm ci --no-audit --no-fund
  echo "$lock_hash" > node_modules/.inkan-lock.sha256
fi

npm run --silent build
