#!/usr/bin/env bash
# Installs what the build needs (scripts/setup.sh), then configures and builds
# normserve into build/ (or $NORMSERVE_BUILD_DIR). Extra arguments go to CMake.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${NORMSERVE_BUILD_DIR:-$root/build}"
"$root/scripts/setup.sh" ${NORMSERVE_SETUP_ARGS:-}
launcher=()
if command -v ccache >/dev/null 2>&1; then
  # Rebuilds of unchanged sources (a second clone, CI after a local build) come from the cache.
  export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" \
  "${launcher[@]}" "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
