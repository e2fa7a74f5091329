#!/usr/bin/python3
"""Writes deploy/grafana/normserve-dashboard.json.

The dashboard is generated so that its many panels share one set of
selectors and one definition of a server error (the same as
deploy/prometheus/alerts.yml). Edit this file, run it, and commit both:
tests/deploy/check_dashboard.py fails when the JSON is out of date.

Usage: generate_dashboard.py [OUTPUT]   (default: next to this script)
"""

import json
import os
import sys

# Codes that count as success for the error ratio: OK and the codes caused by
# the request itself. Keep in step with alerts.yml.
GOOD_CODES = ("OK|INVALID_ARGUMENT|FAILED_PRECONDITION|RESOURCE_EXHAUSTED|"
              "CANCELLED|UNAUTHENTICATED|PERMISSION_DENIED")
DATA_PLANE = 'method=~"Normalize|NormalizeStream"'
INST = 'instance=~"$instance"'
INST_BACKEND = 'instance=~"$instance",backend=~"$backend"'
RATE = "[$__rate_interval]"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


class Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self):
        self.y = 0
        self.x = 0
        self.row_height = 0
        self.next_id = 1
        self.panels = []

    def _take_id(self):
        panel_id = self.next_id
        self.next_id += 1
        return panel_id

    def row(self, title, repeat=None):
        self.newline()
        panel = {"type": "row", "id": self._take_id(), "title": title,
                 "collapsed": False, "panels": [],
                 "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}}
        if repeat:
            panel["repeat"] = repeat
        self.panels.append(panel)
        self.y += 1

    def newline(self):
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.newline()
        panel["id"] = self._take_id()
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        panel["datasource"] = DATASOURCE
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)


def target(expr, legend="", ref="A", instant=False, table=False):
    t = {"datasource": DATASOURCE, "expr": expr, "refId": ref,
         "legendFormat": legend, "range": not instant, "instant": instant}
    if table:
        t["format"] = "table"
    return t


def targets(*pairs):
    """[(expr, legend), ...] -> targets with refIds A, B, ..."""
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def timeseries(title, description, tgts, unit, stack=False, min_zero=True):
    defaults = {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10,
                                         "showPoints": "never",
                                         "stacking": {"mode": "normal" if stack else "none",
                                                      "group": "A"}}}
    if min_zero:
        defaults["min"] = 0
    return {"type": "timeseries", "title": title, "description": description,
            "targets": tgts,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom",
                                   "calcs": ["mean", "max", "lastNotNull"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title, description, tgts, unit, thresholds=None, mappings=None, decimals=None):
    steps = thresholds or [{"color": "green", "value": None}]
    defaults = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps},
                "mappings": mappings or []}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"type": "stat", "title": title, "description": description, "targets": tgts,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background", "graphMode": "area", "textMode": "auto",
                        "justifyMode": "auto", "orientation": "auto"}}


def table(title, description, tgts, hidden):
    return {"type": "table", "title": title, "description": description, "targets": tgts,
            "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {"showHeader": True},
            "transformations": [
                {"id": "organize", "options": {"excludeByName": {name: True for name in hidden}}}]}


def quantile(q, metric, selector, by="le"):
    return (f"histogram_quantile({q}, sum by ({by}) "
            f"(rate({metric}_bucket{{{selector}}}{RATE})))")


def error_ratio(selector, by=""):
    group = f" by ({by})" if by else ""
    return (f'1 - (sum{group} (rate(normserve_requests_total{{{selector},{DATA_PLANE},'
            f'code=~"{GOOD_CODES}"}}{RATE})) / sum{group} '
            f'(rate(normserve_requests_total{{{selector},{DATA_PLANE}}}{RATE})))')


def build():
    lay = Layout()

    lay.row("Overview")
    lay.add(stat("Request rate", "All RPCs (and stream messages) per second.",
                 [target(f"sum(rate(normserve_requests_total{{{INST}}}{RATE}))")], "reqps"), 4, 4)
    lay.add(stat("Server error ratio",
                 "Share of Normalize/NormalizeStream requests that failed through the server's "
                 "fault (client errors such as INVALID_ARGUMENT excluded). Alert at 1%.",
                 [target(error_ratio(INST))], "percentunit",
                 thresholds=[{"color": "green", "value": None},
                             {"color": "orange", "value": 0.001},
                             {"color": "red", "value": 0.01}]), 4, 4)
    lay.add(stat("p99 latency", "Server-side p99 of data-plane requests. SLO: 99% within 2.5 ms.",
                 [target(quantile(0.99, "normserve_request_duration_seconds",
                                  f"{INST_BACKEND},{DATA_PLANE}"))], "s",
                 thresholds=[{"color": "green", "value": None},
                             {"color": "red", "value": 0.0025}]), 4, 4)
    lay.add(stat("Within 2.5 ms",
                 "Share of data-plane requests that met the latency SLO threshold (an exact "
                 "bucket bound, so no interpolation).",
                 [target(f'sum(rate(normserve_request_duration_seconds_bucket{{{INST_BACKEND},'
                         f'{DATA_PLANE},le="0.0025"}}{RATE})) / '
                         f'sum(rate(normserve_request_duration_seconds_count{{{INST_BACKEND},'
                         f'{DATA_PLANE}}}{RATE}))')], "percentunit",
                 thresholds=[{"color": "red", "value": None},
                             {"color": "green", "value": 0.99}]), 4, 4)
    lay.add(stat("In flight", "RPCs being served now, all methods.",
                 [target(f"sum(normserve_inflight_requests{{{INST}}})")], "short"), 4, 4)
    lay.add(stat("Targets up", "Scrape targets of job normserve that answered the last scrape.",
                 [target(f'sum(up{{job="normserve",{INST}}})')], "short", decimals=0), 4, 4)
    lay.add(stat("Backend health", "1 when a backend can take requests.",
                 [target(f"normserve_backend_healthy{{{INST_BACKEND}}}", "{{instance}} {{backend}}")],
                 "short",
                 thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
                 mappings=[{"type": "value", "options": {
                     "0": {"text": "unhealthy", "color": "red", "index": 0},
                     "1": {"text": "healthy", "color": "green", "index": 1}}}]), 8, 5)
    lay.add(table("Backends", "Backends compiled in and their devices (normserve_backend_info).",
                  [target(f"normserve_backend_info{{{INST_BACKEND}}}", instant=True, table=True)],
                  ["Time", "Value", "__name__"]), 8, 5)
    lay.add(table("Build", "Version and git commit of every instance (normserve_build_info).",
                  [target(f"normserve_build_info{{{INST}}}", instant=True, table=True)],
                  ["Time", "Value", "__name__"]), 8, 5)

    lay.row("Traffic and errors")
    lay.add(timeseries("Requests by code", "Per second, all methods, by gRPC status code.",
                       targets((f"sum by (code) (rate(normserve_requests_total{{{INST}}}{RATE}))",
                                "{{code}}")), "reqps", stack=True), 12, 8)
    lay.add(timeseries("Requests by method and kind", "Per second, on the selected backends.",
                       targets((f"sum by (method, kind) (rate(normserve_requests_total"
                                f"{{{INST_BACKEND}}}{RATE}))", "{{method}} {{kind}}")),
                       "reqps", stack=True), 12, 8)
    lay.add(timeseries("Server error ratio by instance",
                       "As the stat above, per instance. Alert NormserveHighErrorRatio at 1%.",
                       targets((error_ratio(INST, "instance"), "{{instance}}")),
                       "percentunit"), 12, 8)
    lay.add(timeseries("Rejections by reason",
                       "Requests turned away before compute, per second. queue_full feeds the "
                       "NormserveQueueSaturated alert.",
                       targets((f"sum by (reason) (rate(normserve_rejections_total{{{INST}}}{RATE}))",
                                "{{reason}}")), "reqps", stack=True), 12, 8)

    lay.row("Latency")
    lay.add(timeseries("Request latency", "Server-side duration of data-plane requests, "
                       "from arrival to response ready.",
                       targets(*[(quantile(q, "normserve_request_duration_seconds",
                                           f"{INST_BACKEND},{DATA_PLANE}"), f"p{round(q * 100)}")
                                 for q in (0.5, 0.9, 0.99)]), "s"), 12, 8)
    lay.add(timeseries("p99 latency by kind", "Data-plane requests, per normalization kind.",
                       targets((quantile(0.99, "normserve_request_duration_seconds",
                                         f"{INST_BACKEND},{DATA_PLANE}", "le, kind"),
                                "{{kind}}")), "s"), 12, 8)
    lay.add(timeseries("Queue wait vs compute",
                       "Time in the batch queue against time in the backend call. A queue "
                       "wait far above --max_queue_delay_us means the backend is saturated.",
                       targets(*[(quantile(q, metric, INST_BACKEND), f"{name} p{round(q * 100)}")
                                 for metric, name in (("normserve_queue_wait_seconds", "queue wait"),
                                                      ("normserve_compute_seconds", "compute"))
                                 for q in (0.5, 0.99)]), "s"), 24, 8)

    lay.row("Batching")
    for metric, title, what in (("normserve_batch_requests", "Batch size (requests)", "requests"),
                                ("normserve_batch_rows", "Batch size (rows)", "rows")):
        lay.add(timeseries(title, f"{what.capitalize()} merged into one backend call: "
                           "median and mean per backend.",
                           targets((quantile(0.5, metric, INST_BACKEND, "le, backend"),
                                    "p50 {{backend}}"),
                                   (f"sum by (backend) (rate({metric}_sum{{{INST_BACKEND}}}{RATE})) / "
                                    f"sum by (backend) (rate({metric}_count{{{INST_BACKEND}}}{RATE}))",
                                    "mean {{backend}}")), "short"), 12, 8)

    lay.row("Queue, concurrency and bytes")
    lay.add(timeseries("Queue depth", "Requests waiting in each backend's batch queue "
                       "(--max_queue_requests, default 1024).",
                       targets((f"sum by (instance, backend) (normserve_queue_depth{{{INST_BACKEND}}})",
                                "{{instance}} {{backend}}")), "short"), 8, 8)
    lay.add(timeseries("Queued bytes", "Input bytes waiting in each backend's queue "
                       "(--max_queue_bytes).",
                       targets((f"sum by (instance, backend) (normserve_queue_bytes{{{INST_BACKEND}}})",
                                "{{instance}} {{backend}}")), "bytes"), 8, 8)
    lay.add(timeseries("In-flight requests", "RPCs being served, per method.",
                       targets((f"sum by (method) (normserve_inflight_requests{{{INST}}})",
                                "{{method}}")), "short"), 8, 8)
    lay.add(timeseries("Bytes in / out", "Request and response payload bytes per second.",
                       targets((f"sum by (method) (rate(normserve_received_bytes_total{{{INST}}}{RATE}))",
                                "in {{method}}"),
                               (f"sum by (method) (rate(normserve_sent_bytes_total{{{INST}}}{RATE}))",
                                "out {{method}}")), "Bps"), 24, 8)

    # One copy of this row per selected backend.
    lay.row("Backend $backend", repeat="backend")
    one = 'instance=~"$instance",backend=~"$backend"'
    lay.add(timeseries("Throughput on $backend", "Data-plane requests per second by kind.",
                       targets((f"sum by (kind) (rate(normserve_requests_total{{{one},{DATA_PLANE}}}{RATE}))",
                                "{{kind}}")), "reqps", stack=True), 8, 8)
    lay.add(timeseries("Latency p99 on $backend", "Server-side p99 by kind.",
                       targets((quantile(0.99, "normserve_request_duration_seconds",
                                         f"{one},{DATA_PLANE}", "le, kind"), "{{kind}}")), "s"), 8, 8)
    lay.add(timeseries("Compute p50 / p99 on $backend", "Duration of the backend calls.",
                       targets((quantile(0.5, "normserve_compute_seconds", one, "le, kind"),
                                "p50 {{kind}}"),
                               (quantile(0.99, "normserve_compute_seconds", one, "le, kind"),
                                "p99 {{kind}}")), "s"), 8, 8)

    variables = [
        {"name": "datasource", "label": "Data source", "type": "datasource",
         "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": ""},
        {"name": "instance", "label": "Instance", "type": "query", "datasource": DATASOURCE,
         "query": {"query": "label_values(normserve_build_info, instance)", "refId": "instance"},
         "definition": "label_values(normserve_build_info, instance)",
         "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
         "current": {"text": "All", "value": "$__all"}, "sort": 1, "hide": 0, "regex": ""},
        {"name": "backend", "label": "Backend", "type": "query", "datasource": DATASOURCE,
         "query": {"query": 'label_values(normserve_backend_info{instance=~"$instance"}, backend)',
                   "refId": "backend"},
         "definition": 'label_values(normserve_backend_info{instance=~"$instance"}, backend)',
         "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
         "current": {"text": "All", "value": "$__all"}, "sort": 1, "hide": 0, "regex": ""},
    ]

    return {
        "__inputs": [],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "description": "normserve: traffic, errors, latency, batching and queues. "
                       "See docs/monitoring.md.",
        "editable": True,
        "graphTooltip": 1,
        "links": [],
        "panels": lay.panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["normserve"],
        "templating": {"list": variables},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": "normserve",
        "uid": "normserve-overview",
        "version": 1,
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "normserve-dashboard.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(build(), f, indent=2, sort_keys=False)
        f.write("\n")


if __name__ == "__main__":
    main()
