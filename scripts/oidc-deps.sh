#!/usr/bin/env bash
# The single sign-on tests run a real OpenID Connect provider (node's oidc-provider, pinned in
# tests/oidc/package-lock.json). Installs Node.js from Debian if it is missing (node-deps.sh), then the package.
set -euo pipefail
cd "$(dirname "$0")/../tests/oidc"
bash ../../scripts/node-deps.sh
if [[ ! -d node_modules/oidc-provider ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "==> installing oidc-provider (npm ci, tests/oidc)"
  npm ci --no-audit --no-fund --silent
fi
