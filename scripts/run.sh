#!/usr/bin/env bash
# Builds normserve and starts the server in the foreground. Flags go to the
# server, e.g. scripts/run.sh --port=50051 --backend=cpu. Without --backend the
# server uses CUDA when a GPU is present and the CPU otherwise.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${NORMSERVE_BUILD_DIR:-$root/build}"
NORMSERVE_SETUP_ARGS=--runtime-only "$root/scripts/build.sh"
exec "$build_dir/server/normserve" "$@"
