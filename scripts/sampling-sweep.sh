#!/usr/bin/env bash
# The sampling trade-off of a Fashion-MNIST model: `var eval` (100 samples per class, the
# project's classifier) at each CFG in CFGS (with the reference's ramp, cfg x si / (K - 1),
# which every run applies) at top-p 0.95, and without top-p at CFG 3 and 5; then one plot of
# class adherence (overall and worst class) against the Fréchet distance, with its floor and
# the tokenizer's ceiling: docs/fashion-mnist-tradeoff.png. Each run's eval.json is kept in
# runs/sweep/ and a finished run is not redone, so an interrupted sweep resumes.
#
#   scripts/sampling-sweep.sh [MODEL_DIR]        CFGS="1 2 3 4 5 6" to change the points
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/var-web/target}"
model=${1:-www/models/fashion-mnist}
cargo build --bin var
var="$CARGO_TARGET_DIR/debug/var"
out=runs/sweep
mkdir -p "$out"
runs=()
point() { # NAME, then var eval's sampling flags
  local name=$1
  shift
  if [ ! -s "$out/$name/eval.json" ]; then
    "$var" eval --model "$model" --classifier models/fashion-classifier --out "$out/$name" "$@" |
      grep -E "overall|Fréchet|spread|ceiling"
  fi
  runs+=("$out/$name/eval.json")
}
for cfg in ${CFGS:-1 1.5 2 3 4 5 6}; do
  point "cfg$cfg" --cfg "$cfg" --top-p 0.95
done
point cfg3-nop --cfg 3 --top-p 1
point cfg5-nop --cfg 5 --top-p 1
"$var" plot --evals "$(IFS=,; echo "${runs[*]}")" --out docs/fashion-mnist-tradeoff.png \
  --title "Fashion-MNIST: adherence against Fréchet distance, by CFG (p: top-p)"
