#!/usr/bin/env bash
# Installs the Debian packages normserve needs to build, test and benchmark.
# Idempotent: packages already present are skipped quickly by apt-get.
# Usage: scripts/setup.sh [--runtime-only]
set -euo pipefail

BUILD_PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libabsl-dev prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
)
TEST_PACKAGES=(
  python3 python3-numpy python3-grpcio python3-protobuf python3-yaml python3-torch
  prometheus curl yamllint openssl chromium clang libclang-rt-14-dev
)

packages=("${BUILD_PACKAGES[@]}")
if [[ "${1:-}" != "--runtime-only" ]]; then
  packages+=("${TEST_PACKAGES[@]}")
fi

# The Kubernetes schema test uses npm packages; any Node.js >= 18 will do, so
# Debian's is installed only where none is on PATH.
if [[ "${1:-}" != "--runtime-only" ]] && ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
