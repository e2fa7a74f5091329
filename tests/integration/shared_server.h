// One real `normserve` per test binary, started on first use on a free
// loopback port and stopped when the binary exits. Paths of the binaries
// under test come from the environment (set by CTest):
//   NORMSERVE_BIN, NORMSERVE_CLI, NORMSERVE_LOADGEN, NORMSERVE_ECHO.
#ifndef NORMSERVE_TESTS_INTEGRATION_SHARED_SERVER_H_
#define NORMSERVE_TESTS_INTEGRATION_SHARED_SERVER_H_

#include <cstdlib>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "server_process.h"

namespace normserve::testing {

inline std::string EnvOrEmpty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

class SharedServerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    auto s = ServerProcess::Start(
        EnvOrEmpty("NORMSERVE_BIN"),
        {"--host=127.0.0.1", "--port=0", "--metrics_port=0", "--backend=cpu", "--shutdown_grace_s=1"});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  void TearDown() override { server_.reset(); }
  static ServerProcess* server() { return server_.get(); }

 private:
  static inline std::unique_ptr<ServerProcess> server_;
};

inline ServerProcess* Server() { return SharedServerEnvironment::server(); }

}  // namespace normserve::testing

#endif  // NORMSERVE_TESTS_INTEGRATION_SHARED_SERVER_H_
