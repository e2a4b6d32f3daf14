#!/usr/bin/env bash
# What the tests need beyond Python packages: Debian's Chromium (Playwright drives it; it never
# downloads a browser of its own), OCR (ocrmypdf, tesseract) for the scanned-PDF test, and a real
# OpenID Connect provider (Node.js + oidc-provider) for the single sign-on tests.
set -euo pipefail
if [[ ! -x /usr/bin/chromium ]]; then
  echo "==> installing Debian's chromium for the browser tests"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
bash "$(dirname "$0")/ocr-deps.sh"
bash "$(dirname "$0")/oidc-deps.sh"
