// Reports of a load run: text summary, JSON, CSV and a self-contained HTML
// page with inline SVG charts.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "normserve/client/loadgen.h"

namespace normserve::client {
namespace {

double Us(uint64_t ns) { return ns / 1e3; }

std::string JsonEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<int>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  return out;
}

std::string XmlEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string Num(double v) {
  if (!std::isfinite(v)) return "0";
  return absl::StrFormat("%.3f", v);
}

int64_t TotalErrors(const StepResult& s) {
  int64_t n = 0;
  for (const auto& [code, count] : s.errors) n += count;
  return n;
}

std::string StepLabel(const StepResult& s) {
  if (s.requested_rate > 0) return absl::StrFormat("open loop, %g req/s", s.requested_rate);
  return absl::StrFormat("closed loop, concurrency %d", s.concurrency);
}

// The figures of one step, as the members of a JSON object (no braces).
std::string StepJsonMembers(const StepResult& s) {
  std::vector<std::string> errors;
  for (const auto& [code, count] : s.errors)
    errors.push_back(absl::StrCat("\"", JsonEscape(code), "\":", count));
  std::vector<std::string> timeline;
  for (int64_t n : s.timeline) timeline.push_back(Num(n / s.timeline_interval_s));
  const LatencyHistogram& h = s.latency_ns;
  return absl::StrCat(
      "\"concurrency\":", s.concurrency, ",\"requested_rate\":", Num(s.requested_rate),
      ",\"achieved_rps\":", Num(s.achieved_rps), ",\"requests\":", s.requests, ",\"ok\":", s.ok,
      ",\"warmup_requests\":", s.warmup_requests, ",\"seconds\":", Num(s.seconds),
      ",\"send_rate\":", Num(s.send_rate), ",\"max_send_lag_ms\":", Num(s.max_send_lag_ms),
      ",\"fell_behind\":", s.fell_behind ? "true" : "false",
      ",\"latency_us\":{\"p50\":", Num(Us(h.Percentile(50))), ",\"p90\":", Num(Us(h.Percentile(90))),
      ",\"p99\":", Num(Us(h.Percentile(99))), ",\"p999\":", Num(Us(h.Percentile(99.9))),
      ",\"max\":", Num(Us(h.max())), ",\"min\":", Num(Us(h.min())), ",\"mean\":", Num(h.Mean() / 1e3),
      "},\"errors\":{", absl::StrJoin(errors, ","),
      "},\"server\":{\"queue_us_p50\":", Num(Us(s.server_queue_ns.Percentile(50))),
      ",\"queue_us_p99\":", Num(Us(s.server_queue_ns.Percentile(99))),
      ",\"compute_us_p50\":", Num(Us(s.server_compute_ns.Percentile(50))),
      ",\"compute_us_p99\":", Num(Us(s.server_compute_ns.Percentile(99))),
      "},\"timeline_interval_s\":", Num(s.timeline_interval_s), ",\"timeline_rps\":[",
      absl::StrJoin(timeline, ","), "]");
}

constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;
};

struct Tick {
  double value;
  std::string label;
};

// Evenly spaced "nice" ticks over [lo, hi].
std::vector<Tick> LinearTicks(double lo, double hi, int count) {
  std::vector<Tick> ticks;
  const double span = hi - lo;
  if (!(span > 0)) return {{lo, absl::StrFormat("%g", lo)}};
  const double raw = span / count;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  }
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push_back({v, absl::StrFormat("%g", std::abs(v) < step * 1e-9 ? 0.0 : v)});
  }
  return ticks;
}

// One chart: axes, tick labels, a polyline per series (or bars), legend.
std::string Chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                  const std::vector<Series>& series, const std::vector<Tick>& x_ticks, double x_lo,
                  double x_hi, bool bars) {
  constexpr double kW = 720, kH = 320, kLeft = 70, kRight = 20, kTop = 30, kBottom = 50;
  double y_hi = 0;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points) y_hi = std::max(y_hi, y);
  if (y_hi <= 0) y_hi = 1;
  y_hi *= 1.05;
  const double pw = kW - kLeft - kRight, ph = kH - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x_hi > x_lo ? (x - x_lo) / (x_hi - x_lo) : 0.5) * pw; };
  auto py = [&](double y) { return kTop + ph - y / y_hi * ph; };
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n",
      kW, kH, kW, kH);
  absl::StrAppendFormat(&svg, "<title>%s</title>\n", XmlEscape(title));
  absl::StrAppendFormat(
      &svg, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fafafa\" stroke=\"#999\"/>\n",
      kLeft, kTop, pw, ph);
  for (const Tick& t : LinearTicks(0, y_hi, 5)) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                          kLeft, py(t.value), kLeft + pw, py(t.value), kLeft - 4, py(t.value) + 4,
                          XmlEscape(t.label));
  }
  for (const Tick& t : x_ticks) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                          px(t.value), kTop, px(t.value), kTop + ph, px(t.value), kTop + ph + 14,
                          XmlEscape(t.label));
  }
  absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                        kLeft + pw / 2, kH - 12, XmlEscape(x_label));
  absl::StrAppendFormat(
      &svg, "<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.1f)\">%s</text>\n",
      kTop + ph / 2, kTop + ph / 2, XmlEscape(y_label));
  absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"18\" font-size=\"13\" font-weight=\"bold\">%s</text>\n",
                        kLeft, XmlEscape(title));
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    const char* color = kColors[i % std::size(kColors)];
    if (bars) {
      for (size_t j = 0; j + 1 < s.points.size(); ++j) {
        const double x0 = px(s.points[j].first), x1 = px(s.points[j + 1].first);
        const double y = py(s.points[j].second);
        absl::StrAppendFormat(&svg,
                              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" "
                              "fill-opacity=\"0.6\"/>\n",
                              x0, y, std::max(0.5, x1 - x0 - 0.5), kTop + ph - y, color);
      }
    } else {
      std::vector<std::string> pts;
      for (const auto& [x, y] : s.points) pts.push_back(absl::StrFormat("%.1f,%.1f", px(x), py(y)));
      absl::StrAppendFormat(&svg,
                            "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"%s\"/>\n",
                            color, absl::StrJoin(pts, " "));
    }
    absl::StrAppendFormat(&svg,
                          "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                          kLeft + 10, kTop + 8 + 14 * i, color, kLeft + 24, kTop + 17 + 14 * i,
                          XmlEscape(s.name));
  }
  svg += "</svg>\n";
  return svg;
}

// Percentile p plotted at log10(1 / (1 - p)), so the tail gets room.
double PercentileX(double p) { return std::log10(1.0 / (1.0 - std::min(p, 99.999) / 100.0)); }

std::string PercentileChart(const LoadReport& report) {
  std::vector<Series> series;
  for (const StepResult& s : report.steps) {
    Series line{StepLabel(s), {}};
    if (s.latency_ns.count() > 0) {
      for (double x = 0; x <= 4.0001; x += 0.05) {
        const double p = 100.0 * (1.0 - std::pow(10, -x));
        line.points.emplace_back(x, s.latency_ns.Percentile(p) / 1e6);
      }
    }
    series.push_back(std::move(line));
  }
  std::vector<Tick> ticks = {{PercentileX(0), "0%"},       {PercentileX(50), "50%"},
                             {PercentileX(90), "90%"},     {PercentileX(99), "99%"},
                             {PercentileX(99.9), "99.9%"}, {PercentileX(99.99), "99.99%"}};
  return Chart("Latency by percentile", "percentile", "latency (ms)", series, ticks, 0, 4, false);
}

std::string HistogramChart(const StepResult& s) {
  // Regroups the fine buckets into 40 log-spaced bins between min and max.
  constexpr int kBins = 40;
  const double lo = std::log10(std::max<double>(1, s.latency_ns.min()));
  const double hi = std::log10(std::max<double>(2, s.latency_ns.max() + 1));
  std::vector<double> counts(kBins, 0);
  for (const auto& b : s.latency_ns.NonEmptyBuckets()) {
    const double x = std::log10(std::max<double>(1, b.lower + (b.upper - b.lower) / 2.0));
    int i = hi > lo ? static_cast<int>((x - lo) / (hi - lo) * kBins) : 0;
    counts[std::clamp(i, 0, kBins - 1)] += b.count;
  }
  Series bars{StepLabel(s), {}};
  for (int i = 0; i <= kBins; ++i) {
    bars.points.emplace_back(lo + (hi - lo) * i / kBins, i < kBins ? counts[i] : 0);
  }
  std::vector<Tick> ticks;
  for (int i = 0; i <= 4; ++i) {
    const double x = lo + (hi - lo) * i / 4;
    ticks.push_back({x, absl::StrFormat("%.3g ms", std::pow(10, x) / 1e6)});
  }
  return Chart("Latency histogram (last step)", "latency (log scale)", "requests", {bars}, ticks, lo,
               hi > lo ? hi : lo + 1, true);
}

std::string ThroughputChart(const LoadReport& report) {
  std::vector<Series> series;
  double x_hi = 0;
  for (const StepResult& s : report.steps) {
    Series line{StepLabel(s), {}};
    for (size_t i = 0; i < s.timeline.size(); ++i) {
      const double t = (i + 0.5) * s.timeline_interval_s;
      line.points.emplace_back(t, s.timeline[i] / s.timeline_interval_s);
      x_hi = std::max(x_hi, t);
    }
    series.push_back(std::move(line));
  }
  if (x_hi <= 0) x_hi = 1;
  return Chart("Throughput over time", "seconds since the step's start", "completions per second", series,
               LinearTicks(0, x_hi, 8), 0, x_hi, false);
}

}  // namespace

std::string ReportText(const LoadReport& report) {
  std::string out;
  for (size_t i = 0; i < report.steps.size(); ++i) {
    const StepResult& s = report.steps[i];
    const LatencyHistogram& h = s.latency_ns;
    absl::StrAppendFormat(&out, "step %d/%d: %s, payload %d bytes\n", i + 1, report.steps.size(),
                          StepLabel(s), report.payload_bytes);
    std::vector<std::string> errors;
    for (const auto& [code, n] : s.errors) errors.push_back(absl::StrCat(code, " ", n));
    absl::StrAppendFormat(
        &out, "  requests %d  ok %d  errors %d%s  warm-up %d\n", s.requests, s.ok, TotalErrors(s),
        errors.empty() ? "" : absl::StrCat(" (", absl::StrJoin(errors, ", "), ")"), s.warmup_requests);
    if (s.requested_rate > 0) {
      absl::StrAppendFormat(
          &out, "  achieved %.1f req/s of %.1f requested over %.2f s (sent %.1f/s, max send lag %.2f ms)\n",
          s.achieved_rps, s.requested_rate, s.seconds, s.send_rate, s.max_send_lag_ms);
    } else {
      absl::StrAppendFormat(&out, "  achieved %.1f req/s over %.2f s\n", s.achieved_rps, s.seconds);
    }
    absl::StrAppendFormat(&out, "  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
                          h.Percentile(50) / 1e6, h.Percentile(90) / 1e6, h.Percentile(99) / 1e6,
                          h.Percentile(99.9) / 1e6, h.max() / 1e6);
    absl::StrAppendFormat(&out, "  server us: queue p50 %.1f p99 %.1f  compute p50 %.1f p99 %.1f\n",
                          Us(s.server_queue_ns.Percentile(50)), Us(s.server_queue_ns.Percentile(99)),
                          Us(s.server_compute_ns.Percentile(50)), Us(s.server_compute_ns.Percentile(99)));
    if (s.fell_behind) {
      absl::StrAppendFormat(
          &out,
          "  WARNING: the generator fell behind: achieved %.1f req/s, sent %.1f/s of %.1f "
          "requested (max send lag %.2f ms); latencies still count from the intended send times\n",
          s.achieved_rps, s.send_rate, s.requested_rate, s.max_send_lag_ms);
    }
  }
  return out;
}

std::string ReportJson(const LoadReport& report) {
  std::vector<std::string> settings, steps;
  for (const auto& [k, v] : report.settings)
    settings.push_back(absl::StrCat("\"", JsonEscape(k), "\":\"", JsonEscape(v), "\""));
  for (const StepResult& s : report.steps) steps.push_back(absl::StrCat("{", StepJsonMembers(s), "}"));
  std::string out = "{";
  if (!report.steps.empty()) absl::StrAppend(&out, StepJsonMembers(report.steps.back()), ",");
  absl::StrAppend(&out, "\"payload_bytes\":", report.payload_bytes, ",\"settings\":{",
                  absl::StrJoin(settings, ","), "},\"steps\":[", absl::StrJoin(steps, ","), "]}\n");
  return out;
}

std::string ReportCsv(const LoadReport& report) {
  std::string out =
      "step,concurrency,requested_rate,achieved_rps,requests,ok,errors,p50_us,p90_us,p99_us,p999_us,max_us,"
      "server_queue_us_p50,server_compute_us_p50,fell_behind\n";
  for (size_t i = 0; i < report.steps.size(); ++i) {
    const StepResult& s = report.steps[i];
    const LatencyHistogram& h = s.latency_ns;
    absl::StrAppend(&out, i + 1, ",", s.concurrency, ",", Num(s.requested_rate), ",", Num(s.achieved_rps),
                    ",", s.requests, ",", s.ok, ",", TotalErrors(s), ",", Num(Us(h.Percentile(50))), ",",
                    Num(Us(h.Percentile(90))), ",", Num(Us(h.Percentile(99))), ",",
                    Num(Us(h.Percentile(99.9))), ",", Num(Us(h.max())), ",",
                    Num(Us(s.server_queue_ns.Percentile(50))), ",",
                    Num(Us(s.server_compute_ns.Percentile(50))), ",", s.fell_behind ? "true" : "false", "\n");
  }
  return out;
}

std::string ReportHtml(const LoadReport& report) {
  std::string out =
      "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
      "<meta charset=\"utf-8\"/>\n<title>normserve-loadgen report</title>\n"
      "<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
      "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
      "td.k{text-align:left}.warn{color:#b00;font-weight:bold}</style>\n</head>\n<body>\n"
      "<h1>normserve-loadgen report</h1>\n<h2>Settings</h2>\n<table>\n";
  for (const auto& [k, v] : report.settings) {
    absl::StrAppend(&out, "<tr><td class=\"k\">", XmlEscape(k), "</td><td class=\"k\">", XmlEscape(v),
                    "</td></tr>\n");
  }
  absl::StrAppend(
      &out, "<tr><td class=\"k\">payload bytes</td><td class=\"k\">", report.payload_bytes,
      "</td></tr>\n</table>\n<h2>Summary</h2>\n<table>\n<tr><th>step</th><th>mode</th><th>requests</th>"
      "<th>errors</th><th>achieved req/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th>"
      "<th>p99.9 ms</th><th>max ms</th><th>server queue p50 us</th><th>server compute p50 us</th></tr>\n");
  for (size_t i = 0; i < report.steps.size(); ++i) {
    const StepResult& s = report.steps[i];
    const LatencyHistogram& h = s.latency_ns;
    absl::StrAppendFormat(
        &out,
        "<tr><td>%d</td><td class=\"k\">%s</td><td>%d</td><td>%d</td><td>%.1f</td><td>%.3f</td>"
        "<td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%.1f</td><td>%.1f</td></tr>\n",
        i + 1, XmlEscape(StepLabel(s)), s.requests, TotalErrors(s), s.achieved_rps, h.Percentile(50) / 1e6,
        h.Percentile(90) / 1e6, h.Percentile(99) / 1e6, h.Percentile(99.9) / 1e6, h.max() / 1e6,
        Us(s.server_queue_ns.Percentile(50)), Us(s.server_compute_ns.Percentile(50)));
  }
  out += "</table>\n";
  for (const StepResult& s : report.steps) {
    if (s.fell_behind) {
      absl::StrAppendFormat(
          &out, "<p class=\"warn\">%s: the generator fell behind (sent %.1f/s of %.1f requested).</p>\n",
          XmlEscape(StepLabel(s)), s.send_rate, s.requested_rate);
    }
  }
  out += "<div>\n" + PercentileChart(report) + "</div>\n";
  if (!report.steps.empty()) out += "<div>\n" + HistogramChart(report.steps.back()) + "</div>\n";
  out += "<div>\n" + ThroughputChart(report) + "</div>\n</body>\n</html>\n";
  return out;
}

}  // namespace normserve::client
