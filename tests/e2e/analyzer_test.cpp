// The analyzer end to end on the sample histories: usage errors, several hosts, options before
// the subcommand, read-only copies, counters across a reboot, CLOSE_WAIT bounds, check, diff,
// time-wait and trend's gaps (sql's guarantees: sql_test).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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
  EXPECT_EQ(query::describe(served->came_from), "ESTABLISHED");
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

// A collector that stopped must not look healthy: check finds the newest snapshot too old
// (default three usual intervals, at least 5 minutes), --max-age sets or disables it, and show
// --at past the history says which snapshot it answers from.
TEST(Analyzer, StaleIsNotHealthy) {
  ::setenv("TZ", "UTC", 1);
  const auto check = [](const char* now, std::vector<std::string> args) {
    ::setenv("SOCKHIST_NOW", now, 1);
    args.insert(args.begin(), {"check", "--db", lifecycle_db()});
    return run(SOCKHIST_ANALYZER_BIN, args);
  };
  // The newest snapshot is 2026-11-24 02:02:45, the usual interval 15 s.
  const auto fresh = check("2026-11-24T02:06:00Z", {"--time-wait-max", "100"});
  EXPECT_EQ(fresh.exit_code, 0) << fresh.out << fresh.err;
  EXPECT_EQ(fresh.out, "");
  const auto stale = check("2026-11-24T05:00:00Z", {"--time-wait-max", "100"});
  EXPECT_EQ(stale.exit_code, 1) << stale.err;
  EXPECT_EQ(stale.out,
            "api1: max-age: newest snapshot is 2h57m old, taken at 2026-11-24 02:02:45: is the collector running? "
            "(the usual interval is 15s) (limit 5m00s)\n");
  const auto json = check("2026-11-24T05:00:00Z", {"--time-wait-max", "100", "--format", "json"});
  EXPECT_EQ(nlohmann::json::parse(json.out)["healthy"], false);
  EXPECT_EQ(check("2026-11-24T02:20:00Z", {"--max-age", "30m"}).exit_code, 0);  // the only threshold given
  EXPECT_EQ(check("2026-11-24T02:20:00Z", {"--max-age", "10m"}).exit_code, 1);
  EXPECT_EQ(check("2026-11-24T05:00:00Z", {"--time-wait-max", "100", "--max-age", "0"}).exit_code, 0);
  // A range that ends in the past is history, not now: no staleness.
  EXPECT_EQ(check("2026-11-24T05:00:00Z", {"--time-wait-max", "100", "--since", "02:00", "--until", "02:03"}).exit_code,
            0);

  ::setenv("SOCKHIST_NOW", "2026-11-24T05:00:00Z", 1);
  const auto late = run(SOCKHIST_ANALYZER_BIN, {"show", "--db", lifecycle_db(), "--at", "04:00", "-tn"});
  EXPECT_EQ(late.exit_code, 0) << late.err;
  EXPECT_EQ(late.err,
            "sockhist: note: --at 04:00: showing snapshot 12 taken 1h57m earlier, at 2026-11-24T02:02:45.000Z "
            "(snapshots are usually 15s apart)\n");
  const auto within = run(SOCKHIST_ANALYZER_BIN, {"show", "--db", lifecycle_db(), "--at", "02:02:50", "-tn"});
  EXPECT_EQ(within.err, "");  // 5 s after a snapshot taken every 15 s: nothing to say
}

// --min-age chooses which owners close-wait --by process lists; it never changes an owner's count
// now, its peak or its growth, which are those of all its CLOSE_WAIT sockets (as check counts them).
TEST(Analyzer, MinAgeFiltersOwnersNotTheirCounts) {
  ::setenv("SOCKHIST_NOW", "2026-11-24T02:05:00Z", 1);
  const auto by_process = [](const std::string& min_age) {
    const auto r = run(SOCKHIST_ANALYZER_BIN, {"close-wait", "--db", lifecycle_db(), "--by", "process", "--min-age",
                                               min_age, "--format", "json"});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    std::map<std::string, nlohmann::json> rows;
    const auto doc = nlohmann::json::parse(r.out);  // kept: a range-for over a temporary's member dangles
    for (const auto& row : doc["rows"]) {
      rows[row["program"].get<std::string>() + " " + row["pid"].dump()] = row;
    }
    return rows;
  };
  const auto all = by_process("0"), old_only = by_process("60s");
  ASSERT_FALSE(old_only.empty());
  EXPECT_LT(old_only.size(), all.size() + 1);
  for (const auto& [owner, row] : old_only) {
    ASSERT_TRUE(all.count(owner)) << owner;
    const auto& same = all.at(owner);
    EXPECT_EQ(row["now"], same["now"]) << owner;
    EXPECT_EQ(row["peak"], same["peak"]) << owner;
    EXPECT_EQ(row["seen"], same["seen"]) << owner;
    EXPECT_EQ(row["per_hour"], same["per_hour"]) << owner;
    EXPECT_GE(row["oldest"].get<double>(), 60.0) << owner;
  }
  // The leaking api held 8 at its peak, of which only some had stayed a minute.
  const auto api = std::find_if(old_only.begin(), old_only.end(),
                                [](const auto& item) { return item.second["program"] == "2100/api"; });
  ASSERT_NE(api, old_only.end());
  EXPECT_EQ(api->second["peak"], 8);
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

}  // namespace
