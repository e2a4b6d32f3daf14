#!/usr/bin/env bash
# Node.js and npm (Debian's) when they are missing: npm installs PDF.js for the cited-page view
# and, for the tests, an OpenID Connect provider. Idempotent.
set -euo pipefail
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "==> installing Node.js and npm (Debian)"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
