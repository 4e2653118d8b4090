#!/usr/bin/env bash
# Re-makes the README's before/after examples with `var inpaint` and the shipped model.
# Sources: `var generate --class 7 --seed 1` (sneaker.png) and `--class 0 --seed 2`
# (tshirt.png), kept as files so the examples do not move when the model does. Each sheet is
# source | mask (red = generated) | source through the VQ-VAE | result.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/var-web/target}"
cargo build --bin var
var="$CARGO_TARGET_DIR/debug/var"
d=docs/inpaint
"$var" inpaint --image $d/sneaker.png --mask $d/mask-top.png --class 9 --seed 1 \
  --out $d/edit-result.png --sheet $d/edit.png
"$var" inpaint --image $d/tshirt.png --mask $d/mask-centre.png --seed 1 \
  --out $d/inpaint-result.png --sheet $d/inpaint.png
"$var" inpaint --image $d/tshirt.png --mask $d/mask-centre.png --invert --seed 1 \
  --out $d/outpaint-result.png --sheet $d/outpaint.png
