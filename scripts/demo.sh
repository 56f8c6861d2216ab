#!/usr/bin/env bash
# Eddy's demo command (the one README.md shows): installs missing system packages, builds, and
# runs the end-to-end demo on the embedded devnet.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy/target}"
bash scripts/install-deps.sh
cargo run --quiet --bin eddy -- demo "$@"
