#!/usr/bin/python3
"""Offline checks of the Grafana dashboard (no server, no Prometheus):

- the committed JSON is what deploy/grafana/generate_dashboard.py writes;
- schemaVersion, the datasource / instance / backend variables, unique panel
  ids, panels inside the 24-column grid and not overlapping;
- every panel target uses the ${datasource} variable and has an expression;
- every expression parses as PromQL: they are written, variables substituted,
  as recording rules into a temporary file for `promtool check rules`.

Usage: check_dashboard.py --dashboard JSON --generator PY [--promtool PATH]
Exit 0 on success, 1 on failure, 77 without promtool.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_testlib as lib  # noqa: E402  pylint: disable=wrong-import-position
from prometheus_e2e_test import dashboard_queries, substitute  # noqa: E402


def check_layout(dashboard, failures):
    ids = set()
    cells = {}
    for panel in dashboard["panels"]:
        pid = panel["id"]
        if pid in ids:
            failures.append(f"duplicate panel id {pid}")
        ids.add(pid)
        g = panel["gridPos"]
        if g["x"] < 0 or g["w"] <= 0 or g["x"] + g["w"] > 24:
            failures.append(f"panel '{panel['title']}' outside the grid: {g}")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    failures.append(f"panel '{panel['title']}' overlaps '{cells[(x, y)]}'")
                    return
                cells[(x, y)] = panel["title"]
        if panel["type"] != "row":
            if panel.get("datasource", {}).get("uid") != "${datasource}":
                failures.append(f"panel '{panel['title']}' does not use $datasource")
            if not panel.get("targets"):
                failures.append(f"panel '{panel['title']}' has no query")
            for t in panel.get("targets", []):
                if t.get("datasource", {}).get("uid") != "${datasource}" or not t.get("expr"):
                    failures.append(f"panel '{panel['title']}' target {t.get('refId')} is incomplete")


def check_variables(dashboard, failures):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables.get("datasource")
    if not ds or ds["type"] != "datasource" or ds["query"] != "prometheus":
        failures.append("no datasource variable of type prometheus")
    for name in ("instance", "backend"):
        v = variables.get(name)
        if not v or v["type"] != "query" or not v.get("includeAll") or v.get("allValue") != ".*":
            failures.append(f"variable {name} missing, or without All = .*")


def check_promql(dashboard, promtool, failures):
    rules = [{"record": f"dashboard:query_{i}", "expr": substitute(expr)}
             for i, (_, expr) in enumerate(dashboard_queries(dashboard))
             if not expr.startswith("label_values(")]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        path = f.name
    try:
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True,
                           check=False)
        if r.returncode != 0:
            failures.append(f"promtool check rules on the dashboard's queries:\n{r.stdout}{r.stderr}")
        else:
            lib.log(f"{len(rules)} dashboard expressions parse as PromQL")
    finally:
        os.unlink(path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--promtool")
    args = parser.parse_args()
    promtool = lib.find_tool("promtool", args.promtool)
    if not promtool:
        lib.log("SKIP: promtool (Debian package prometheus) is not installed")
        return lib.SKIP

    failures = []
    with open(args.dashboard, encoding="utf-8") as f:
        committed = f.read()
    with tempfile.TemporaryDirectory() as work:
        fresh = os.path.join(work, "dashboard.json")
        subprocess.run([sys.executable, args.generator, fresh], check=True)
        with open(fresh, encoding="utf-8") as f:
            if f.read() != committed:
                failures.append(f"{args.dashboard} is out of date: run {args.generator}")

    dashboard = json.loads(committed)
    if dashboard.get("schemaVersion") != 39:
        failures.append(f"schemaVersion {dashboard.get('schemaVersion')}, expected 39")
    check_layout(dashboard, failures)
    check_variables(dashboard, failures)
    check_promql(dashboard, promtool, failures)

    for failure in failures:
        lib.log("FAIL:", failure)
    lib.log("FAILED" if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
