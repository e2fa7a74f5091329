#!/usr/bin/python3
"""End to end: the dashboard and the alert rules against a real Prometheus
scraping a real normserve.

Starts Debian's prometheus (scrape and rule evaluation every second, the
rules of deploy/prometheus/alerts.yml loaded) and normserve on loopback,
loads the server (normserve-loadgen when given, plus a Python grpcio driver
that adds streams, GetServerInfo calls and invalid requests), then through
Prometheus's HTTP API:
- evaluates every expression of every dashboard panel and template variable,
  with the variables substituted, and requires a valid query with a
  non-empty, finite result;
- requires every rule group to be loaded and healthy, every recording rule
  to produce a finite value, every alert expression to be a valid query,
  and the alerts that a healthy run must not raise to be inactive;
- checks that every metric named by the dashboard or the rules is exposed;
and runs `promtool check metrics` on the scraped text.

Exit 0 on success, 1 on failure, 77 (skip) when prometheus or promtool is
not installed.
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_testlib as lib  # noqa: E402  pylint: disable=wrong-import-position

# What the dashboard's variables become in the test: every instance and
# backend, and a rate window that holds several 1 s scrapes of the load.
SUBSTITUTIONS = {
    "$__rate_interval": "30s",
    "${datasource}": "prometheus",
    "$instance": ".*",
    "$backend": ".*",
}
# A healthy run must never raise these (the SLO alerts may, on a slow CI
# machine, so they are only checked for validity).
MUST_STAY_QUIET = ("NormserveTargetDown", "NormserveTargetsMissing",
                   "NormserveBackendUnhealthy", "NormserveQueueSaturated")
LOAD_SECONDS = 8


def substitute(expr):
    for var, value in SUBSTITUTIONS.items():
        expr = expr.replace(var, value)
    lib.check("$" not in expr, f"unsubstituted variable in {expr}")
    return expr


def dashboard_queries(dashboard):
    """[(where, expr)] for every panel target and query variable."""
    queries = []

    def walk(panels):
        for panel in panels:
            for t in panel.get("targets", []):
                queries.append((f"panel '{panel['title']}' {t['refId']}", t["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            queries.append((f"variable '{var['name']}'", var["query"]["query"]))
    return queries


def metric_names(expr):
    # Recording rule names (job:normserve_...:...) are not exposed metrics.
    return set(re.findall(r"(?<![\w:])(normserve_[a-z_]+|up)(?![\w:])", expr))


def base_family(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def finite_values(result):
    data = result["data"]
    if data["resultType"] == "vector":
        values = [float(s["value"][1]) for s in data["result"]]
    elif data["resultType"] == "scalar":
        values = [float(data["result"][1])]
    else:
        values = []
    return [v for v in values if math.isfinite(v)]


def check_query(prom, where, expr, failures, require_data=True):
    result = prom.query(expr)
    if result.get("status") != "success":
        failures.append(f"{where}: invalid query {expr}: {result.get('error')}")
        return None
    if require_data and not finite_values(result):
        failures.append(f"{where}: no finite result for {expr}: {json.dumps(result['data'])[:300]}")
    return result


def label_values_query(prom, expr):
    """label_values(metric{...}, label) through the labels API, as Grafana does."""
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", expr)
    lib.check(m is not None, f"unsupported variable query {expr}")
    return prom.api(f"label/{m.group(2)}/values", **{"match[]": m.group(1)})


def run(args):
    prometheus_bin = lib.find_tool("prometheus", args.prometheus)
    promtool = lib.find_tool("promtool", args.promtool)
    if not prometheus_bin or not promtool:
        lib.log("SKIP: Debian's prometheus package (prometheus, promtool) is not installed")
        return lib.SKIP

    with open(args.dashboard, encoding="utf-8") as f:
        dashboard = json.load(f)
    with open(args.rules, encoding="utf-8") as f:
        rule_groups = yaml.safe_load(f)["groups"]

    failures = []
    with lib.temp_dir("normserve-prom-e2e-") as work:
        pb = lib.generate_proto_module(args.protoc, args.proto_root, work)
        server = lib.Server(args.normserve)
        prom = None
        try:
            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [os.path.abspath(args.rules)],
                "scrape_configs": [{
                    "job_name": "normserve",
                    "static_configs": [{"targets": [f"127.0.0.1:{server.metrics_port}"]}],
                }],
            }
            prom = lib.Prometheus(prometheus_bin, work, yaml.safe_dump(config))
            lib.log(f"normserve on {server.target}, metrics :{server.metrics_port}, "
                    f"prometheus {prom.url}")

            loadgen = None
            if args.loadgen:
                loadgen = lib.Process("normserve-loadgen", [
                    args.loadgen, f"--target={server.target}", "--concurrency=2",
                    f"--duration={LOAD_SECONDS}s", f"--json={os.path.join(work, 'load.json')}"])
            driver = lib.PythonDriver(pb, server.target)
            codes = driver.mixed_load(LOAD_SECONDS)
            driver.close()
            lib.log(f"python driver: {codes}")
            lib.check(codes.get("OK", 0) > 0, f"no successful request: {codes}")
            lib.check(codes.get("INVALID_ARGUMENT", 0) > 0, f"bad requests were accepted: {codes}")
            if loadgen:
                rc = loadgen.proc.wait(timeout=60)
                lib.check(rc == 0, f"normserve-loadgen exited {rc}:\n{loadgen.tail()}")
                with open(os.path.join(work, "load.json"), encoding="utf-8") as f:
                    steps = json.load(f)["steps"]
                lib.check(steps and steps[0]["ok"] > 0, f"loadgen had no OK request: {steps}")
                lib.log(f"loadgen: {steps[0]['ok']} OK, errors {steps[0]['errors']}")

            # Let a few scrapes and rule evaluations see the end of the load.
            time.sleep(3)
            scraped = server.scrape()
            exposed = {base_family(name) for name, _, _ in lib.parse_samples(scraped)}

            lint = subprocess.run([promtool, "check", "metrics"], input=scraped, text=True,
                                  capture_output=True, check=False)
            if lint.returncode != 0:
                failures.append(f"promtool check metrics: {lint.stdout}{lint.stderr}")
            lib.check('le="0.0025"' in scraped,
                      'no le="0.0025" bucket: the latency SLO rules would match nothing')

            # Dashboard.
            queries = dashboard_queries(dashboard)
            for where, expr in queries:
                for name in metric_names(expr) - {"up"}:
                    if base_family(name) not in exposed:
                        failures.append(f"{where}: metric {name} is not exposed by normserve")
                expr = substitute(expr)
                if expr.startswith("label_values("):
                    result = label_values_query(prom, expr)
                    if result.get("status") != "success" or not result["data"]:
                        failures.append(f"{where}: {expr} gave {result}")
                else:
                    check_query(prom, where, expr, failures)
            lib.log(f"dashboard: {len(queries)} queries evaluated")

            # Rules as Prometheus loaded them.
            loaded = prom.api("rules")["data"]["groups"]
            lib.check(sorted(g["name"] for g in loaded) == sorted(g["name"] for g in rule_groups),
                      f"rule groups loaded: {[g['name'] for g in loaded]}")
            for group in loaded:
                for rule in group["rules"]:
                    name = rule["name"]
                    if rule["health"] != "ok":
                        failures.append(f"rule {name}: health {rule['health']} {rule.get('lastError')}")
                    if rule["type"] == "alerting" and name in MUST_STAY_QUIET and rule["state"] != "inactive":
                        failures.append(f"alert {name} is {rule['state']} in a healthy run")
            rule_count = 0
            for group in rule_groups:
                for rule in group["rules"]:
                    rule_count += 1
                    name = rule.get("record") or rule["alert"]
                    for metric in metric_names(rule["expr"]) - {"up"}:
                        if base_family(metric) not in exposed:
                            failures.append(f"rule {name}: metric {metric} is not exposed")
                    check_query(prom, f"rule {name}", rule["expr"], failures,
                                require_data="record" in rule)
                    if "record" in rule:
                        # The series Prometheus itself recorded from the rule.
                        check_query(prom, f"recorded {name}", rule["record"], failures)
            lib.log(f"rules: {rule_count} expressions evaluated")

            if args.render_png:
                import render_dashboard  # pylint: disable=import-outside-toplevel
                render_dashboard.render(dashboard, prom, substitute, args.render_png,
                                        seconds=LOAD_SECONDS + 6)
                lib.log(f"dashboard drawn to {args.render_png}")
        finally:
            if prom:
                prom.terminate()
            rc = server.terminate()
            if rc != 0:
                failures.append(f"normserve exited {rc} on SIGTERM:\n{server.tail()}")

    for failure in failures:
        lib.log("FAIL:", failure)
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--normserve", required=True)
    parser.add_argument("--loadgen", help="normserve-loadgen; the Python driver alone without it")
    parser.add_argument("--protoc", default="protoc")
    parser.add_argument("--proto_root", required=True, help="directory holding normserve/v1/normserve.proto")
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--prometheus")
    parser.add_argument("--promtool")
    parser.add_argument("--render_png", help="also draw the dashboard to this PNG (python3-matplotlib)")
    args = parser.parse_args()
    try:
        rc = run(args)
    except lib.TestFailure as e:
        lib.log("FAIL:", e)
        rc = 1
    lib.log("PASS" if rc == 0 else ("SKIP" if rc == lib.SKIP else "FAILED"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
