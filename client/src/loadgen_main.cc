// normserve-loadgen: honest load tests of a normserve (or echo) server.
//
//   normserve-loadgen --target=127.0.0.1:50051 --concurrency=1:64:x2 --duration=10s
//   normserve-loadgen --target=... --rate=2000 --arrival=poisson --duration=30s --json=out.json
//
// Closed loop (--concurrency, a value or a sweep) or open loop (--rate, a
// value or a sweep; latency from the intended send time). The payload is
// generated once from --seed. A progress line is shown only when stdout is a
// terminal. Exit status: 0 on a completed run (failed requests are counted,
// not fatal), 1 when the run could not start, 2 on bad usage.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client_flags.h"
#include "normserve/client/flags.h"
#include "normserve/client/loadgen.h"
#include "normserve/client/tensor_util.h"
#include "status_macros.h"
#include "token_file.h"

namespace normserve::client {
namespace {

struct PayloadFlags {
  std::string kind = "layer_norm";
  std::string dtype = "bfloat16";
  std::string output_dtype;
  std::string shape = "1x4096";
  bool gamma = true;
  bool beta = true;
  bool residual = false;
  bool use_batch_stats = false;
  int num_groups = 1;
  std::string backend = "auto";
};

std::vector<float> RandomValues(std::mt19937_64* rng, int64_t n, float mean, float stddev, bool positive) {
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = positive ? std::abs(dist(*rng)) + 0.1f : dist(*rng);
  return v;
}

absl::StatusOr<v1::NormalizeRequest> BuildRequest(const PayloadFlags& f, uint64_t seed) {
  v1::NormalizeRequest req;
  ASSIGN_OR_RETURN(v1::NormKind kind, ParseWireKind(f.kind));
  ASSIGN_OR_RETURN(v1::DType dtype, ParseWireDType(f.dtype));
  ASSIGN_OR_RETURN(std::vector<int64_t> shape, ParseShape(f.shape));
  req.set_kind(kind);
  if (!f.output_dtype.empty()) {
    ASSIGN_OR_RETURN(v1::DType out, ParseWireDType(f.output_dtype));
    req.set_output_dtype(out);
  }
  if (f.backend == "cpu") {
    req.set_backend(v1::BACKEND_CPU);
  } else if (f.backend == "cuda") {
    req.set_backend(v1::BACKEND_CUDA);
  } else if (f.backend != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("--backend '", f.backend, "': expected auto, cpu or cuda"));
  }
  std::mt19937_64 rng(seed);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  req.set_allocated_input(new v1::Tensor(MakeTensor(RandomValues(&rng, n, 0.5f, 2.0f, false), shape, dtype)));
  const bool per_channel = kind == v1::BATCH_NORM || kind == v1::GROUP_NORM || kind == v1::INSTANCE_NORM;
  if (per_channel && shape.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat("--shape ", f.shape, ": ", f.kind, " needs [N, C, ...]"));
  }
  const std::vector<int64_t> param_shape = {per_channel ? shape[1] : shape.back()};
  if (f.gamma)
    *req.mutable_gamma() =
        MakeTensor(RandomValues(&rng, param_shape[0], 1.0f, 0.2f, false), param_shape, dtype);
  if (f.beta)
    *req.mutable_beta() =
        MakeTensor(RandomValues(&rng, param_shape[0], 0.0f, 0.2f, false), param_shape, dtype);
  if (f.residual)
    *req.mutable_residual() = MakeTensor(RandomValues(&rng, n, 0.0f, 1.0f, false), shape, dtype);
  if (kind == v1::BATCH_NORM) {
    req.set_use_batch_stats(f.use_batch_stats);
    if (!f.use_batch_stats) {
      *req.mutable_running_mean() =
          MakeTensor(RandomValues(&rng, shape[1], 0.5f, 0.5f, false), param_shape, v1::FLOAT32);
      *req.mutable_running_var() =
          MakeTensor(RandomValues(&rng, shape[1], 1.0f, 0.5f, true), param_shape, v1::FLOAT32);
    }
  }
  if (kind == v1::GROUP_NORM) req.set_num_groups(f.num_groups);
  return req;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write '", path, "'"));
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  LoadgenOptions o;
  // One attempt per request: a load test must see every UNAVAILABLE.
  o.client.retry_max_attempts = 1;
  std::string token_file, concurrency = "1", rate, arrival = "constant", mode = "unary";
  std::string json_path, csv_path, html_path;
  int64_t seed = 1;
  bool help = false;
  PayloadFlags pf;
  FlagSet flags;
  AddClientFlags(&flags, &o.client, &token_file);
  flags.AddInt("connections", &o.connections, "separate channels (TCP connections)");
  flags.AddString("concurrency", &concurrency, "closed loop: requests in flight, N or a sweep like 1:64:x2");
  flags.AddString("rate", &rate, "open loop: requests per second, R or a sweep like 100:800:x2");
  flags.AddString("arrival", &arrival, "open-loop arrivals: constant or poisson");
  flags.AddDuration("duration", &o.duration, "measured length of each step");
  flags.AddInt("requests", &o.requests, "measured requests per step instead of --duration");
  flags.AddDuration("warmup", &o.warmup, "unmeasured warm-up before each step");
  flags.AddString("mode", &mode, "unary or stream (one NormalizeStream per connection)");
  flags.AddString("kind", &pf.kind, "normalization kind");
  flags.AddString("dtype", &pf.dtype, "input dtype");
  flags.AddString("output_dtype", &pf.output_dtype, "output dtype (default: the input's)");
  flags.AddString("shape", &pf.shape, "input shape, e.g. 1x4096 or 8x64x32x32");
  flags.AddBool("gamma", &pf.gamma, "send a gamma");
  flags.AddBool("beta", &pf.beta, "send a beta");
  flags.AddBool("residual", &pf.residual, "send a residual (fused add)");
  flags.AddBool("use_batch_stats", &pf.use_batch_stats, "batch_norm with batch statistics");
  flags.AddInt("num_groups", &pf.num_groups, "group_norm groups");
  flags.AddString("backend", &pf.backend, "auto, cpu or cuda");
  flags.AddInt("seed", &seed, "seed of the payload and of Poisson arrivals");
  flags.AddString("json", &json_path, "write the JSON report here");
  flags.AddString("csv", &csv_path, "write one CSV row per step here");
  flags.AddString("html", &html_path, "write a self-contained HTML report here");
  flags.AddBool("help", &help, "print the flags and exit");
  auto positional = flags.Parse(argc, argv);
  if (!positional.ok() || (!positional->empty())) {
    std::fprintf(stderr, "%s\n",
                 positional.ok() ? absl::StrCat("unexpected argument '", (*positional)[0], "'").c_str()
                                 : std::string(positional.status().message()).c_str());
    return 2;
  }
  if (help) {
    std::printf("normserve-loadgen flags:\n%s", flags.Usage().c_str());
    return 0;
  }
  auto usage_error = [](const absl::Status& s) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 2;
  };
  if (flags.IsSet("rate") && flags.IsSet("concurrency")) {
    return usage_error(
        absl::InvalidArgumentError("--rate (open loop) and --concurrency (closed loop) exclude each other"));
  }
  if (!rate.empty()) {
    if (rate.find(':') == std::string::npos) {
      auto r = ParseRate(rate);
      if (!r.ok()) return usage_error(r.status());
      o.rates = {*r};
    } else {
      auto s = ParseSweep(rate);
      if (!s.ok()) return usage_error(s.status());
      o.rates = *s;
    }
  } else {
    auto s = ParseSweep(concurrency);
    if (!s.ok()) return usage_error(s.status());
    o.concurrency.clear();
    for (double c : *s) o.concurrency.push_back(static_cast<int>(c));
  }
  if (arrival == "poisson") {
    o.arrival = ArrivalProcess::kPoisson;
  } else if (arrival != "constant") {
    return usage_error(
        absl::InvalidArgumentError(absl::StrCat("--arrival '", arrival, "': expected constant or poisson")));
  }
  if (mode == "stream") {
    o.mode = LoadMode::kStream;
  } else if (mode != "unary") {
    return usage_error(
        absl::InvalidArgumentError(absl::StrCat("--mode '", mode, "': expected unary or stream")));
  }
  auto request = BuildRequest(pf, static_cast<uint64_t>(seed));
  if (!request.ok()) return usage_error(request.status());
  o.request = *std::move(request);
  o.seed = static_cast<uint64_t>(seed);
  if (absl::Status s = LoadTokenFile(token_file, &o.client.bearer_token); !s.ok()) return usage_error(s);
  o.progress = isatty(STDOUT_FILENO) == 1;
  o.settings = {
      {"target", o.client.target},
      {"connections", absl::StrCat(o.connections)},
      {"loop", o.rates.empty() ? "closed" : "open"},
      {"concurrency", o.rates.empty() ? concurrency : ""},
      {"rate", rate},
      {"arrival", o.rates.empty() ? "" : arrival},
      {"duration", o.requests > 0 ? absl::StrCat(o.requests, " requests") : absl::FormatDuration(o.duration)},
      {"warmup", absl::FormatDuration(o.warmup)},
      {"mode", mode},
      {"kind", pf.kind},
      {"dtype", pf.dtype},
      {"shape", pf.shape},
      {"gamma", pf.gamma ? "yes" : "no"},
      {"beta", pf.beta ? "yes" : "no"},
      {"residual", pf.residual ? "yes" : "no"},
      {"backend", pf.backend},
      {"tls", o.client.use_tls || !o.client.tls_root_ca_file.empty() ? "yes" : "no"},
      {"seed", absl::StrCat(seed)},
  };
  auto report = RunLoad(o);
  if (!report.ok()) {
    std::fprintf(stderr, "error: %s: %s\n", absl::StatusCodeToString(report.status().code()).c_str(),
                 std::string(report.status().message()).c_str());
    return 1;
  }
  std::fputs(ReportText(*report).c_str(), stdout);
  for (const auto& [path, text] :
       {std::pair{json_path, ReportJson(*report)}, std::pair{csv_path, ReportCsv(*report)},
        std::pair{html_path, ReportHtml(*report)}}) {
    if (path.empty()) continue;
    if (absl::Status s = WriteFile(path, text); !s.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace normserve::client

int main(int argc, char** argv) { return normserve::client::Main(argc, argv); }
