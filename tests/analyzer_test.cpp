// The analyzer end to end: golden outputs of every command and format over a history the real
// collector recorded from samples/, show and stats against real netstat on a live population,
// counters across a reboot, and reading while a collector writes.
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
#include "netns.hpp"
#include "process.hpp"
#include "sockets.hpp"
#include "sockhist/query.hpp"
#include "sockhist/lifecycle.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

const std::filesystem::path k_golden = SOCKHIST_GOLDEN_DIR;

// A database the real collector built from the four sample captures (the fourth after a reboot).
std::filesystem::path g_sample_dir;

// The samples, recorded by the collector into `db` under `host`.
void collect_samples(const std::string& db, const std::string& host, const std::vector<std::string>& samples,
                     const std::string& history = "history-busy") {
  for (const auto& sample : samples) {
    const auto root = samples_dir() / history / sample;
    const auto at = read_text(root / "captured_at").substr(0, 24);
    const auto r =
        run(SOCKHIST_COLLECT_BIN, {"--db", db, "--proc-root", (root / "proc").string(), "--host", host, "--at", at});
    if (r.exit_code != 0) {
      throw std::runtime_error("collector failed on sample " + sample + ": " + r.err);
    }
  }
}

// ctest runs each test in its own process, several at once: each builds its own copies.
const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    const auto d = scratch_dir("analyzer-sample-" + std::to_string(::getpid()));
    g_sample_dir = d;
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(g_sample_dir, ignored);
    });
    return d;
  }();
  return dir;
}

const std::string& sample_db() {
  static const std::string path = [] {
    const std::string db = (scratch() / "history.db").string();
    collect_samples(db, "web1", {"00", "01", "02", "03"});
    return db;
  }();
  return path;
}

// Two hosts: web1's whole sample history, and web2 with the first two captures.
const std::string& fleet_db() {
  static const std::string path = [] {
    const std::string db = (scratch() / "fleet.db").string();
    collect_samples(db, "web1", {"00", "01", "02", "03"});
    collect_samples(db, "web2", {"00", "01"});
    return db;
  }();
  return path;
}

// api1: the twelve made-up captures of samples/history-lifecycle, with a reboot before 08.
const std::string& lifecycle_db() {
  static const std::string path = [] {
    const std::string db = (scratch() / "lifecycle.db").string();
    std::vector<std::string> captures;
    for (int i = 0; i < 12; ++i) {
      captures.push_back(fmt::format("{:02d}", i));
    }
    collect_samples(db, "api1", captures, "history-lifecycle");
    return db;
  }();
  return path;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (auto pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size())) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

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

TEST(Analyzer, UsageErrorsExitTwoWithOneLineNamingTheOption) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{"show", "--at", "yesterday"}, "--at 'yesterday'"},
      {{"show", "--snapshot", "999"}, "--snapshot 999"},
      {{"snapshots", "--host", "web9"}, "--host web9"},
      {{"trend", "--bucket", "soon"}, "--bucket 'soon'"},
      {{"trend", "--counters", "Tcp.NoSuchThing"}, "--counters Tcp.NoSuchThing"},
      {{"stats", "--at", "2020-01-01 00:00"}, "--at 2020-01-01 00:00"},
      {{"explain", "SLEEPING"}, "explain SLEEPING"},
  };
  for (const auto& c : cases) {
    auto args = c.args;
    args.insert(args.begin() + 1, {"--db", sample_db()});
    const auto r = run(SOCKHIST_ANALYZER_BIN, args);
    EXPECT_EQ(r.exit_code, 2) << c.names;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(c.names), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
  // A wrong option prints the subcommand's help after the one-line error.
  const auto r = run(SOCKHIST_ANALYZER_BIN, {"show", "--db", sample_db(), "--frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(r.err.starts_with("sockhist: error: The following argument was not expected: --frobnicate")) << r.err;
  EXPECT_NE(r.err.find("--numeric"), std::string::npos) << r.err;
  const auto missing = run(SOCKHIST_ANALYZER_BIN, {"hosts", "--db", "/nonexistent/x.db"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("/nonexistent/x.db"), std::string::npos);
}

TEST(Analyzer, SeveralHostsNeedHostAndTheErrorListsThem) {
  for (const char* command : {"show", "snapshots", "stats", "trend"}) {
    const auto r = run(SOCKHIST_ANALYZER_BIN, {command, "--db", fleet_db()});
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_EQ(r.out, "") << command;
    const auto first_line = r.err.substr(0, r.err.find('\n') + 1);
    EXPECT_EQ(first_line.size(), r.err.size()) << command << ": more than one line: " << r.err;
    for (const char* needle : {"--host", "web1", "web2"}) {
      EXPECT_NE(r.err.find(needle), std::string::npos) << command << ": " << r.err;
    }
  }
}

TEST(Analyzer, CommonOptionsMayComeBeforeTheSubcommand) {
  ::setenv("SOCKHIST_NOW", "2026-11-24T01:00:00Z", 1);
  const auto after = run(SOCKHIST_ANALYZER_BIN, {"snapshots", "--db", fleet_db(), "--host", "web2", "--utc"});
  const auto before = run(SOCKHIST_ANALYZER_BIN, {"--db", fleet_db(), "--host=web2", "--utc", "snapshots"});
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_EQ(before.exit_code, 0) << before.err;
  EXPECT_EQ(before.out, after.out);
  // An option the subcommand does not know is still an error, wherever it stands.
  const auto wrong = run(SOCKHIST_ANALYZER_BIN, {"--db", fleet_db(), "--frobnicate", "snapshots"});
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_NE(wrong.err.find("--frobnicate"), std::string::npos) << wrong.err;
}

TEST(Analyzer, ReadOnlyCopyIsReadWithoutWriting) {
  const auto dir = scratch_dir("analyzer-readonly");
  const auto copy = dir / "copy.db";
  std::filesystem::copy_file(sample_db(), copy);
  std::filesystem::permissions(copy, std::filesystem::perms::owner_read | std::filesystem::perms::group_read);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  const auto before = read_text(copy);
  const auto r = run(SOCKHIST_ANALYZER_BIN, {"snapshots", "--db", copy.string(), "--format", "csv"});
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 5);  // header and four snapshots
  EXPECT_EQ(read_text(copy), before);
}

// Counters across a reboot: no delta spans it, none goes negative, rates use the monotonic clock.
TEST(Analyzer, CountersAcrossARebootGiveNoNegativeOrGiantRate) {
  auto db = SQLite::Database(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  store::initialize(db);
  store::SnapshotWriter writer(db);
  const auto snapshot = [&](std::int64_t time_ms, const std::string& boot, std::int64_t uptime_ms, std::int64_t in_segs,
                            std::int64_t estab) {
    model::Capture c;
    c.host = "web1";
    c.hostname = "web1";
    c.boot_id = boot;
    c.uptime_ms = uptime_ms;
    c.time_ms = time_ms;
    c.netns_inode = 4026531840;
    c.counters = {{"Tcp", "InSegs", in_segs, false}, {"Tcp", "CurrEstab", estab, true}};
    writer.write(c);
  };
  const std::int64_t t0 = 1'800'000'000'000;
  snapshot(t0, "boot-a", 100'000, 1'000, 5);
  snapshot(t0 + 10'000, "boot-a", 110'000, 2'000, 7);  // +1000 in 10 s
  snapshot(t0 + 20'000, "boot-b", 5'000, 50, 1);       // rebooted: counters restart
  snapshot(t0 + 30'000, "boot-b", 15'000, 550, 2);     // +500 in 10 s
  snapshot(t0 + 40'000, "boot-b", 25'000, 100, 2);     // went down without a reboot: a reset
  snapshot(t0 + 50'000, "boot-b", 35'000, 300, 3);     // +200 in 10 s
  const auto scope = query::resolve_scope(db, std::nullopt, std::nullopt);
  const auto range = query::counter_range(db, scope, t0, t0 + 60'000);
  ASSERT_EQ(range.snapshots.size(), 6U);
  EXPECT_EQ(range.boots, 2);
  EXPECT_EQ(range.covered_ms, 40'000);  // the reboot pair covers nothing
  std::map<std::string, query::CounterChange> by_name;
  for (const auto& c : range.counters) {
    by_name[c.name] = c;
  }
  EXPECT_EQ(by_name["InSegs"].delta, 1'700);
  EXPECT_EQ(by_name["InSegs"].resets, 1);
  ASSERT_TRUE(by_name["InSegs"].rate_per_s);
  EXPECT_DOUBLE_EQ(*by_name["InSegs"].rate_per_s, 1'700.0 / 40.0);
  EXPECT_FALSE(by_name["CurrEstab"].rate_per_s);  // a gauge: never a rate
  EXPECT_EQ(by_name["CurrEstab"].min, 1);
  EXPECT_EQ(by_name["CurrEstab"].max, 7);
  const auto trend = query::trend_counters(db, scope, t0, t0 + 59'999, 10'000, {"Tcp.InSegs", "Tcp.CurrEstab"});
  ASSERT_EQ(trend.buckets.size(), 6U);
  const std::vector<std::optional<double>> expected = {std::nullopt, 100.0, std::nullopt, 50.0, std::nullopt, 20.0};
  for (std::size_t i = 0; i < trend.buckets.size(); ++i) {
    EXPECT_EQ(trend.buckets[i].values[0], expected[i]) << "bucket " << i;
    EXPECT_FALSE(trend.buckets[i].gap) << "bucket " << i;
  }
  EXPECT_TRUE(trend.buckets[2].reboot);
  EXPECT_EQ(trend.buckets[1].values[1], 7.0);
}

TEST(Analyzer, CloseWaitBoundsEntryFollowsOwnerChangesAndFitsTheLeak) {
  auto db = SQLite::Database(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  store::initialize(db);
  store::SnapshotWriter writer(db);
  const auto tcp = [](model::SockState state, std::uint16_t local_port, std::uint16_t remote_port, std::uint64_t inode,
                      std::int32_t pid) {
    model::Socket s;
    s.proto = model::Proto::tcp;
    s.family = 4;
    s.state = state;
    s.local_addr = "10.0.0.1";
    s.local_port = local_port;
    s.remote_addr = local_port == 8080 && state == model::SockState::listen ? "0.0.0.0" : "10.0.0.2";
    s.remote_port = remote_port;
    s.inode = inode;
    s.pid = pid;
    return s;
  };
  const std::int64_t t0 = 1'800'000'000'000;
  const std::int64_t minute = 60'000;
  // Snapshot i at t0 + i minutes. The server (pid 10, port 8080) has a connection that goes
  // ESTABLISHED -> CLOSE_WAIT between snapshots 1 and 2, is handed to pid 11 at snapshot 4 (fd
  // passing: a new owner, still CLOSE_WAIT) and is closed after snapshot 5. The poller (pid 20)
  // leaks one CLOSE_WAIT to a peer every two minutes from snapshot 0 on and never closes any.
  for (int i = 0; i <= 8; ++i) {
    model::Capture c;
    c.host = "web1";
    c.hostname = "web1";
    c.boot_id = "boot-a";
    c.time_ms = t0 + i * minute;
    c.netns_inode = 4026531840;
    c.owners = model::OwnerScan::complete;
    c.sockets.push_back(tcp(model::SockState::listen, 8080, 0, 100, 10));
    if (i <= 1) {
      c.sockets.push_back(tcp(model::SockState::established, 8080, 50000, 101, 10));
    } else if (i <= 5) {
      c.sockets.push_back(tcp(model::SockState::close_wait, 8080, 50000, 101, i < 4 ? 10 : 11));
    }
    for (int k = 0; k <= i / 2; ++k) {
      c.sockets.push_back(tcp(model::SockState::close_wait, static_cast<std::uint16_t>(40000 + k), 443,
                              static_cast<std::uint64_t>(200 + k), 20));
    }
    for (const int pid : {10, 11, 20}) {
      c.processes.push_back(
          {pid, static_cast<std::uint64_t>(pid) * 100, pid == 20 ? "poller" : "server", std::nullopt, 0, std::nullopt});
    }
    writer.write(c);
  }
  const auto scope = query::resolve_scope(db, std::nullopt, std::nullopt);
  const auto snapshots = query::list_snapshots(db, scope, t0, t0 + 8 * minute);
  const auto sockets = query::close_wait_sockets(db, scope, snapshots);
  ASSERT_EQ(sockets.size(), 6U);  // the server's connection (one socket, two owners) and five leaks
  const auto served = std::find_if(sockets.begin(), sockets.end(), [](const auto& s) { return s.local_port == 8080; });
  ASSERT_NE(served, sockets.end());
  EXPECT_EQ(served->came_from, "ESTABLISHED");
  EXPECT_EQ(served->entered_after_ms, t0 + 1 * minute);  // last seen ESTABLISHED
  EXPECT_EQ(served->entered_by_ms, t0 + 2 * minute);     // first seen in CLOSE_WAIT
  EXPECT_EQ(served->last_seen_ms, t0 + 5 * minute);
  EXPECT_EQ(served->gone_by_ms, t0 + 6 * minute);
  EXPECT_FALSE(served->still_there);
  EXPECT_EQ(served->pid, 11);  // the newest owner
  EXPECT_TRUE(served->serves_listener);
  EXPECT_EQ(served->min_age_ms(), 3 * minute);
  EXPECT_EQ(served->max_age_ms(), 4 * minute);
  // The first leak was there when the history began: no lower bound on its entry.
  const auto first_leak =
      std::find_if(sockets.begin(), sockets.end(), [](const auto& s) { return s.local_port == 40000; });
  ASSERT_NE(first_leak, sockets.end());
  EXPECT_FALSE(first_leak->entered_after_ms);
  EXPECT_TRUE(first_leak->still_there);
  EXPECT_EQ(first_leak->min_age_ms(), 8 * minute);
  // Still there first, the longest stay first.
  EXPECT_EQ(sockets.front().local_port, 40000);
  EXPECT_EQ(sockets.back().local_port, 8080);
  const auto groups = query::close_wait_by_process(snapshots, sockets);
  ASSERT_EQ(groups.size(), 2U);
  EXPECT_EQ(groups[0].pid, 20);
  EXPECT_EQ(groups[0].now, 5);
  EXPECT_EQ(groups[0].seen, 5);
  ASSERT_TRUE(groups[0].per_hour);
  // Counts 1,1,2,2,3,3,4,4,5 over minutes 0..8: the least-squares slope is 0.5 a minute.
  EXPECT_NEAR(*groups[0].per_hour, 30.0, 1e-9);
  EXPECT_EQ(groups[0].involved, "peer 10.0.0.2:443");
  EXPECT_EQ(groups[1].pid, 11);
  EXPECT_EQ(groups[1].now, 0);
  EXPECT_EQ(groups[1].involved, "serves :8080");
}

// check: silent and 0 when healthy; each threshold alone finds its story in the lifecycle fixture
// with one line naming it and exit 1; errors exit 2 with one line.
TEST(Analyzer, CheckExitsZeroHealthyOneForEachFindingTwoOnErrors) {
  ::setenv("SOCKHIST_NOW", "2026-11-24T02:05:00Z", 1);
  const auto check = [](std::vector<std::string> args) {
    args.insert(args.begin(), {"check", "--db", lifecycle_db()});
    return run(SOCKHIST_ANALYZER_BIN, args);
  };
  const auto healthy = check({"--time-wait-max", "100", "--close-wait-max-per-process", "10", "--syn-recv-max", "10",
                              "--port-pressure-max", "50", "--time-wait-overflows", "0"});
  EXPECT_EQ(healthy.exit_code, 0) << healthy.err;
  EXPECT_EQ(healthy.out, "");  // quiet under cron
  EXPECT_EQ(healthy.err, "");
  const auto healthy_json = check({"--time-wait-max", "100", "--format", "json"});
  EXPECT_EQ(healthy_json.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(healthy_json.out)["healthy"], true);

  struct Finding {
    std::vector<std::string> args;
    std::string line;  // the start of the one line it prints
  };
  const std::vector<Finding> findings = {
      // The newest snapshot: the new api's three CLOSE_WAIT, the oldest seen for 30 s.
      {{"--close-wait-max-age", "20s"}, "api1: close-wait-max-age: 2300/api holds 1 CLOSE_WAIT socket"},
      {{"--close-wait-max-per-process", "2"}, "api1: close-wait-max-per-process: 2300/api holds 3 CLOSE_WAIT"},
      {{"--time-wait-max", "8"}, "api1: time-wait-max: 9 TIME_WAIT sockets"},
      {{"--syn-recv-max", "1"}, "api1: syn-recv-max: 2 SYN_RECV sockets"},
      {{"--port-pressure-max", "10"}, "api1: port-pressure-max: 10.0.0.50:443 from 10.0.0.1 used 19.0 %"},
      {{"--listen-overflows", "0"}, "api1: listen-overflows: TcpExt.ListenOverflows grew by 3 over 15s"},
      // Over a window: the first boot's leak, TIME_WAIT peak, pressure and the overflow.
      {{"--since", "02:00", "--close-wait-max-age", "1m"}, "api1: close-wait-max-age: 2100/api held 4 CLOSE_WAIT"},
      {{"--since", "02:00", "--time-wait-max", "34"}, "api1: time-wait-max: 35 TIME_WAIT sockets at most"},
      {{"--since", "02:00", "--port-pressure-max", "80"},
       "api1: port-pressure-max: 10.0.0.50:443 from 10.0.0.1 used 82.0 %"},
      {{"--since", "02:00", "--time-wait-overflows", "5"},
       "api1: time-wait-overflows: TcpExt.TCPTimeWaitOverflow grew by 7"},
  };
  for (const auto& f : findings) {
    const auto r = check(f.args);
    EXPECT_EQ(r.exit_code, 1) << f.line << ": " << r.err;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_TRUE(r.out.starts_with(f.line)) << r.out;
    auto json_args = f.args;
    json_args.insert(json_args.end(), {"--format", "json"});
    const auto doc = nlohmann::json::parse(check(json_args).out);
    EXPECT_EQ(doc["healthy"], false) << f.line;
    EXPECT_EQ(doc["findings"], 1) << f.line;
  }
  const std::vector<std::vector<std::string>> errors = {
      {"check", "--db", "/nonexistent/sockhist.db", "--time-wait-max", "1"},
      {"check", "--db", lifecycle_db(), "--host", "web9", "--time-wait-max", "1"},
      {"check", "--db", fleet_db(), "--time-wait-max", "1"},
      {"check", "--db", lifecycle_db()},  // no threshold
      {"check", "--db", lifecycle_db(), "--close-wait-max-age", "soon"},
      {"check", "--db", lifecycle_db(), "--port-pressure-max", "150"},
      {"check", "--db", lifecycle_db(), "--since", "2020-01-01 00:00", "--until", "2020-01-02 00:00", "--time-wait-max",
       "1"},
  };
  for (const auto& args : errors) {
    const auto r = run(SOCKHIST_ANALYZER_BIN, args);
    EXPECT_EQ(r.exit_code, 2) << args.back() << ": " << r.err;
    EXPECT_EQ(r.out, "") << args.back();
    EXPECT_FALSE(r.err.empty());
  }
}

TEST(Analyzer, DiffNeedsTwoSidesAndSaysSo) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"diff", "--db", fleet_db(), "--host", "web1"},
           {"diff", "--db", fleet_db(), "--snapshot", "1"},
           {"diff", "--db", fleet_db(), "--snapshot", "1", "--snapshot", "3", "--host", "web1"},
           {"diff", "--db", fleet_db(), "--snapshot", "1", "--snapshot", "999"},
           {"diff", "--db", fleet_db(), "--host", "web1", "--host", "web9"},
           {"diff", "--db", "/nonexistent/sockhist.db", "--snapshot", "1", "--snapshot", "2"}}) {
    const auto r = run(SOCKHIST_ANALYZER_BIN, args);
    EXPECT_EQ(r.exit_code, 2) << args.back() << ": " << r.out;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

TEST(Analyzer, TimeWaitUsageErrorsExitTwo) {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"time-wait", "--db", "/nonexistent/sockhist.db"},
                                             {"time-wait", "--db", lifecycle_db(), "--host", "web9"},
                                             {"time-wait", "--db", lifecycle_db(), "--by", "port"},
                                             {"time-wait", "--db", lifecycle_db(), "--by", "remote", "--ports"},
                                             {"time-wait", "--db", lifecycle_db(), "--anomalies"},
                                             {"time-wait", "--db", lifecycle_db(), "--bucket", "soon"}}) {
    const auto r = run(SOCKHIST_ANALYZER_BIN, args);
    EXPECT_EQ(r.exit_code, 2) << args.back() << ": " << r.err;
    EXPECT_EQ(r.out, "") << args.back();
    EXPECT_TRUE(r.err.starts_with("sockhist: error: ")) << r.err;
  }
}

// sql: the read-only guarantee, the interrupt, one-line errors with the position, and every
// example query of schema/README.md.
TEST(Analyzer, SqlRefusesEveryWriteAndLeavesTheFileAsItWas) {
  const auto dir = scratch_dir("analyzer-sql-" + std::to_string(::getpid()));
  const auto copy = dir / "copy.db";
  std::filesystem::copy_file(sample_db(), copy, std::filesystem::copy_options::overwrite_existing);
  const auto before = read_text(copy);
  const auto outside = dir / "outside.db";
  for (const std::string& sql : std::vector<std::string>{
           "INSERT INTO hosts(name) VALUES ('intruder')",
           "DELETE FROM snapshots",
           "UPDATE hosts SET name = 'x'",
           "DROP TABLE socket_spans",
           "CREATE TABLE notes(t TEXT)",
           "ATTACH DATABASE '" + outside.string() + "' AS other",
           "PRAGMA user_version = 99",
           "PRAGMA journal_mode = DELETE",
           "SELECT load_extension('/usr/lib/x86_64-linux-gnu/libsqlite3.so.0')",
           "SELECT 1; DROP TABLE hosts",
           "VACUUM INTO '" + outside.string() + "'",
       }) {
    const auto r = run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", copy.string(), sql});
    EXPECT_EQ(r.exit_code, 2) << sql << ": " << r.out;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << sql << ": " << r.err;
    EXPECT_TRUE(r.err.starts_with("sockhist: error: sql: ")) << sql << ": " << r.err;
    EXPECT_EQ(r.out, "") << sql;
  }
  EXPECT_EQ(read_text(copy), before);
  EXPECT_FALSE(std::filesystem::exists(outside));
  // Reading a pragma is fine.
  const auto pragma =
      run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", copy.string(), "PRAGMA user_version", "--format", "csv"});
  EXPECT_EQ(pragma.exit_code, 0) << pragma.err;
  EXPECT_EQ(pragma.out, "user_version\r\n4\r\n");
}

TEST(Analyzer, SqlInterruptsARunawayQueryAndPointsAtSyntaxErrors) {
  const auto started = std::chrono::steady_clock::now();
  const auto runaway = run(SOCKHIST_ANALYZER_BIN,
                           {"sql", "--db", sample_db(), "--timeout", "1s",
                            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"});
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(runaway.exit_code, 2);
  EXPECT_EQ(runaway.err, "sockhist: error: sql: interrupted after 1s (--timeout)\n");
  EXPECT_LT(took, std::chrono::seconds(20));
  const auto syntax = run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db(), "SELECT * FORM v_snapshots"});
  EXPECT_EQ(syntax.exit_code, 2);
  EXPECT_EQ(syntax.err, "sockhist: error: sql: near \"FORM\": syntax error at offset 9 ('FORM v_snapshots')\n");
  const auto neither = run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db()});
  EXPECT_EQ(neither.exit_code, 2);
}

TEST(Analyzer, SqlRunsEveryDocumentedExampleInEveryFormat) {
  const auto dir = scratch_dir("analyzer-sql-docs-" + std::to_string(::getpid()));
  const auto doc = read_text(std::filesystem::path(SOCKHIST_SAMPLES_DIR) / ".." / "schema" / "README.md");
  std::size_t queries = 0;
  for (std::size_t start = doc.find("```sql\n"); start != std::string::npos; start = doc.find("```sql\n", start)) {
    start += 7;
    std::string sql = doc.substr(start, doc.find("```", start) - start);
    for (const auto& [macro, value] :
         {std::pair{"$__unixEpochFrom()", "0"}, std::pair{"$__unixEpochTo()", "99999999999"}}) {
      for (auto at = sql.find(macro); at != std::string::npos; at = sql.find(macro)) {
        sql.replace(at, std::string(macro).size(), value);
      }
    }
    const auto file = dir / fmt::format("q{}.sql", queries++);
    write_text(file, sql);
    for (const char* format : {"table", "json", "csv"}) {
      const auto r =
          run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db(), "--file", file.string(), "--format", format});
      EXPECT_EQ(r.exit_code, 0) << sql << "\n" << r.err;
      EXPECT_EQ(r.err, "") << sql;
      if (std::string(format) == "json") {
        EXPECT_TRUE(nlohmann::json::parse(r.out).contains("rows")) << r.out;
      }
    }
  }
  EXPECT_GE(queries, 8U);
  const auto counts =
      run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db(), "--format", "csv",
                                  "SELECT count(*) AS snapshots, min(socket_count) AS fewest FROM snapshots"});
  EXPECT_EQ(counts.out, "snapshots,fewest\r\n4,116\r\n");
}

TEST(Analyzer, CloseWaitExitsLikeDiff) {
  ::setenv("SOCKHIST_NOW", "2026-11-24T01:00:00Z", 1);
  const auto found =
      run(SOCKHIST_ANALYZER_BIN, {"close-wait", "--db", sample_db(), "--since", "00:55", "--min-age", "0"});
  EXPECT_EQ(found.exit_code, 1) << found.err;
  const auto none = run(SOCKHIST_ANALYZER_BIN, {"close-wait", "--db", sample_db(), "--since", "00:55"});
  EXPECT_EQ(none.exit_code, 0) << none.err;  // none stayed a minute
  EXPECT_NE(none.out.find("(none)"), std::string::npos) << none.out;
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"close-wait", "--db", "/nonexistent/sockhist.db"},
                                             {"close-wait", "--db", fleet_db()},
                                             {"close-wait", "--db", sample_db(), "--host", "web9"},
                                             {"close-wait", "--db", sample_db(), "--min-age", "soon"},
                                             {"close-wait", "--db", sample_db(), "--by", "port"}}) {
    const auto r = run(SOCKHIST_ANALYZER_BIN, args);
    EXPECT_EQ(r.exit_code, 2) << args.back() << ": " << r.err;
    EXPECT_EQ(r.out, "") << args.back();
  }
}

TEST(Analyzer, TrendMarksGapsWhereTheCollectorDidNotRun) {
  auto db = SQLite::Database(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  store::initialize(db);
  store::SnapshotWriter writer(db);
  const std::int64_t t0 = 1'800'000'000'000;
  for (const std::int64_t minute : {0, 1, 2, 7, 8}) {
    model::Capture c;
    c.host = "web1";
    c.boot_id = "boot-a";
    c.uptime_ms = 1'000'000 + minute * 60'000;
    c.time_ms = t0 + minute * 60'000;
    c.counters = {{"Tcp", "InSegs", 1'000 + minute * 600, false}};
    writer.write(c);
  }
  const auto scope = query::resolve_scope(db, std::string("web1"), std::nullopt);
  const auto trend = query::trend_counters(db, scope, t0, t0 + 9 * 60'000 - 1, 60'000, {"Tcp.InSegs"});
  ASSERT_EQ(trend.buckets.size(), 9U);
  for (std::size_t m = 0; m < 9; ++m) {
    const bool ran = m <= 2 || m == 7 || m == 8;
    EXPECT_EQ(trend.buckets[m].gap, !ran) << "minute " << m;
  }
  EXPECT_EQ(trend.buckets[1].values[0], 10.0);
  // The pair 2 -> 7 spans the gap: no rate is drawn through it.
  EXPECT_FALSE(trend.buckets[7].values[0]);
  EXPECT_EQ(trend.buckets[8].values[0], 10.0);
}

// Rows of netstat-style output split into fields, header lines kept whole.
std::multiset<std::string> rows_of(const std::string& text, bool drop_refcnt) {
  std::multiset<std::string> rows;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.starts_with("Active ") || line.starts_with("Proto ")) {
      rows.insert(line.substr(0, line.find_last_not_of(' ') + 1));
      continue;
    }
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string field; fields >> field;) {
      f.push_back(field);
    }
    if (drop_refcnt && f.size() > 1) {
      f.erase(f.begin() + 1);
    }
    // A TIME_WAIT owner sockhist carried forward (marked *) is one netstat cannot know.
    if (!f.empty() && f.back().ends_with('*')) {
      f.back() = "-";
    }
    std::string joined;
    for (const auto& field : f) {
      joined += (joined.empty() ? "" : " ") + field;
    }
    rows.insert(joined);
  }
  return rows;
}

std::string diff(const std::multiset<std::string>& ours, const std::multiset<std::string>& theirs) {
  std::string out;
  for (const auto& r : ours) {
    if (!theirs.contains(r)) {
      out += "only sockhist: " + r + "\n";
    }
  }
  for (const auto& r : theirs) {
    if (!ours.contains(r)) {
      out += "only netstat:  " + r + "\n";
    }
  }
  return out;
}

TEST(AnalyzerLive, ShowAndStatsAgreeWithNetstatTakenAtTheSameMoment) {
  std::string why;
  if (!enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root): " << why;
  }
  const auto dir = scratch_dir("analyzer-live");
  const std::string db = (dir / "live.db").string();
  Population pop = make_population(dir.string(), false);
  finish_time_wait(pop);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // delayed ACKs go out; counters settle
  const auto collect = run(SOCKHIST_COLLECT_BIN, {"--db", db, "--retain", "0"});
  ASSERT_EQ(collect.exit_code, 0) << collect.err;
  const auto netstat_tanp = run("/usr/bin/netstat", {"-tanp"});
  const auto netstat_uanp = run("/usr/bin/netstat", {"-uanp"});
  const auto netstat_xa = run("/usr/bin/netstat", {"-xa"});
  const auto netstat_s = run("/usr/bin/netstat", {"-s"});
  ASSERT_EQ(netstat_tanp.exit_code, 0) << netstat_tanp.err;
  const auto show_tanp = run(SOCKHIST_ANALYZER_BIN, {"show", "--db", db, "-tanp"});
  const auto show_uanp = run(SOCKHIST_ANALYZER_BIN, {"show", "--db", db, "-uanp"});
  const auto show_xa = run(SOCKHIST_ANALYZER_BIN, {"show", "--db", db, "-xa"});
  ASSERT_EQ(show_tanp.exit_code, 0) << show_tanp.err;
  const auto ours = rows_of(show_tanp.out, false);
  const auto theirs = rows_of(netstat_tanp.out, false);
  EXPECT_EQ(ours, theirs) << diff(ours, theirs);
  EXPECT_GE(ours.size(), 10U);  // two header lines and the population's TCP sockets
  for (const char* state : {"LISTEN", "ESTABLISHED", "CLOSE_WAIT", "TIME_WAIT", "FIN_WAIT2"}) {
    EXPECT_NE(show_tanp.out.find(state), std::string::npos) << state;
  }
  EXPECT_EQ(rows_of(show_uanp.out, false), rows_of(netstat_uanp.out, false))
      << diff(rows_of(show_uanp.out, false), rows_of(netstat_uanp.out, false));
  EXPECT_EQ(rows_of(show_xa.out, true), rows_of(netstat_xa.out, true))
      << diff(rows_of(show_xa.out, true), rows_of(netstat_xa.out, true));
  // The carried-forward owner of the TIME_WAIT client is the one fact netstat lacks.
  EXPECT_NE(show_tanp.out.find(std::to_string(::getpid()) + "/"), std::string::npos);

  // netstat -s: the Tcp and Udp counters both print, with netstat's labels.
  const auto stats = run(SOCKHIST_ANALYZER_BIN, {"stats", "--db", db, "--format", "json"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  std::map<std::string, std::int64_t> stored;
  const auto stats_doc = nlohmann::json::parse(stats.out);
  for (const auto& row : stats_doc["rows"]) {
    stored[row["section"].get<std::string>() + "." + row["name"].get<std::string>()] = row["value"].get<std::int64_t>();
  }
  const std::map<std::string, std::string> labels = {
      {"Tcp:active connection openings", "Tcp.ActiveOpens"},
      {"Tcp:passive connection openings", "Tcp.PassiveOpens"},
      {"Tcp:failed connection attempts", "Tcp.AttemptFails"},
      {"Tcp:connection resets received", "Tcp.EstabResets"},
      {"Tcp:connections established", "Tcp.CurrEstab"},
      {"Tcp:segments received", "Tcp.InSegs"},
      {"Tcp:segments sent out", "Tcp.OutSegs"},
      {"Tcp:segments retransmitted", "Tcp.RetransSegs"},
      {"Tcp:resets sent", "Tcp.OutRsts"},
      {"Udp:packets received", "Udp.InDatagrams"},
      {"Udp:packets sent", "Udp.OutDatagrams"},
  };
  std::istringstream lines(netstat_s.out);
  std::string line;
  std::string section;
  int compared = 0;
  while (std::getline(lines, line)) {
    if (!line.starts_with(" ")) {
      section = line.substr(0, line.find(':'));
      continue;
    }
    std::istringstream fields(line);
    std::int64_t value = 0;
    if (!(fields >> value)) {
      continue;
    }
    std::string label;
    std::getline(fields >> std::ws, label);
    const auto it = labels.find(section + ":" + label);
    if (it != labels.end()) {
      ASSERT_TRUE(stored.contains(it->second)) << it->second;
      EXPECT_EQ(stored[it->second], value) << it->second;
      ++compared;
    }
  }
  EXPECT_EQ(compared, static_cast<int>(labels.size())) << netstat_s.out;
  EXPECT_GT(stored["Tcp.ActiveOpens"], 0);
}

TEST(AnalyzerLive, ReadsWhileACollectorWritesSeeWholeSnapshots) {
  const auto dir = scratch_dir("analyzer-concurrent");
  const std::string db = (dir / "busy.db").string();
  ASSERT_EQ(run(SOCKHIST_COLLECT_BIN, {"--db", db, "--retain", "0"}).exit_code, 0);
  // 30 s of a snapshot every 200 ms, as the issue asks.
  const pid_t collector =
      spawn(SOCKHIST_COLLECT_BIN, {"--db", db, "--retain", "0", "--interval", "200ms", "--count", "150"});
  int reads = 0;
  bool reaped = false;
  std::int64_t newest = 0;
  std::set<std::int64_t> ids_seen;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  for (;;) {
    const auto list = run(SOCKHIST_ANALYZER_BIN, {"snapshots", "--db", db, "--format", "json"});
    ASSERT_EQ(list.exit_code, 0) << list.err;
    ASSERT_EQ(list.err, "");
    const auto rows = nlohmann::json::parse(list.out)["rows"];
    ASSERT_FALSE(rows.empty());
    const auto& last = rows.back();
    newest = last["snapshot_id"].get<std::int64_t>();
    ids_seen.insert(newest);
    const auto shown = run(SOCKHIST_ANALYZER_BIN,
                           {"show", "--db", db, "--snapshot", std::to_string(newest), "-a", "--format", "json"});
    ASSERT_EQ(shown.exit_code, 0) << shown.err;
    const auto sockets = nlohmann::json::parse(shown.out)["rows"].size();
    EXPECT_EQ(static_cast<std::int64_t>(sockets), last["sockets"].get<std::int64_t>())
        << "snapshot " << newest << " read partly";
    ++reads;
    int status = 0;
    if (::waitpid(collector, &status, WNOHANG) == collector) {
      reaped = true;
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      break;
    }
  }
  if (!reaped) {
    ::kill(collector, SIGTERM);
    wait_child(collector);
  }
  EXPECT_GT(reads, 20);
  EXPECT_GT(ids_seen.size(), 10U);  // the reads saw the history grow
  const auto final_list = run(SOCKHIST_ANALYZER_BIN, {"snapshots", "--db", db, "--format", "json"});
  EXPECT_EQ(nlohmann::json::parse(final_list.out)["rows"].size(), 151U);
}

}  // namespace
