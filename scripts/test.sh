#!/usr/bin/env bash
# Every test of the project: formatting, lints (native and wasm), unit/parity/CLI tests,
# the browser tests (wasm-bindgen-test on WebGPU and CPU in headless Chromium) and the
# end-to-end page tests. Installs what it needs first (scripts/setup.sh is idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh --web
# Builds are reused between runs on the same machine (CI starts from a fresh clone).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/var-web/target}"
# Cargo never prunes that cache: each dependency or profile change leaves a full set of stale
# artifacts behind, and a full disk fails a link half-way through. A cold build needs about
# MIN_FREE_GB; below that the cache is started afresh (costs one cold build, loses nothing).
MIN_FREE_GB=${MIN_FREE_GB:-20}
mkdir -p "$CARGO_TARGET_DIR"
free_gb=$(( $(df -Pk "$CARGO_TARGET_DIR" | awk 'NR == 2 {print $4}') / 1048576 ))
if [ "$free_gb" -lt "$MIN_FREE_GB" ]; then
  echo "== only ${free_gb} GB free on the disk of $CARGO_TARGET_DIR (need ${MIN_FREE_GB}): clearing that build cache"
  rm -rf "${CARGO_TARGET_DIR:?}/debug" "${CARGO_TARGET_DIR:?}/release" "${CARGO_TARGET_DIR:?}/wasm32-unknown-unknown"
  free_gb=$(( $(df -Pk "$CARGO_TARGET_DIR" | awk 'NR == 2 {print $4}') / 1048576 ))
  if [ "$free_gb" -lt "$MIN_FREE_GB" ]; then
    echo "error: only ${free_gb} GB free on the disk of $CARGO_TARGET_DIR even with the build cache cleared; the tests need ${MIN_FREE_GB} GB." >&2
    exit 1
  fi
fi
# The Vulkan loader (lavapipe, for the wgpu tests) wants a runtime directory; CI has none.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/var-web-runtime-$(id -u)"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== layers: no module imports from a module above it (ARCHITECTURE.md, Layer map)"
python3 scripts/check-layers.py src
echo "== the model catalogue matches its data (scripts/make-catalog.py)"
python3 scripts/make-catalog.py --check
echo "== cargo clippy -D warnings (native, wasm32)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --target wasm32-unknown-unknown --lib --bins --tests -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets
echo "== build the page"
./scripts/build-web.sh
# The page tests also load the reference's random-weight fixture (?model=models/fixture-mini/).
# `cargo test` has built the CLI (the integration tests run it). A separate `cargo build` would
# resolve the dependencies' features without the dev-dependencies and rebuild half of them
# (17 minutes on a cold 2-core machine), so it runs only if the binary is missing.
VAR="$CARGO_TARGET_DIR/debug/var"
[ -x "$VAR" ] || cargo build --bin var
model=www/models/fixture-mini
if [ ! -f "$model/config.json" ]; then
  "$VAR" convert --vae tests/fixtures/vae_tiny.pth \
    --var tests/fixtures/var_mini.pth --patch-nums 1,2,3,4 --out "$model"
fi
echo "== wasm-pack test --headless --chrome (WebGPU on SwiftShader, and the CPU fallback)"
CARGO_PROFILE_RELEASE_OPT_LEVEL=s WASM_BINDGEN_TEST_TIMEOUT=1200 CHROMEDRIVER=/usr/bin/chromedriver \
  wasm-pack test --headless --chrome --release -- --test web
echo "== page tests (playwright-core, system Chromium)"
VAR_BIN="$VAR" node --test --test-concurrency=1 tests/e2e/page.test.mjs tests/e2e/official.test.mjs
