#!/usr/bin/env bash
# Runs Eddy's lab-based end-to-end tests against a real bitcoind instead of the devnet: builds
# bitcoind once from the Bitcoin Core sources libbitcoinkernel-sys ships (scripts/build-bitcoind.sh,
# cached in $HOME/.cache/eddy/bitcoind), then runs every test binary that uses the lab with
# BITCOIND_EXE set; the lab starts a regtest bitcoind per test, without -txindex. Extra
# arguments go to `cargo test` (e.g. --no-fail-fast). Called by .ci/run after
# scripts/test.sh.
#
# Not run here, devnet-only by nature: eddy-devnet's tests and crates/eddy-cli/tests/devnet_cli.rs
# test the devnet itself (and `eddy devnet`), as does crates/eddy-cli/tests/walkthrough.rs (the
# README's walk-through runs `eddy devnet` and its faucet); eddy-core, eddy-store, eddy-lnd-emu's
# lnd_vectors, and eddy-cli's htlc_cli use no chain. Steps inside the binaries below that need
# a devnet-only fake (a fee estimate; holding the chain's lock) print "skipping …" on bitcoind.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy/target}"
bash scripts/install-deps.sh
BITCOIND_EXE="$(bash scripts/build-bitcoind.sh | tail -n 1)"
export BITCOIND_EXE
echo "bitcoind: $BITCOIND_EXE ($("$BITCOIND_EXE" -version | head -n 1))"
unset BITCOIND_RPC_URL

start=$(date +%s)
# One invocation over the workspace (as scripts/test.sh builds it, so nothing is rebuilt).
cargo test --workspace --test lightning --test chain_source --test lightning_conformance \
  --test lnd_emulator --test loop_out --test demo --test loop_in --test loop_in_server \
  --test loop_out_failures --test batching --test seed_api --test http_api --test attacks_http \
  --test attacks_server --test attacks_client --test lnd_path --test daemons \
  --test api_schemathesis --test node_cli --test boltz "$@"
echo "e2e suite against bitcoind: $(( $(date +%s) - start )) s"
