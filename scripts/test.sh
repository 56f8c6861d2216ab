#!/usr/bin/env bash
# Eddy's test command (the one README.md shows): installs missing system packages, then runs
# every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy/target}"
bash scripts/install-deps.sh
cargo test --workspace --all-targets "$@"
