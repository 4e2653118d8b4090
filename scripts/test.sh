#!/usr/bin/env bash
# Every test of the project: formatting, lints, unit, parity and CLI tests.
# Installs what it needs first (scripts/setup.sh is idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
# Builds are reused between runs on the same machine (CI starts from a fresh clone).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/var-web/target}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets
