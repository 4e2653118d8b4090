#!/usr/bin/env bash
# The demo: installs what is missing, builds the page (the wasm package) and the small page
# server (crates/var-serve, not the whole CLI), and serves it on 127.0.0.1 (it prints the URL;
# open it in a browser with WebGPU, or any browser for the CPU fallback).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --web
./scripts/build-web.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/var-web/target}"
cargo build -p var-serve
exec "$CARGO_TARGET_DIR/debug/var-serve" --port "${PORT:-8080}"
