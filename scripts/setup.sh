#!/usr/bin/env bash
# Installs what Inkan needs on a Debian/Ubuntu machine with Node.js 20+, then builds it:
#   - SoftHSM2, the embedded crypto module, and poppler-utils + libnss3-tools for the PDF example's
#     test (apt-get when run as root; otherwise says what to install)
#   - PostgreSQL, for the PostgreSQL store's tests (each test file starts its own throwaway cluster)
#   - promtool (Debian's prometheus package), for the alert rules' check
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

# SoftHSM2 is required; poppler-utils (pdfsig) and libnss3-tools (certutil) are for the example
# SCA's PDF test, which says so and skips without them.
if ! command -v softhsm2-util >/dev/null 2>&1 || [ ! -e /usr/lib/softhsm/libsofthsm2.so ] || ! command -v pdfsig >/dev/null 2>&1 || ! command -v certutil >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing softhsm2, poppler-utils and libnss3-tools with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 poppler-utils libnss3-tools >/dev/null
  elif ! command -v softhsm2-util >/dev/null 2>&1 || [ ! -e /usr/lib/softhsm/libsofthsm2.so ]; then
    say "SoftHSM2 is missing. Install it, then run this again:  sudo apt-get install -y softhsm2"
    exit 1
  else
    say "pdfsig or certutil is missing: the PDF example's test will skip (sudo apt-get install -y poppler-utils libnss3-tools)"
  fi
fi

# Chromium (Debian's package) drives the signer portal's browser tests (gateway/); without it they skip and say so.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing chromium with apt-get (the signer portal's browser tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    say "Chromium is missing: the signer portal's browser tests will skip (sudo apt-get install -y chromium)"
  fi
fi

# PostgreSQL: the tests of the multi-node store start their own cluster with its initdb and pg_ctl
# (a system cluster the package may start is not used). Without it those tests skip and say so.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing postgresql with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    say "PostgreSQL is missing: the PostgreSQL store's tests will skip (sudo apt-get install -y postgresql)"
  fi
fi

# jq: the README's walk-through of `inkan admin`, which operator-walkthrough.test.ts runs as typed.
if ! command -v jq >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing jq with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
  else
    say "jq is missing: the operator walk-through test will skip (sudo apt-get install -y jq)"
  fi
fi

# promtool (Debian's prometheus package) checks the alert rules in deploy/prometheus; without it
# that test skips its promtool part and says so. The package's own server is not wanted here.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing prometheus (for promtool) with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
  else
    say "promtool is missing: the alert rules' promtool check will skip (sudo apt-get install -y prometheus)"
  fi
fi

# gRPC C-core (Debian's grpcio, with grpc_tools for Python stubs): the interop tests' client written
# from proto/ alone (transport/client-certificate.test.ts). Without it those tests skip and say so.
if ! /usr/bin/python3 -c "import grpc, grpc_tools.protoc" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing python3-grpcio and python3-grpc-tools with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-grpcio python3-grpc-tools >/dev/null
  else
    say "python3-grpcio is missing: the C-core interop tests will skip (sudo apt-get install -y python3-grpcio python3-grpc-tools)"
  fi
fi

lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.inkan-lock.sha256 ] || [ "$(cat node_modules/.inkan-lock.sha256)" != "$lock_hash" ]; then
  say "installing npm dependencies (native modules build from source: a few minutes on 2 cores)"
  npm ci --no-audit --no-fund
  echo "$lock_hash" > node_modules/.inkan-lock.sha256
fi

npm run --silent build
