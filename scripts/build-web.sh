#!/usr/bin/env bash
# Builds what the page needs that is not committed: the wasm package in www/pkg (the default
# model, www/models/fashion-mnist/, is committed). Size-optimised (opt-level s) through the
# environment, since `[profile.release]` is the fastest native build (Cargo.toml says why).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/var-web/target}"

CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
  wasm-pack build --target web --out-dir www/pkg --release --no-typescript --no-pack
