#!/usr/bin/env bash
# Installs what the tests need, builds everything and runs the whole test
# suite. GPU tests (label gpu) skip cleanly where there is no GPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${NORMSERVE_BUILD_DIR:-$root/build}"
"$root/scripts/build.sh"
cd "$build_dir"
ctest --output-on-failure -j"$(nproc)" "$@"
