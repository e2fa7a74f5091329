// Helpers shared by the hardening tests: where the server binary is, a
// client that does not retry (so every rejection is seen as it happened),
// the server's resident memory, and latency percentiles.
#ifndef NORMSERVE_TESTS_HARDENING_HARDENING_UTIL_H_
#define NORMSERVE_TESTS_HARDENING_HARDENING_UTIL_H_

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "normserve/client/client.h"
#include "server_process.h"

namespace normserve::testing {

// Path of `normserve`, from NORMSERVE_BIN (set by CTest).
inline std::string ServerBinary() {
  const char* v = std::getenv("NORMSERVE_BIN");
  return v != nullptr ? v : "";
}

// A client with gRPC retries off: an UNAVAILABLE is reported, not retried.
inline std::unique_ptr<client::Client> ConnectNoRetry(const std::string& target, int channel_id = 0) {
  client::ClientOptions options;
  options.target = target;
  options.retry_max_attempts = 1;
  options.channel_id = channel_id;
  auto created = client::Client::Create(options);
  EXPECT_TRUE(created.ok()) << created.status();
  return created.ok() ? std::move(*created) : nullptr;
}

// VmRSS of `pid` in KiB from /proc/PID/status; -1 when unreadable.
inline int64_t ResidentKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoll(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

// The q-quantile (0..1) of `values`, nearest rank; 0 for an empty list.
inline double Quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(rank, values.size() - 1)];
}

}  // namespace normserve::testing

#endif  // NORMSERVE_TESTS_HARDENING_HARDENING_UTIL_H_
