#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "normserve/client/loadgen.h"

namespace normserve::client {
namespace {

LoadReport SampleReport() {
  LoadReport report;
  report.payload_bytes = 8192;
  report.settings = {{"target", "127.0.0.1:5000"}, {"note", "a <tricky> & \"quoted\" value"}};
  std::mt19937_64 rng(1);
  std::lognormal_distribution<double> latency(std::log(300e3), 0.5);
  for (int c : {1, 2}) {
    StepResult s;
    s.concurrency = c;
    s.requests = 1000;
    s.ok = 998;
    s.errors["UNAVAILABLE"] = 2;
    s.seconds = 2;
    s.achieved_rps = 500;
    for (int i = 0; i < 998; ++i) {
      s.latency_ns.Record(static_cast<uint64_t>(latency(rng)));
      s.server_queue_ns.Record(20000);
      s.server_compute_ns.Record(50000);
    }
    s.timeline = {120, 130, 125, 127, 124, 126, 124, 122};
    report.steps.push_back(s);
  }
  StepResult open;
  open.requested_rate = 200;
  open.requests = 500;
  open.ok = 500;
  open.achieved_rps = 150;
  open.send_rate = 150;
  open.fell_behind = true;
  for (int i = 0; i < 500; ++i) open.latency_ns.Record(1000000 + i * 1000);
  open.timeline = {50, 50};
  report.steps.push_back(open);
  return report;
}

// A small well-formedness check: every tag closes in order, attributes are
// quoted, and only the five XML entities appear.
::testing::AssertionResult WellFormedXml(const std::string& doc) {
  std::vector<std::string> stack;
  size_t i = 0;
  while ((i = doc.find_first_of("<&", i)) != std::string::npos) {
    if (doc[i] == '&') {
      bool ok = false;
      for (const char* e : {"&lt;", "&gt;", "&amp;", "&quot;", "&apos;"}) {
        if (doc.compare(i, std::strlen(e), e) == 0) ok = true;
      }
      if (!ok) return ::testing::AssertionFailure() << "bare '&' at " << i;
      ++i;
      continue;
    }
    const size_t end = doc.find('>', i);
    if (end == std::string::npos) return ::testing::AssertionFailure() << "unclosed '<' at " << i;
    std::string tag = doc.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.rfind("!DOCTYPE", 0) == 0 || tag.rfind("!--", 0) == 0) continue;
    if (tag.find('<') != std::string::npos) return ::testing::AssertionFailure() << "'<' inside tag " << tag;
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) {
        return ::testing::AssertionFailure()
               << "</" << name << "> closes " << (stack.empty() ? "nothing" : stack.back());
      }
      stack.pop_back();
      continue;
    }
    const bool self_closing = tag.back() == '/';
    const std::string name = tag.substr(0, tag.find_first_of(" /\n"));
    // Attribute values must be quoted: every '=' is followed by '"'.
    for (size_t eq = tag.find('='); eq != std::string::npos; eq = tag.find('=', eq + 1)) {
      const size_t quotes_before = std::count(tag.begin(), tag.begin() + eq, '"');
      if (quotes_before % 2 == 0 && (eq + 1 >= tag.size() || tag[eq + 1] != '"')) {
        return ::testing::AssertionFailure() << "unquoted attribute in <" << tag << ">";
      }
    }
    if (!self_closing) stack.push_back(name);
  }
  if (!stack.empty()) return ::testing::AssertionFailure() << "<" << stack.back() << "> never closed";
  return ::testing::AssertionSuccess();
}

TEST(ReportTest, HtmlIsWellFormedSelfContainedAndHasCharts) {
  const std::string html = ReportHtml(SampleReport());
  EXPECT_TRUE(WellFormedXml(html));
  size_t svgs = 0;
  for (size_t i = html.find("<svg"); i != std::string::npos; i = html.find("<svg", i + 1)) ++svgs;
  EXPECT_EQ(svgs, 3u);
  EXPECT_NE(html.find("Latency by percentile"), std::string::npos);
  EXPECT_NE(html.find("Latency histogram"), std::string::npos);
  EXPECT_NE(html.find("Throughput over time"), std::string::npos);
  EXPECT_NE(html.find("a &lt;tricky&gt; &amp; &quot;quoted&quot; value"), std::string::npos);
  EXPECT_NE(html.find("fell behind"), std::string::npos);
  // No scripts and nothing fetched from the network.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/"));
  EXPECT_EQ(html.find("https://"), std::string::npos);
}

TEST(ReportTest, WellFormedCheckCatchesBrokenMarkup) {
  EXPECT_FALSE(WellFormedXml("<html><body></html>"));
  EXPECT_FALSE(WellFormedXml("<p>a & b</p>"));
  EXPECT_FALSE(WellFormedXml("<rect x=1/>"));
}

TEST(ReportTest, JsonHasTheDocumentedFields) {
  const std::string json = ReportJson(SampleReport());
  for (const char* key :
       {"\"requested_rate\":200.000", "\"achieved_rps\":150.000", "\"latency_us\":{\"p50\":", "\"p90\":",
        "\"p99\":", "\"p999\":", "\"max\":", "\"errors\":{\"UNAVAILABLE\":2}", "\"requests\":500",
        "\"server\":{\"queue_us_p50\":20.000", "\"compute_us_p50\":50.000", "\"steps\":[",
        "\"fell_behind\":true", "\"note\":\"a <tricky> & \\\"quoted\\\" value\""}) {
    EXPECT_NE(json.find(key), std::string::npos) << key;
  }
  // The top level is the last step: open loop at 200/s, latencies 1.0-1.5 ms.
  EXPECT_NE(json.find("{\"concurrency\":0,\"requested_rate\":200.000"), std::string::npos);
  EXPECT_NE(json.find("\"p50\":1249."), std::string::npos);
}

TEST(ReportTest, CsvHasOneRowPerStep) {
  const std::string csv = ReportCsv(SampleReport());
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);
  EXPECT_EQ(csv.rfind("step,concurrency,requested_rate,achieved_rps,requests,ok,errors,p50_us", 0), 0u);
  EXPECT_NE(csv.find("\n1,1,0.000,500.000,1000,998,2,"), std::string::npos);
  EXPECT_NE(csv.find("\n3,0,200.000,150.000,500,500,0,"), std::string::npos);
}

TEST(ReportTest, TextWarnsWhenTheGeneratorFellBehind) {
  const std::string text = ReportText(SampleReport());
  EXPECT_NE(text.find("step 1/3: closed loop, concurrency 1, payload 8192 bytes"), std::string::npos);
  EXPECT_NE(text.find("errors 2 (UNAVAILABLE 2)"), std::string::npos);
  EXPECT_NE(
      text.find("WARNING: the generator fell behind: achieved 150.0 req/s, sent 150.0/s of 200.0 requested"),
      std::string::npos);
  EXPECT_EQ(text.find("WARNING", text.find("WARNING") + 1), std::string::npos);
}

}  // namespace
}  // namespace normserve::client
