#!/usr/bin/env bash
# Writes dist/: the page as a static site anyone can host as-is (the page, the wasm package
# optimised by binaryen's wasm-opt, the shipped model, the model catalogue), with a `.br` and a
# `.gz` beside every compressible file for hosts that serve precompressed files. The previous
# dist/ is replaced only once the new one is complete.
#
#   ./scripts/build-site.sh [--no-opt]     # --no-opt: the wasm as wasm-pack wrote it
#
# wasm-opt comes from npm's `binaryen` package (scripts/site/package.json, installed once into
# scripts/site/node_modules): Debian's binaryen 108 is too old for this wasm and broke the page.
set -euo pipefail
cd "$(dirname "$0")/.."
opt=1
[ "${1:-}" = "--no-opt" ] && opt=0

./scripts/build-web.sh
out=dist.partial
rm -rf "$out"
mkdir -p "$out/pkg" "$out/models"
cp www/index.html www/bench.html www/style.css www/app.js www/worker.js www/convert.js \
  www/protocol.js www/editor.js www/bench.js "$out/"
cp www/pkg/var_web.js "$out/pkg/"
cp www/models/catalog.json "$out/models/"
cp -r www/models/fashion-mnist "$out/models/"

raw=$(stat -c %s www/pkg/var_web_bg.wasm)
if [ "$opt" = 1 ]; then
  [ -x scripts/site/node_modules/.bin/wasm-opt ] ||
    (cd scripts/site && npm install --no-audit --no-fund --no-package-lock >/dev/null)
  # -Oz for size; the features are the ones rustc's wasm32 target emits, and SIMD, which
  # .cargo/config.toml turns on.
  scripts/site/node_modules/.bin/wasm-opt -Oz \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-simd \
    www/pkg/var_web_bg.wasm -o "$out/pkg/var_web_bg.wasm"
else
  cp www/pkg/var_web_bg.wasm "$out/pkg/"
fi
node scripts/site/compress.mjs "$out"
rm -rf dist
mv "$out" dist
size() { stat -c %s "$1" | awk '{printf "%.1f MB", $1 / 1e6}'; }
echo "dist/: wasm $(awk -v b="$raw" 'BEGIN {printf "%.1f MB", b / 1e6}') as built, $(size dist/pkg/var_web_bg.wasm) in dist, $(size dist/pkg/var_web_bg.wasm.br) brotli, $(size dist/pkg/var_web_bg.wasm.gz) gzip"
echo "dist/ in all: $(du -sb dist | awk '{printf "%.1f MB", $1 / 1e6}') (with the .br and .gz copies)"
