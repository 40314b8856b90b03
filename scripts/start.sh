#!/usr/bin/env bash
# The quick start: install what is missing, initialize the data directory (.data, or INKAN_DATA_DIR)
# with a development PKI, serve the SAM on its embedded defaults (127.0.0.1:8443, or INKAN_LISTEN)
# and the gateway with the signer portal (127.0.0.1:8444, or INKAN_GATEWAY_LISTEN), and print both
# URLs. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export INKAN_DATA_DIR="${INKAN_DATA_DIR:-$PWD/.data}"
node server/bin/inkan.js init

out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
trap 'exit 130' INT TERM

# Waits for a process's "listening on URL" line (scripts depend on it) and prints the URL.
listening() {
  for _ in $(seq 1 600); do
    if line=$(grep -m1 '^listening on ' "$1" 2>/dev/null); then echo "${line#listening on }"; return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "inkan start: $3 stopped before it listened" >&2; return 1; }
    sleep 0.1
  done
  echo "inkan start: $3 did not listen within 60 s" >&2
  return 1
}

node server/bin/inkan.js serve > "$out/sam" &
sam_pid=$!
sam_url=$(listening "$out/sam" "$sam_pid" "the SAM")
node server/bin/inkan.js gateway --sam "$sam_url" > "$out/gateway" &
gateway_pid=$!
gateway_url=$(listening "$out/gateway" "$gateway_pid" "the gateway")
# With INKAN_GATEWAY_PUBLIC_URL set the gateway prints it right after (same synchronous write to a file): the portal's address.
public_url=$(grep -m1 '^public URL ' "$out/gateway" 2>/dev/null || true)
[ -n "$public_url" ] && gateway_url="${public_url#public URL }"

cat <<MSG
SAM (SAP over mutual TLS, for SCAs):  $sam_url
Signer portal (open in a browser):     $gateway_url/
The development certificate is issued by $INKAN_DATA_DIR/pki/ca.crt: trust it in the browser or
accept the warning once (README, "The signer portal"). Ctrl-C stops both.
MSG
wait -n "$sam_pid" "$gateway_pid"
