#!/usr/bin/env bash
# Installs what the build needs (scripts/setup.sh), then configures and builds
# normserve into build/ (or $NORMSERVE_BUILD_DIR). Extra arguments go to CMake.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${NORMSERVE_BUILD_DIR:-$root/build}"
"$root/scripts/setup.sh" ${NORMSERVE_SETUP_ARGS:-}
cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
