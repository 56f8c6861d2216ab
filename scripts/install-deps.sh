#!/usr/bin/env bash
# Installs the system packages Eddy's build and tests need, only when missing:
# cmake + Boost headers (libbitcoinkernel), protoc (LND protos), PostgreSQL (store tests).
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
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
