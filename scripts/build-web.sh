#!/usr/bin/env bash
# Builds what the page needs: the `var` CLI and the wasm package in www/pkg. The default model
# (www/models/fashion-mnist/) is committed; the reference fixture is converted as well, so
# `?model=models/fixture-mini/` shows the parity-tested random-weight model.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/var-web/target}"

cargo build --bin var
wasm-pack build --target web --out-dir www/pkg --release --no-typescript --no-pack
model=www/models/fixture-mini
if [ ! -f "$model/config.json" ]; then
  "$CARGO_TARGET_DIR/debug/var" convert --vae tests/fixtures/vae_tiny.pth \
    --var tests/fixtures/var_mini.pth --patch-nums 1,2,3,4 --out "$model"
fi
