#!/usr/bin/env bash
# Prints, one per line, the distribution packages that own the shared
# libraries the given binaries load (from ldd), so that a runtime image of
# the same distribution can install exactly those. Used by the Dockerfile's
# build stages; the runtime stage runs `apt-get install $(cat FILE)`.
# Libraries under /usr/local/cuda come with the nvidia/cuda base image and
# are left out. Fails when a library is not found or has no owning package.
# Usage: runtime-packages.sh BINARY...
set -euo pipefail

declare -A packages=()
for binary in "$@"; do
  while read -r lib; do
    case "$lib" in
      "not found"*) echo "runtime-packages: $binary: a library is not found" >&2; exit 1 ;;
      /usr/local/cuda*) continue ;;
    esac
    owner=""
    # With merged /usr, ldd may report /lib/... for a file that dpkg
    # recorded as /usr/lib/... or the other way round.
    for candidate in "$lib" "${lib#/usr}" "/usr$lib" "$(readlink -f "$lib")"; do
      if owner=$(dpkg-query -S "$candidate" 2>/dev/null); then break; fi
    done
    if [[ -z "$owner" ]]; then
      echo "runtime-packages: no package owns $lib" >&2
      exit 1
    fi
    # "libgrpc++1.51:amd64: /usr/lib/..." -> "libgrpc++1.51"
    packages["${owner%%:*}"]=1
  done < <(ldd "$binary" | awk '/not found/ { print "not found"; next } /=>/ { print $3 }')
done
printf '%s\n' "${!packages[@]}" | sort
