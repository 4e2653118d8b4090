#!/usr/bin/env bash
# Installs what the project needs on a fresh machine; safe to run again (each step checks first).
set -euo pipefail

if ! command -v cargo >/dev/null; then
  echo "error: cargo is missing; install Rust with rustup (https://rustup.rs) first." >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "${component}"
  fi
done
