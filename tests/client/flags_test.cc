#include "normserve/client/flags.h"

#include "gtest/gtest.h"
#include "normserve/client/loadgen.h"

namespace normserve::client {
namespace {

TEST(FlagSetTest, ParsesEveryKindOfFlag) {
  std::string target = "default";
  int64_t requests = 0;
  int connections = 1;
  double eps = 0;
  bool tls = false, gamma = true;
  absl::Duration duration = absl::Seconds(10);
  FlagSet flags;
  flags.AddString("target", &target, "");
  flags.AddInt("requests", &requests, "");
  flags.AddInt("connections", &connections, "");
  flags.AddDouble("eps", &eps, "");
  flags.AddBool("tls", &tls, "");
  flags.AddBool("gamma", &gamma, "");
  flags.AddDuration("duration", &duration, "");
  auto rest = flags.Parse({"normalize", "--target=dns:///a:1", "--requests", "12", "--connections=3",
                           "--eps=1e-6", "--tls", "--gamma=false", "--duration=250ms", "--", "--not-a-flag"});
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, (std::vector<std::string>{"normalize", "--not-a-flag"}));
  EXPECT_EQ(target, "dns:///a:1");
  EXPECT_EQ(requests, 12);
  EXPECT_EQ(connections, 3);
  EXPECT_FLOAT_EQ(eps, 1e-6);
  EXPECT_TRUE(tls);
  EXPECT_FALSE(gamma);
  EXPECT_EQ(duration, absl::Milliseconds(250));
  EXPECT_TRUE(flags.IsSet("eps"));
  EXPECT_FALSE(flags.IsSet("nothing"));
}

TEST(FlagSetTest, ReportsBadFlagsByName) {
  int64_t n = 0;
  bool b = false;
  absl::Duration d;
  FlagSet flags;
  flags.AddInt("requests", &n, "");
  flags.AddBool("tls", &b, "");
  flags.AddDuration("duration", &d, "");
  auto expect = [&](std::vector<std::string> args, const std::string& message) {
    auto r = flags.Parse(args);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), message);
  };
  expect({"--bogus=1"}, "unknown flag --bogus");
  expect({"--requests=ten"}, "flag --requests expects an integer, got 'ten'");
  expect({"--requests"}, "flag --requests needs a value");
  expect({"--tls=maybe"}, "flag --tls expects true or false, got 'maybe'");
  expect({"--duration=10"}, "flag --duration expects a duration like 10s or 250ms, got '10'");
  expect({"--duration=-1s"}, "flag --duration expects a duration like 10s or 250ms, got '-1s'");
}

TEST(SweepTest, ParsesValuesAndSweeps) {
  EXPECT_EQ(ParseSweep("8").value(), std::vector<double>{8});
  EXPECT_EQ(ParseSweep("1:64:x2").value(), (std::vector<double>{1, 2, 4, 8, 16, 32, 64}));
  EXPECT_EQ(ParseSweep("1:50:x2").value(), (std::vector<double>{1, 2, 4, 8, 16, 32}));
  EXPECT_EQ(ParseSweep("10:40:+10").value(), (std::vector<double>{10, 20, 30, 40}));
  EXPECT_EQ(ParseSweep("1k:4k:x2").value(), (std::vector<double>{1000, 2000, 4000}));
}

TEST(SweepTest, RejectsBadSweeps) {
  auto expect = [](const char* text, const std::string& message) {
    auto r = ParseSweep(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), message);
  };
  expect("0", "bad value '0': expected a positive number");
  expect("1:64", "bad sweep '1:64': expected N or START:END:xFACTOR or START:END:+STEP");
  expect("64:1:x2", "bad sweep '64:1:x2': end is below start");
  expect("1:64:*2", "bad sweep step '*2': expected xFACTOR or +STEP");
  expect("1:64:x1", "bad sweep step 'x1': the factor must exceed 1");
  expect("a:64:x2", "bad sweep start 'a': expected a positive number");
}

TEST(RateTest, ParsesRates) {
  EXPECT_DOUBLE_EQ(ParseRate("200").value(), 200);
  EXPECT_DOUBLE_EQ(ParseRate("200/s").value(), 200);
  EXPECT_DOUBLE_EQ(ParseRate("1.5k").value(), 1500);
  EXPECT_DOUBLE_EQ(ParseRate("2k/s").value(), 2000);
  auto bad = ParseRate("-5");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "bad rate '-5': expected a positive number");
  EXPECT_FALSE(ParseRate("fast").ok());
  EXPECT_FALSE(ParseRate("0/s").ok());
}

TEST(ShapeTest, ParsesShapes) {
  EXPECT_EQ(ParseShape("1x4096").value(), (std::vector<int64_t>{1, 4096}));
  EXPECT_EQ(ParseShape("8").value(), (std::vector<int64_t>{8}));
  EXPECT_EQ(ParseShape("2x3x4x5").value(), (std::vector<int64_t>{2, 3, 4, 5}));
  auto bad = ParseShape("1x0");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "bad shape '1x0': expected dims >= 1 joined by 'x', like 1x4096");
  EXPECT_EQ(ParseShape("1x1x1x1x1x1x1x1x1").status().message(),
            "bad shape '1x1x1x1x1x1x1x1x1': rank above 8");
  EXPECT_FALSE(ParseShape("").ok());
  EXPECT_FALSE(ParseShape("4096,1").ok());
}

}  // namespace
}  // namespace normserve::client
