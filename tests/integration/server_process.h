// ServerProcess: starts a server binary (normserve or normserve-echo-server)
// on a free loopback port for a test, and stops it at the end.
//
// The server is started with --port=0 (and whatever else the test passes);
// Start() reads its stdout until the start-up line
//   "... listening on HOST:PORT [metrics on HOST:MPORT] ..."
// and returns the addresses. The destructor sends SIGTERM, waits up to 10 s,
// then SIGKILLs. Not thread-safe; one owner.
#ifndef NORMSERVE_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define NORMSERVE_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace normserve::testing {

class ServerProcess {
 public:
  // Starts `binary` with `args`, waits for the start-up line (up to
  // `timeout`) and then for the health check to report SERVING.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(const std::string& binary,
                                                              const std::vector<std::string>& args,
                                                              absl::Duration timeout = absl::Seconds(20));
  ~ServerProcess();

  // "127.0.0.1:PORT".
  const std::string& target() const { return target_; }
  // "127.0.0.1:MPORT", empty when the server printed no metrics address.
  const std::string& metrics_address() const { return metrics_address_; }
  pid_t pid() const { return pid_; }

 private:
  ServerProcess() = default;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string target_;
  std::string metrics_address_;
};

// GET http://ADDRESS/PATH over a plain socket; returns the body. For
// /metrics in tests (no curl needed).
absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path);

// Sum of every sample of Prometheus counter `name` (text format) whose labels
// contain all of `label_filters` (each like `method="Normalize"`).
double SumMetric(const std::string& exposition, const std::string& name,
                 const std::vector<std::string>& label_filters = {});

// Runs a shell command, returning its exit status and its stdout+stderr.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::string& command);

}  // namespace normserve::testing

#endif  // NORMSERVE_TESTS_INTEGRATION_SERVER_PROCESS_H_
