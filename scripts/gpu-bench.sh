#!/usr/bin/env bash
# The native wgpu benchmark, prepared for the first machine with a real GPU: the GPU's
# identity and limits, then the shipped model and VAR-d16 (random weights in the official
# layout), f32 and int8, timed per scale with their kernel dispatches, then each Linear
# layer alone (`--kernels`). Reports land in $OUT (default ./gpu-bench-out) as JSON beside
# the printed tables.
#
# Build here and carry the binary (the device machine has no toolchain and no network):
#   cargo build --release --bin var && VAR_BIN=target/release/var scripts/gpu-bench.sh
# Needs a Vulkan driver for the GPU (NVIDIA: the driver's Vulkan ICD and libvulkan.so.1).
# DEPTHS="16 20" measures more official depths (DEPTHS="" none); RUNS sets the timed images
# (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."

VAR=${VAR_BIN:-target/release/var}
OUT=${OUT:-gpu-bench-out}
RUNS=${RUNS:-3}
DEPTHS=${DEPTHS-16}
[ -x "$VAR" ] || { echo "error: no var binary at $VAR: build one (cargo build --release --bin var) or set VAR_BIN" >&2; exit 1; }
mkdir -p "$OUT"

echo "== the GPU"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.memory,power.limit --format=csv
else
  echo "(no nvidia-smi)"
fi
if command -v vulkaninfo > /dev/null; then
  vulkaninfo --summary 2> /dev/null | grep -E "deviceName|driverName|apiVersion" || true
fi
# Stops here when wgpu finds no adapter at all (lavapipe, Mesa's CPU Vulkan, would run, and
# its figures are CPU figures: check the adapter above).
if ! "$VAR" bench --backend wgpu --model www/models/fashion-mnist --dispatches > "$OUT/probe.txt" 2>&1; then
  echo "error: wgpu found no usable adapter here (is a Vulkan driver installed?):" >&2
  tail -5 "$OUT/probe.txt" >&2
  exit 1
fi

echo "== the shipped model (Fashion-MNIST, 32 px), f32 and int8"
"$VAR" bench --backend wgpu --model www/models/fashion-mnist --precision f32,int8 \
  --runs "$((RUNS + 2))" --json "$OUT/shipped.json" | tee "$OUT/shipped.txt"
for depth in $DEPTHS; do
  echo "== VAR-d$depth + the 256 px VQ-VAE, f32 and int8"
  "$VAR" bench --backend wgpu --depth "$depth" --precision f32,int8 --runs "$RUNS" \
    --json "$OUT/d$depth.json" | tee "$OUT/d$depth.txt"
  echo "== VAR-d$depth: each Linear layer alone, f32 against int8"
  "$VAR" bench --backend wgpu --depth "$depth" --kernels --json "$OUT/d$depth-kernels.json" \
    | tee "$OUT/d$depth-kernels.txt"
done
echo "reports in $OUT/"
