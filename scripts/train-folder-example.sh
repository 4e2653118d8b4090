#!/usr/bin/env bash
# The README's "Train on your own images" example, end to end and resumable: four
# Fashion-MNIST classes written out as an image folder, a VQ-VAE at their native 28 px with a
# five-scale schedule, the transformer on its tokens, the loss curves, a sample grid and a
# model directory the page loads (www/models/own-28px). Run it again after an interruption:
# each trainer resumes from its last checkpoint.
#
#   ./scripts/train-folder-example.sh [VQVAE_STEPS] [VAR_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
VQVAE_STEPS=${1:-1200}
VAR_STEPS=${2:-1500}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/var-web/target}
cargo build --bin var
VAR="$CARGO_TARGET_DIR/debug/var"
DATA=runs/own-images
mkdir -p runs

# 1. The folder: runs/own-images/{Bag,Sneaker,T-shirt-top,Trouser}/*.png, 2,000 each.
[ -d "$DATA" ] || "$VAR" export-fashion-mnist --out "$DATA" --per-class 2000 --classes 0,1,7,8

# 2. The VQ-VAE at 28 px: scales 1,2,3,5,7 (the last is the latent side; 28 / 7 = 4 gives a
#    three-level VQ-VAE), the images used as they are (--fit crop on a square of their size).
resume() { [ -d "$1/checkpoint" ] && echo --resume || true; }
"$VAR" train vqvae --data "$DATA" --out runs/own-vqvae $(resume runs/own-vqvae) \
    $( [ -d runs/own-vqvae/checkpoint ] || echo --image-size 28 --patch-nums 1,2,3,5,7 ) \
    --steps "$VQVAE_STEPS" --batch 32 --lr 5e-4 --warmup 200 --checkpoint-secs 120

# 3. The transformer on its token maps; the folder's names become its classes.
"$VAR" train var --data "$DATA" --out runs/own-var $(resume runs/own-var) \
    $( [ -d runs/own-var/checkpoint ] || echo --vqvae runs/own-vqvae/checkpoint ) \
    --steps "$VAR_STEPS" --batch 32 --warmup 100 --checkpoint-secs 120

# 4. What the README shows, and the model the page loads.
"$VAR" plot --log runs/own-vqvae/log.csv --columns loss --out runs/own-vqvae/loss.png \
    --title "VQ-VAE on a folder: loss per step"
"$VAR" package --run runs/own-var --out www/models/own-28px --cfg 3
"$VAR" generate --model www/models/own-28px --class 0 --count 1 --out runs/own-samples >/dev/null
echo "model: www/models/own-28px (open http://127.0.0.1:8080/?model=models/own-28px/ after ./scripts/demo.sh)"
