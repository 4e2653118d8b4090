#!/usr/bin/env bash
# Builds what the page needs: the `var` CLI, the wasm package in www/pkg, and the default
# model in www/models/ (converted from the reference fixture until the trained model ships).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/var-web/target}"

cargo build --bin var
wasm-pack build --target web --out-dir www/pkg --release --no-typescript --no-pack
model=www/models/fixture-mini
if [ ! -f "$model/var.safetensors" ]; then
  "$CARGO_TARGET_DIR/debug/var" convert --vae tests/fixtures/vae_tiny.pth \
    --var tests/fixtures/var_mini.pth --patch-nums 1,2,3,4 --out "$model"
fi
