#!/usr/bin/env bash
# OCR for scanned PDFs: Debian's ocrmypdf with tesseract (English). Optional for the app: without
# it, scans get the status "needs OCR". Installs only where apt-get can run (root or sudo).
set -uo pipefail
command -v ocrmypdf >/dev/null && exit 0
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
if ! command -v apt-get >/dev/null || { [[ -n $SUDO ]] && ! sudo -n true 2>/dev/null; }; then
  echo "==> OCR not installed (needs apt-get as root): scanned PDFs will be marked 'needs OCR'"
  exit 0
fi
echo "==> installing OCR (ocrmypdf, tesseract-ocr) for scanned PDFs"
$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  ocrmypdf tesseract-ocr tesseract-ocr-eng >/dev/null \
  || echo "==> OCR could not be installed: scanned PDFs will be marked 'needs OCR'"
