#!/usr/bin/env bash
# The quick start: install what is missing, initialize the data directory (.data, or INKAN_DATA_DIR)
# with a development PKI, and serve the SAM on its embedded defaults (127.0.0.1:8443, or INKAN_LISTEN).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export INKAN_DATA_DIR="${INKAN_DATA_DIR:-$PWD/.data}"
node server/bin/inkan.js init
exec node server/bin/inkan.js serve
