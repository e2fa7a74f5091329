// RecordToJson: one benchmark record as a JSON object (docs/PERFORMANCE.md).
#include "bench_common.h"

#include <cmath>
#include <cstdio>
#include <string>

namespace normserve::kernels::bench {
namespace {

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// JSON has no NaN or Inf; a figure that could not be measured is null.
std::string Number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

}  // namespace

std::string RecordToJson(const BenchRecord& r) {
  std::string s = "{";
  s += "\"backend\":" + Quote(r.backend);
  s += ",\"kind\":" + Quote(std::string(NormKindName(r.kind)));
  s += ",\"dtype\":" + Quote(std::string(DTypeName(r.dtype)));
  s += ",\"rows\":" + std::to_string(r.rows);
  s += ",\"cols\":" + std::to_string(r.cols);
  s += ",\"threads\":" + std::to_string(r.threads);
  s += ",\"isa\":" + Quote(r.isa);
  if (!r.stores.empty()) s += ",\"stores\":" + Quote(r.stores);
  if (r.buffer_offset != 0) s += ",\"buffer_offset\":" + std::to_string(r.buffer_offset);
  s += ",\"device\":" + Quote(r.device);
  s += ",\"seconds\":" + Number(r.seconds);
  s += ",\"gbps\":" + Number(r.gbps);
  s += ",\"copy_gbps\":" + Number(r.copy_gbps);
  s += ",\"frac_of_copy\":" + Number(r.frac_of_copy);
  s += std::string(",\"in_cache\":") + (r.in_cache ? "true" : "false");
  if (!r.peer.empty()) {
    s += ",\"peer\":" + Quote(r.peer);
    s += ",\"peer_gbps\":" + Number(r.peer_gbps);
  }
  s += ",\"git_commit\":" + Quote(r.git_commit);
  s += ",\"date\":" + Quote(r.date);
  s += "}";
  return s;
}

}  // namespace normserve::kernels::bench
