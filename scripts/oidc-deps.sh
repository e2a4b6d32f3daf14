#!/usr/bin/env bash
# The single sign-on tests run a real OpenID Connect provider (node's oidc-provider, pinned in
# tests/oidc/package-lock.json). Installs Node.js from Debian if it is missing, then the package.
set -euo pipefail
cd "$(dirname "$0")/../tests/oidc"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "==> installing Node.js (Debian) for the single sign-on tests"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
if [[ ! -d node_modules/oidc-provider ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "==> installing oidc-provider (npm ci, tests/oidc)"
  npm ci --no-audit --no-fund --silent
fi
