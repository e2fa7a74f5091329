// normserve-loadgen against the real server and the echo server: its counts
// agree with the server's /metrics, an open-loop run achieves its rate, and
// the reports are written.
#include <fstream>
#include <regex>
#include <sstream>

#include "gtest/gtest.h"
#include "shared_server.h"

namespace normserve::testing {
namespace {

std::string Loadgen() { return EnvOrEmpty("NORMSERVE_LOADGEN"); }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The number after "key": at the top level of the loadgen JSON (the first
// occurrence, which is the last step's figure).
double JsonNumber(const std::string& json, const std::string& key) {
  std::smatch m;
  const std::regex re("\"" + key + "\":(-?[0-9.]+)");
  if (!std::regex_search(json, m, re)) return -1;
  return std::stod(m[1]);
}

double NormalizeRequestsTotal() {
  auto body = HttpGet(Server()->metrics_address(), "/metrics");
  EXPECT_TRUE(body.ok()) << body.status();
  return body.ok() ? SumMetric(*body, "normserve_requests_total", {"method=\"Normalize\""}) : -1;
}

TEST(LoadgenE2eTest, CountsAgreeWithServerMetrics) {
  ASSERT_NE(Server(), nullptr);
  ASSERT_FALSE(Server()->metrics_address().empty());
  const double before = NormalizeRequestsTotal();
  const std::string json = ::testing::TempDir() + "/loadgen_counts.json";
  CommandResult r =
      RunCommand(Loadgen() + " --target=" + Server()->target() +
                 " --concurrency=4 --requests=300 --warmup=200ms --kind=rms_norm --dtype=bfloat16"
                 " --shape=2x1024 --connections=2 --json=" +
                 json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string report = ReadAll(json);
  const double requests = JsonNumber(report, "requests");
  const double warmup = JsonNumber(report, "warmup_requests");
  EXPECT_EQ(requests, 300) << report;
  EXPECT_EQ(JsonNumber(report, "ok"), 300) << report;
  EXPECT_NE(report.find("\"errors\":{}"), std::string::npos) << report;
  EXPECT_GT(JsonNumber(report, "compute_us_p50"), 0) << report;
  const double after = NormalizeRequestsTotal();
  EXPECT_EQ(after - before, requests + warmup) << "metrics moved by " << after - before;
}

TEST(LoadgenE2eTest, StreamModeCountsAgreeWithServerMetrics) {
  ASSERT_NE(Server(), nullptr);
  auto stream_total = [] {
    auto body = HttpGet(Server()->metrics_address(), "/metrics");
    return body.ok() ? SumMetric(*body, "normserve_requests_total", {"method=\"NormalizeStream\""}) : -1;
  };
  const double before = stream_total();
  const std::string json = ::testing::TempDir() + "/loadgen_stream.json";
  CommandResult r = RunCommand(Loadgen() + " --target=" + Server()->target() +
                               " --mode=stream --concurrency=8 --requests=200 --shape=4x256 --json=" + json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string report = ReadAll(json);
  EXPECT_EQ(JsonNumber(report, "ok"), 200) << report;
  EXPECT_EQ(stream_total() - before, 200 + JsonNumber(report, "warmup_requests"));
}

TEST(LoadgenE2eTest, OpenLoopAchievesAModestRate) {
  ASSERT_NE(Server(), nullptr);
  const std::string dir = ::testing::TempDir();
  CommandResult r = RunCommand(Loadgen() + " --target=" + Server()->target() +
                               " --rate=200 --duration=3s --warmup=0s --shape=1x1024 --json=" + dir +
                               "/open.json --csv=" + dir + "/open.csv --html=" + dir + "/open.html");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string report = ReadAll(dir + "/open.json");
  EXPECT_EQ(JsonNumber(report, "requested_rate"), 200);
  const double achieved = JsonNumber(report, "achieved_rps");
  EXPECT_NEAR(achieved, 200, 10) << report;
  EXPECT_NEAR(JsonNumber(report, "requests"), 600, 1) << report;
  EXPECT_EQ(report.find("\"fell_behind\":true"), std::string::npos) << report;
  EXPECT_EQ(r.output.find("WARNING"), std::string::npos) << r.output;
  const std::string html = ReadAll(dir + "/open.html");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_EQ(ReadAll(dir + "/open.csv").rfind("step,concurrency,requested_rate", 0), 0u);
}

TEST(LoadgenE2eTest, EchoServerGivesTheTransportFloor) {
  auto echo = ServerProcess::Start(EnvOrEmpty("NORMSERVE_ECHO"), {"--port=0"});
  ASSERT_TRUE(echo.ok()) << echo.status();
  const std::string json = ::testing::TempDir() + "/loadgen_echo.json";
  CommandResult r = RunCommand(Loadgen() + " --target=" + (*echo)->target() +
                               " --concurrency=1:4:x2 --requests=200 --shape=1x4096 --json=" + json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string report = ReadAll(json);
  EXPECT_NE(report.find("\"concurrency\":1,"), std::string::npos);
  EXPECT_NE(report.find("\"concurrency\":4,"), std::string::npos);
  EXPECT_EQ(JsonNumber(report, "ok"), 200) << report;
  EXPECT_NE(r.output.find("step 3/3: closed loop, concurrency 4, payload 8192 bytes"), std::string::npos)
      << r.output;
}

TEST(LoadgenE2eTest, UnreachableTargetCountsErrorsByCode) {
  const std::string json = ::testing::TempDir() + "/loadgen_down.json";
  CommandResult r =
      RunCommand(Loadgen() + " --target=127.0.0.1:1 --concurrency=2 --requests=20 --json=" + json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string report = ReadAll(json);
  EXPECT_NE(report.find("\"errors\":{\"UNAVAILABLE\":20}"), std::string::npos) << report;
  EXPECT_EQ(JsonNumber(report, "ok"), 0);
}

}  // namespace
}  // namespace normserve::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new normserve::testing::SharedServerEnvironment);
  return RUN_ALL_TESTS();
}
