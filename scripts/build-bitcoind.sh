#!/usr/bin/env bash
# Builds a real `bitcoind` (daemon only: no wallet, GUI, CLI, tests, bench or fuzz binary) from
# the Bitcoin Core sources the `libbitcoinkernel-sys` crate ships, so the e2e suite can run
# against bitcoind as well as against Eddy's devnet (scripts/test-bitcoind.sh). Installs it as
# $HOME/.cache/eddy/bitcoind/<crate version>/bitcoind, does nothing when that exists, and prints
# the path on its last line. Installs missing system packages (cmake, Boost headers, libevent,
# pkg-config) first. About 10 minutes on 2 cores; the build tree is deleted afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v python3 >/dev/null 2>&1 || need+=(python3)
[ -e /usr/include/boost/version.hpp ] || need+=(libboost-dev)
[ -e /usr/include/event2/event.h ] || need+=(libevent-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Where cargo unpacked the crate (fetch it first on a fresh machine).
cargo fetch --quiet
read -r version manifest < <(cargo metadata --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "libbitcoinkernel-sys":
        print(p["version"], p["manifest_path"])
        break
')
if [ -z "${version:-}" ]; then
  echo "libbitcoinkernel-sys is not a dependency of this workspace" >&2
  exit 1
fi
src="$(dirname "$manifest")/bitcoin"
dest="$HOME/.cache/eddy/bitcoind/$version"
if [ -x "$dest/bitcoind" ]; then
  echo "$dest/bitcoind"
  exit 0
fi

build="$HOME/.cache/eddy/bitcoind/build-$version"
rm -rf "$build"
mkdir -p "$(dirname "$build")"
trap 'rm -rf "$build"' EXIT
start=$(date +%s)
echo "building bitcoind from $src (libbitcoinkernel-sys $version) in $build" >&2
# The crate's sources lack the embedded ASMap file: configure without it.
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_DAEMON=ON -DBUILD_BITCOIN_BIN=OFF -DBUILD_CLI=OFF -DBUILD_TX=OFF -DBUILD_UTIL=OFF \
  -DBUILD_GUI=OFF -DBUILD_TESTS=OFF -DBUILD_BENCH=OFF -DBUILD_FUZZ_BINARY=OFF \
  -DBUILD_KERNEL_LIB=OFF -DBUILD_UTIL_CHAINSTATE=OFF -DENABLE_WALLET=OFF -DBUILD_WALLET_TOOL=OFF \
  -DENABLE_IPC=OFF -DENABLE_EXTERNAL_SIGNER=OFF -DWITH_ZMQ=OFF -DWITH_USDT=OFF \
  -DWITH_EMBEDDED_ASMAP=OFF -DWITH_CCACHE=OFF -DINSTALL_MAN=OFF >"$build.log" 2>&1 \
  || { tail -40 "$build.log" >&2; exit 1; }
cmake --build "$build" --target bitcoind -j"${BITCOIND_BUILD_JOBS:-2}" >>"$build.log" 2>&1 \
  || { tail -40 "$build.log" >&2; exit 1; }
mkdir -p "$dest"
install -s -m 0755 "$build/bin/bitcoind" "$dest/bitcoind.tmp"
mv "$dest/bitcoind.tmp" "$dest/bitcoind"
rm -f "$build.log"
echo "built in $(( $(date +%s) - start )) s: $("$dest/bitcoind" -version | head -1)" >&2
echo "$dest/bitcoind"
