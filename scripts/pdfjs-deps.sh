#!/usr/bin/env bash
# PDF.js (npm's pdfjs-dist, pinned in scripts/pdfjs/package-lock.json) into static/vendor/pdfjs,
# so the cited-page view renders PDF pages from the app itself: no CDN, works offline.
set -euo pipefail
cd "$(dirname "$0")/.."
target=static/vendor/pdfjs
stamp="$target/.installed-$(sha256sum scripts/pdfjs/package-lock.json | cut -c1-16)"
[[ -f $stamp ]] && exit 0
bash scripts/node-deps.sh
echo "==> PDF.js (npm ci, scripts/pdfjs) into $target"
(cd scripts/pdfjs && npm ci --omit=optional --no-audit --no-fund --silent)
dist=scripts/pdfjs/node_modules/pdfjs-dist
rm -rf "$target" && mkdir -p "$target"
cp "$dist/build/pdf.min.mjs" "$dist/build/pdf.worker.min.mjs" "$dist/web/pdf_viewer.css" "$dist/LICENSE" "$target/"
cp -r "$dist/standard_fonts" "$dist/cmaps" "$target/"
touch "$stamp"
