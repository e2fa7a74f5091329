#!/usr/bin/env bash
# promtool on deploy/prometheus: the config (with its rule file) is valid and
# the alert unit tests in alerts_test.yml pass. Exit 77 (skip) without
# promtool (Debian package prometheus).
# Usage: promtool_test.sh DEPLOY_PROMETHEUS_DIR
set -euo pipefail
dir="$1"
if ! command -v promtool >/dev/null; then
  echo "SKIP: promtool (Debian package prometheus) is not installed"
  exit 77
fi
cd "$dir"
promtool check config prometheus.yml
promtool check rules alerts.yml
promtool test rules alerts_test.yml
