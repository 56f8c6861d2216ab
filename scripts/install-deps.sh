#!/usr/bin/env bash
# Installs the system packages Eddy's build and tests need, only when missing:
# cmake + Boost headers (libbitcoinkernel), protoc (LND protos), PostgreSQL (store tests),
# schemathesis (PyPI, pinned) in a venv under $HOME/.cache/eddy/venv (the API fuzz test,
# crates/eddy-cli/tests/api_schemathesis.rs), and boltz-core (npm, pinned) for the interop tests.
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
[ -e /usr/include/boost/version.hpp ] || need+=(libboost-dev)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
SCHEMATHESIS_VERSION=4.32.5
venv="$HOME/.cache/eddy/venv"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $SCHEMATHESIS_VERSION"; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  if ! python3 -m venv --help >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi
# Boltz's own boltz-core (npm, pinned by tests/boltz-core/package-lock.json) for the interop
# tests (crates/eddy-core/tests/boltz_core.rs), with Node.js from Debian when missing.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing: nodejs npm"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
boltz_core="$(cd "$(dirname "$0")/.." && pwd)/tests/boltz-core"
if ! cmp -s "$boltz_core/package-lock.json" "$boltz_core/node_modules/.eddy-installed-lock" 2>/dev/null; then
  echo "installing boltz-core into $boltz_core/node_modules"
  (cd "$boltz_core" && npm ci --no-audit --no-fund --loglevel=error >/dev/null \
    && cp package-lock.json node_modules/.eddy-installed-lock)
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
