#!/usr/bin/env bash
# Every test of the project: formatting, lints (native and wasm), unit/parity/CLI tests,
# the browser tests (wasm-bindgen-test on WebGPU and CPU in headless Chromium) and the
# end-to-end page tests. Installs what it needs first (scripts/setup.sh is idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh --web
# Builds are reused between runs on the same machine (CI starts from a fresh clone).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/var-web/target}"
# The Vulkan loader (lavapipe, for the wgpu tests) wants a runtime directory; CI has none.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/var-web-runtime-$(id -u)"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings (native, wasm32)"
cargo clippy --all-targets -- -D warnings
cargo clippy --target wasm32-unknown-unknown --lib --bins --tests -- -D warnings
echo "== cargo test"
cargo test --all-targets
echo "== build the page"
./scripts/build-web.sh
echo "== wasm-pack test --headless --chrome (WebGPU on SwiftShader, and the CPU fallback)"
WASM_BINDGEN_TEST_TIMEOUT=1200 CHROMEDRIVER=/usr/bin/chromedriver \
  wasm-pack test --headless --chrome --release -- --test web
echo "== page tests (playwright-core, system Chromium)"
VAR_BIN="$CARGO_TARGET_DIR/debug/var" node --test --test-concurrency=1 tests/e2e/page.test.mjs
