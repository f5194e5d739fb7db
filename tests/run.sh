#!/usr/bin/env bash
# The test command (README): every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is needed (https://rustup.rs)" >&2
  exit 1
fi

cargo test --workspace --all-targets --locked "$@"
