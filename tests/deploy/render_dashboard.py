"""Draws the Grafana dashboard as a PNG with matplotlib, from the dashboard's
own queries run as range queries against a live Prometheus.

Grafana is not installed where the tests run, so this is a faithful sketch:
panels sit where their gridPos puts them, stat panels show their last value
with the panel's unit and thresholds, tables their label columns, time
series their lines with legends. Repeated rows are drawn once, for all
backends. Needs python3-matplotlib; called by prometheus_e2e_test.py
--render_png.
"""

import math
import re
import time

UNIT_SCALES = (  # unit -> [(threshold, divisor, suffix)], largest first
    ("s", [(1, 1, " s"), (1e-3, 1e-3, " ms"), (0, 1e-6, " µs")]),
    ("Bps", [(1e9, 1e9, " GB/s"), (1e6, 1e6, " MB/s"), (1e3, 1e3, " kB/s"), (0, 1, " B/s")]),
    ("bytes", [(2**30, 2**30, " GiB"), (2**20, 2**20, " MiB"), (2**10, 2**10, " KiB"), (0, 1, " B")]),
    ("reqps", [(1e3, 1e3, "k req/s"), (0, 1, " req/s")]),
)


def format_value(value, unit):
    if value is None or not math.isfinite(value):
        return "—"
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    for name, scales in UNIT_SCALES:
        if unit == name:
            for threshold, divisor, suffix in scales:
                if abs(value) >= threshold:
                    return f"{value / divisor:.3g}{suffix}"
    return f"{value:.3g}"


def legend(fmt, labels):
    if not fmt:
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def threshold_color(value, defaults):
    steps = defaults.get("thresholds", {}).get("steps", [])
    color = "green"
    for step in steps:
        if step["value"] is None or (value is not None and value >= step["value"]):
            color = step["color"]
    return {"green": "#56a64b", "orange": "#ff9830", "red": "#e02f44"}.get(color, color)


def render(dashboard, prom, substitute, out_path, seconds=60):
    """Draws `dashboard` (parsed JSON) to `out_path`; `substitute` maps an
    expression with template variables to one Prometheus can run."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    end = time.time()
    start = end - seconds
    panels = dashboard["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_px = 0.33  # inches per grid unit
    fig = plt.figure(figsize=(24 * unit_px * 1.6, height * unit_px), dpi=80, facecolor="#111217")

    # What the repeated row shows: every backend at once.
    backends = prom.api("label/backend/values", **{"match[]": "normserve_backend_info"}).get("data", [])
    backend_text = ", ".join(backends) or "all backends"

    def axes_for(pos, margin):
        # `margin` leaves room for y tick labels inside the panel's cell.
        left = pos["x"] / 24 + margin
        width = pos["w"] / 24 - margin
        bottom = 1 - (pos["y"] + pos["h"]) / height
        return fig.add_axes([left + 0.004, bottom + 0.012, width - 0.008, pos["h"] / height - 0.03])

    for panel in panels:
        pos = panel["gridPos"]
        title = panel["title"].replace("$backend", backend_text)
        if panel["type"] == "row":
            fig.text(0.005, 1 - (pos["y"] + 0.7) / height, title, color="#d8d9da", fontsize=11,
                     fontweight="bold")
            continue
        ax = axes_for(pos, 0.03 if panel["type"] == "timeseries" else 0)
        ax.set_facecolor("#181b1f")
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.set_title(title, color="#d8d9da", fontsize=9, loc="left")
        ax.tick_params(colors="#8e8e8e", labelsize=7)
        defaults = panel["fieldConfig"]["defaults"]
        unit = defaults.get("unit", "short")

        if panel["type"] in ("stat", "table"):
            ax.set_xticks([])
            ax.set_yticks([])
            rows = []
            for t in panel["targets"]:
                result = prom.query(substitute(t["expr"]))
                for series in result.get("data", {}).get("result", []):
                    rows.append((series["metric"], float(series["value"][1]), t.get("legendFormat", "")))
            if panel["type"] == "table":
                hidden = set()
                for tr in panel.get("transformations", []):
                    hidden |= set(tr.get("options", {}).get("excludeByName", {}))
                lines = ["   ".join(f"{k}={v}" for k, v in sorted(m.items()) if k not in hidden)
                         for m, _, _ in rows]
                ax.text(0.02, 0.85, "\n".join(lines) or "no data", color="#d8d9da", fontsize=7,
                        va="top", family="monospace", transform=ax.transAxes)
            else:
                texts = []
                for metric, value, fmt in rows:
                    mapped = None
                    for mapping in defaults.get("mappings", []):
                        key = str(int(value)) if value == int(value) else str(value)
                        mapped = mapping.get("options", {}).get(key, {}).get("text") or mapped
                    text = mapped or format_value(value, unit)
                    texts.append((legend(fmt, metric) if fmt else "", text, threshold_color(value, defaults)))
                if not texts:
                    texts = [("", "no data", "#444")]
                n = len(texts)
                for i, (label, text, color) in enumerate(texts):
                    x0 = i / n
                    ax.add_patch(plt.Rectangle((x0 + 0.01, 0.05), 1 / n - 0.02, 0.8, color=color,
                                               transform=ax.transAxes, alpha=0.85))
                    ax.text(x0 + 0.5 / n, 0.45, text, color="white", fontsize=16 if n == 1 else 11,
                            ha="center", va="center", fontweight="bold", transform=ax.transAxes)
                    if label:
                        ax.text(x0 + 0.5 / n, 0.75, label, color="white", fontsize=7, ha="center",
                                transform=ax.transAxes)
            continue

        any_line = False
        for t in panel["targets"]:
            result = prom.api("query_range", query=substitute(t["expr"]), start=start, end=end, step=1)
            for series in result.get("data", {}).get("result", []):
                points = [(float(ts) - end, float(v)) for ts, v in series["values"]
                          if math.isfinite(float(v))]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, linewidth=1.2, label=legend(t.get("legendFormat", ""), series["metric"]))
                    any_line = True
        ax.grid(color="#2c3235", linewidth=0.5)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _, u=unit: format_value(v, u)))
        ax.set_xlim(-seconds, 0)
        ax.set_xticks([-seconds, -seconds * 2 / 3, -seconds / 3, 0])
        ax.set_xticklabels([f"-{seconds}s", f"-{seconds * 2 // 3}s", f"-{seconds // 3}s", "now"])
        if any_line:
            ax.legend(fontsize=6, loc="upper left", facecolor="#181b1f", edgecolor="#2c3235",
                      labelcolor="#d8d9da", ncol=2)
        else:
            ax.text(0.5, 0.5, "no data", color="#8e8e8e", ha="center", transform=ax.transAxes)

    fig.savefig(out_path, facecolor=fig.get_facecolor())
    plt.close(fig)
