#!/usr/bin/env bash
# The demo: converts the reference fixture model (seeded random weights, official checkpoint
# format) and generates images with it, printing where they are.
# The browser page (www/) is the next milestone; until it lands this is the demo.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/var-web/target}"
cargo build --release --bin var
var="$CARGO_TARGET_DIR/release/var"

model=target/demo/fixture-tiny
if [ ! -f "$model/config.json" ]; then
  mkdir -p target/demo
  "$var" convert --vae tests/fixtures/vae_tiny.pth --var tests/fixtures/var_tiny.pth --out "$model"
fi
"$var" verify --model "$model" --golden tests/fixtures/golden_tiny.safetensors --meta tests/fixtures/golden_tiny.json
"$var" generate --model "$model" --class 1 --seed 0 --count 2 --cfg 4 --top-k 900 --top-p 0.95 --out target/demo/images
echo "The in-browser page is not built yet: the images above are the demo for now."
