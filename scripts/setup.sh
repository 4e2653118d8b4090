#!/usr/bin/env bash
# Installs what the project needs on a fresh machine; safe to run again (each step checks
# first and does nothing when the tool is already there).
#   ./scripts/setup.sh          native toolchain only (build, native tests, demo)
#   ./scripts/setup.sh --web    also the wasm toolchain, Chromium and the page-test packages
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "error: cargo is missing; install Rust with rustup (https://rustup.rs) first." >&2
  exit 1
fi
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^${component}" || rustup component add "${component}"
done
apt_install() {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
# Fashion-MNIST (training data and the data-loader tests).
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || apt_install dataset-fashion-mnist
# A TrueType font for the labels of the training runs' loss curves (and their test).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_install fonts-dejavu-core
# Vulkan on the CPU (the loader and Mesa's lavapipe) for the native wgpu tests and benches
# (tests/kernels.rs, var bench --backend wgpu); a machine without it fails them at device start.
[ -f /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || apt_install libvulkan1 mesa-vulkan-drivers
[ "${1:-}" = "--web" ] || exit 0

rustup target list --installed | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown

# wasm-bindgen-cli must match the wasm-bindgen version in Cargo.lock exactly.
wb_version=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " ${wb_version}$"; then
  cargo install wasm-bindgen-cli --version "${wb_version}"
fi
command -v wasm-pack >/dev/null || cargo install wasm-pack

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

[ -d tests/e2e/node_modules/playwright-core ] || (cd tests/e2e && npm ci --no-audit --no-fund)
