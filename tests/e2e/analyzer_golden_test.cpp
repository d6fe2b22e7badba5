// Golden outputs of every analyzer command and format over the histories the real collector
// recorded from samples/: each must stay byte-identical (tests/golden).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "files.hpp"
#include "histories.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "sockets.hpp"
#include "sockhist/query.hpp"
#include "sockhist/query/lifecycle.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

struct GoldenCase {
  std::string name;
  std::vector<std::string> args;
  bool fleet = false;      // the two-host database instead of web1's
  int exit_code = 0;       // 1 for a report that found something
  bool lifecycle = false;  // api1's lifecycle fixture instead of web1's
};

void PrintTo(const GoldenCase& c, std::ostream* out) {
  *out << c.name;
}

class Golden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(Golden, OutputMatches) {
  ::setenv("TZ", "UTC", 1);
  ::setenv("SOCKHIST_NOW", "2026-11-24T01:00:00Z", 1);
  const auto& c = GetParam();
  std::vector<std::string> args = c.args;
  const std::string& db = c.lifecycle ? lifecycle_db() : c.fleet ? fleet_db() : sample_db();
  args.insert(args.begin() + 1, {"--db", db});
  const auto r = run(SOCKHIST_ANALYZER_BIN, args);
  ASSERT_EQ(r.exit_code, c.exit_code) << r.err;
  EXPECT_EQ(r.err, "");
  const std::string out = replace_all(r.out, db, "<db>");
  const auto file = k_golden / (c.name + ".txt");
  if (std::getenv("SOCKHIST_UPDATE_GOLDEN") != nullptr) {
    write_text(file, out);
  }
  ASSERT_TRUE(std::filesystem::exists(file)) << file << " missing: run with SOCKHIST_UPDATE_GOLDEN=1 to create it";
  EXPECT_EQ(out, read_text(file)) << "golden " << file;
}

std::vector<GoldenCase> golden_cases() {
  std::vector<GoldenCase> cases;
  const std::vector<std::pair<std::string, std::vector<std::string>>> commands = {
      {"hosts", {"hosts"}},
      {"snapshots", {"snapshots"}},
      {"show_tanp", {"show", "--at", "2026-11-24 00:56:00", "-tanp"}},
      {"show_tulpen", {"show", "--at", "2026-11-24T00:56:00Z", "-tulpen"}},
      {"show_xa", {"show", "--snapshot", "2", "-xa"}},
      {"show_tao", {"show", "--at", "00:56:03", "-tao"}},
      {"show_ta_names", {"show", "--at", "00:56:03", "-ta"}},
      {"stats_at", {"stats", "--at", "2026-11-24 00:56:00"}},
      {"stats_range", {"stats", "--since", "2026-11-24 00:55", "--until", "2026-11-24 00:57"}},
      {"trend_states", {"trend", "--since", "00:55", "--until", "00:57", "--bucket", "1s"}},
      {"trend_counters",
       {"trend", "--counters", "Tcp.ActiveOpens,Tcp.CurrEstab", "--since", "00:55:50", "--until", "00:56:10",
        "--bucket", "2s"}},
      {"trend_by_process",
       {"trend", "--state", "ESTABLISHED", "--by", "process", "--since", "00:55:50", "--until", "00:56:10", "--bucket",
        "2s"}},
      {"explain", {"explain"}},
      {"explain_close_wait", {"explain", "CLOSE_WAIT"}},
  };
  for (const auto& [name, args] : commands) {
    cases.push_back({name, args});
    if (name != "show_tao" && name != "show_ta_names" && name != "explain_close_wait") {
      for (const char* format : {"json", "csv"}) {
        auto with = args;
        with.push_back("--format");
        with.push_back(format);
        cases.push_back({name + "_" + format, with});
      }
    }
  }
  // Several hosts: every host listed; a command about one host names it.
  for (const char* format : {"table", "json", "csv"}) {
    cases.push_back({std::string("fleet_hosts_") + format, {"hosts", "--format", format}, true});
  }
  cases.push_back({"fleet_show_web2", {"show", "--host", "web2", "-tan"}, true});
  // Lifecycle reports find something (exit 1): the sample's CLOSE_WAIT sockets, by socket and by owner.
  for (const char* format : {"table", "json", "csv"}) {
    for (const bool by_process : {false, true}) {
      std::vector<std::string> args = {"close-wait", "--since", "00:55", "--min-age", "0", "--format", format};
      if (by_process) {
        args.insert(args.end(), {"--by", "process"});
      }
      cases.push_back({std::string(by_process ? "close_wait_by_process_" : "close_wait_") + format, args, false, 1});
    }
  }
  cases.push_back({"fleet_snapshots_web2_json", {"snapshots", "--host", "web2", "--format", "json"}, true});
  // diff: two hosts at (nearly) one moment, the same captures (no difference, exit 0) and not;
  // one host at two moments, and across its reboot.
  cases.push_back({"diff_hosts_identical", {"diff", "--host", "web1", "--host", "web2", "--at", "00:55:59"}, true, 0});
  for (const char* format : {"table", "json", "csv"}) {
    cases.push_back(
        {std::string("diff_hosts_") + format,
         {"diff", "--host", "web1", "--at", "00:56:03", "--host", "web2", "--at", "00:55:59", "--format", format},
         true,
         1});
    cases.push_back({std::string("diff_moments_") + format,
                     {"diff", "--snapshot", "1", "--snapshot", "3", "--top", "0", "--format", format},
                     true,
                     1});
  }
  cases.push_back({"diff_across_reboot", {"diff", "--snapshot", "3", "--snapshot", "4"}, true, 1});
  // api1's lifecycle fixture (samples/history-lifecycle): every lifecycle report in every format.
  const std::vector<std::string> range = {"--since", "02:00", "--until", "02:03"};
  const auto lifecycle = [&](const std::string& name, std::vector<std::string> args, int code, bool formats = true,
                             bool with_range = true) {
    if (with_range) {
      args.insert(args.begin() + 1, range.begin(), range.end());
    }
    cases.push_back({"lifecycle_" + name, args, false, code, true});
    if (formats) {
      for (const char* format : {"json", "csv"}) {
        auto with = args;
        with.insert(with.end(), {"--format", format});
        cases.push_back({"lifecycle_" + name + "_" + format, with, false, code, true});
      }
    }
  };
  lifecycle("snapshots", {"snapshots"}, 0, true, false);
  lifecycle("show_tanpo", {"show", "--at", "02:00:45", "-tanpo"}, 0, true, false);
  lifecycle("stats_across_reboot", {"stats"}, 0);
  lifecycle("trend_close_wait_by_process", {"trend", "--state", "CLOSE_WAIT", "--by", "process", "--bucket", "30s"}, 0);
  lifecycle("explain_close_wait", {"explain", "CLOSE_WAIT"}, 0, false, false);
  lifecycle("close_wait", {"close-wait", "--min-age", "0"}, 1);
  lifecycle("close_wait_by_process", {"close-wait", "--min-age", "0", "--by", "process"}, 1);
  lifecycle("time_wait", {"time-wait", "--bucket", "15s"}, 1);
  lifecycle("time_wait_by_remote", {"time-wait", "--by", "remote"}, 1);
  lifecycle("time_wait_by_local", {"time-wait", "--by", "local"}, 1);
  lifecycle("time_wait_by_socket", {"time-wait", "--by", "socket"}, 1);
  lifecycle("time_wait_anomalies", {"time-wait", "--by", "socket", "--anomalies"}, 1, false);
  lifecycle("time_wait_by_time", {"time-wait", "--by", "time", "--bucket", "15s"}, 1);
  lifecycle("time_wait_ports", {"time-wait", "--ports"}, 1);
  lifecycle("time_wait_before_reboot_no_anomaly", {"time-wait", "--since", "02:00:00", "--until", "02:00:20"}, 0, false,
            false);
  const std::vector<std::string> every_threshold = {
      "check", "--close-wait-max-age", "1m", "--close-wait-max-per-process", "5", "--time-wait-max",
      "30",    "--port-pressure-max",  "80", "--listen-overflows",           "0", "--time-wait-overflows",
      "0",     "--syn-recv-max",       "3"};
  auto window = every_threshold;
  window.insert(window.begin() + 1, {"--since", "02:00", "--until", "02:03"});
  lifecycle("check_window", window, 1, true, false);
  auto newest = every_threshold;
  newest.push_back("--verbose");
  lifecycle("check_newest_verbose", newest, 1, true, false);
  lifecycle("check_healthy_verbose", {"check", "--time-wait-max", "100", "--close-wait-max-age", "10m", "--verbose"}, 0,
            false, false);
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Analyzer, Golden, ::testing::ValuesIn(golden_cases()),
                         [](const auto& param_info) { return param_info.param.name; });

}  // namespace
