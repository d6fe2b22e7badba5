// The lifecycle reports' accuracy on live sockets: in a network namespace of its own (so the
// sockets and the TcpExt counters are the test's alone), the test closes connections at recorded
// instants while the real collector takes a snapshot every second, then asks the real analyzer.
// - every TIME_WAIT entry estimate is within 1 s of the recorded close, and every CLOSE_WAIT's
//   entry bounds contain its recorded close;
// - at 50 client-first closes a second, TcpExt.TW agrees with the entries the timers give and with
//   the population (TW/s x 60 s) within 20 %, and counts sockets when they enter TIME_WAIT.
// Each prints its figures (README.md, "How accurate the lifecycle reports are").
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "files.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "recorded_entries.hpp"
#include "sockets.hpp"

using namespace sockhist::test;
using Clock = std::chrono::system_clock;

namespace {

double epoch_s(Clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

std::string iso(Clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

nlohmann::json analyze(const std::vector<std::string>& args) {
  const auto r = run(SOCKHIST_ANALYZER_BIN, args);
  if (r.exit_code != 0 && r.exit_code != 1) {
    throw std::runtime_error("sockhist " + args.front() + " failed: " + r.err);
  }
  return nlohmann::json::parse(r.out);
}

class LifecycleLive : public testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!enter_private_netns(why)) {
      GTEST_SKIP() << "needs a private network namespace (root; CI runs it): " << why;
    }
    m_dir = scratch_dir(std::string("lifecycle-live-") + testing::UnitTest::GetInstance()->current_test_info()->name());
    m_db = (m_dir / "live.db").string();
  }
  std::filesystem::path m_dir;
  std::string m_db;
};

TEST_F(LifecycleLive, TimeWaitEntryWithinOneSecondCloseWaitBoundsContainTheClose) {
  const Fd listener = listen_tcp(4);
  const auto begin = Clock::now();
  LoopingCollector collector(m_db);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::map<int, Clock::time_point> time_wait_closed;   // client port -> when its TIME_WAIT began
  std::map<int, Clock::time_point> close_wait_closed;  // client port -> when the client closed
  std::vector<Fd> held;                                // the server ends left in CLOSE_WAIT
  for (int i = 0; i < 10; ++i) {
    // Spread over the collector's second, so estimates are tried at every phase.
    std::this_thread::sleep_for(std::chrono::milliseconds(730));
    const int port = make_time_wait(connect_pair(4, listener));
    time_wait_closed[port] = Clock::now();
    Pair pair = connect_pair(4, listener);
    const int client_port = local_port(pair.client);
    close_wait_closed[client_port] = Clock::now();
    held.push_back(make_close_wait(std::move(pair)));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  collector.stop();
  const auto end = Clock::now();

  const auto tw = analyze(
      {"time-wait", "--db", m_db, "--since", iso(begin), "--until", iso(end), "--by", "socket", "--format", "json"});
  double worst = 0;
  std::size_t matched = 0;
  for (const auto& row : tw["rows"]) {
    const std::string local = row["local"];
    const int port = std::stoi(local.substr(local.rfind(':') + 1));
    const auto it = time_wait_closed.find(port);
    if (it == time_wait_closed.end() || row["state"] != "TIME_WAIT") {
      continue;
    }
    ASSERT_FALSE(row["entered_epoch"].is_null()) << local;
    const double error = std::abs(row["entered_epoch"].get<double>() - epoch_s(it->second));
    worst = std::max(worst, error);
    EXPECT_LE(error, 1.0) << local << " entered " << row["entered"] << ", closed " << iso(it->second);
    EXPECT_EQ(row["closer"], "client") << local;
    ++matched;
  }
  EXPECT_EQ(matched, time_wait_closed.size()) << tw.dump(1);

  const auto cw = analyze(
      {"close-wait", "--db", m_db, "--since", iso(begin), "--until", iso(end), "--min-age", "0", "--format", "json"});
  std::size_t bounded = 0;
  double widest = 0;
  for (const auto& row : cw["rows"]) {
    const std::string remote = row["remote"];
    const int port = std::stoi(remote.substr(remote.rfind(':') + 1));
    const auto it = close_wait_closed.find(port);
    if (it == close_wait_closed.end()) {
      continue;
    }
    ASSERT_FALSE(row["entered_after_epoch"].is_null()) << remote;
    const double after = row["entered_after_epoch"], by = row["entered_by_epoch"], closed = epoch_s(it->second);
    EXPECT_LE(after, closed) << remote;
    EXPECT_GE(by, closed) << remote;
    widest = std::max(widest, by - after);
    ++bounded;
  }
  EXPECT_EQ(bounded, close_wait_closed.size()) << cw.dump(1);
  std::cout << fmt::format(
      "[ figures ] TIME_WAIT entry estimates: {} sockets, worst error {:.3f} s; CLOSE_WAIT: {} "
      "sockets bounded, widest bound {:.3f} s\n",
      matched, worst, bounded, widest);
}

// An orphaned FIN_WAIT2 minisocket is counted by TcpExt.TW when it appears, and not again when the
// peer's FIN turns it into TIME_WAIT: time-wait counts entries the same way.
TEST_F(LifecycleLive, FinWait2MinisocketIsCountedOnceLikeTheKernelDoes) {
  const Fd listener = listen_tcp(4);
  const auto begin = Clock::now();
  LoopingCollector collector(m_db);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::vector<Fd> servers;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(make_close_wait(connect_pair(4, listener)));  // the client end: a minisocket
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  servers.clear();  // the servers close: each minisocket gets the FIN and turns TIME_WAIT
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  collector.stop();
  const auto report = analyze({"time-wait", "--db", m_db, "--since", iso(begin), "--until", iso(Clock::now()), "--by",
                               "socket", "--format", "json"});
  std::size_t minisockets = 0, became_time_wait = 0;
  for (const auto& row : report["rows"]) {
    if (row["state"] == "FIN_WAIT2") {
      ++minisockets;
      became_time_wait += row["next_state"] == "TIME_WAIT" ? 1 : 0;
      EXPECT_EQ(row["closer"], "client") << row.dump();
    }
  }
  EXPECT_EQ(minisockets, 3U) << report.dump(1);
  EXPECT_EQ(became_time_wait, 3U) << report.dump(1);
  const auto summary = analyze(
      {"time-wait", "--db", m_db, "--since", iso(begin), "--until", iso(Clock::now()), "--format", "json"})["summary"];
  EXPECT_EQ(summary["entries"], 3) << summary.dump(1);        // three TIME_WAIT entries
  EXPECT_EQ(summary["table_entries"], 3) << summary.dump(1);  // counted once each, as minisockets
  EXPECT_EQ(summary["tw_counter_delta"], 3) << summary.dump(1);
}

// A client whose ports come back only once their TIME_WAIT has expired is doing nothing wrong. With
// ten ephemeral ports and tcp_tw_reuse off, the kernel cannot take a port over early: the same ten
// 4-tuples enter TIME_WAIT again 60 to 63 s after the first time, and that is no anomaly, as
// TcpExt.TWRecycled (0) agrees.
TEST_F(LifecycleLive, PortsReusedAfterTheirTimeWaitExpiredAreNoAnomaly) {
  const Fd listener = listen_tcp(4);  // before the range shrinks: its port is not one of the ten
  write_text("/proc/sys/net/ipv4/ip_local_port_range", "40000 40009\n");
  write_text("/proc/sys/net/ipv4/tcp_tw_reuse", "0\n");
  ASSERT_EQ(read_text("/proc/sys/net/ipv4/ip_local_port_range"), "40000\t40009\n");
  const auto begin = Clock::now();
  LoopingCollector collector(m_db);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::map<int, std::vector<Clock::time_point>> entered;  // client port -> when each TIME_WAIT began
  for (int i = 0; i < 10; ++i) {
    const int port = make_time_wait(connect_pair(4, listener));
    entered[port].push_back(Clock::now());
  }
  ASSERT_EQ(entered.size(), 10U);
  // Every port is in TIME_WAIT: a connect fails until one expires, and then takes it again.
  std::this_thread::sleep_until(entered.begin()->second.front() + std::chrono::seconds(60));
  int refused = 0;
  for (int i = 0; i < 10; ++i) {
    for (;;) {
      try {
        const int port = make_time_wait(connect_pair(4, listener));
        entered[port].push_back(Clock::now());
        break;
      } catch (const std::runtime_error&) {
        ASSERT_LT(++refused, 100) << "no port came back in 10 s after the 60 s";
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  collector.stop();
  const auto end = Clock::now();
  double shortest = 1e9, longest = 0;
  for (const auto& [port, times] : entered) {
    ASSERT_EQ(times.size(), 2U) << "port " << port << " came back once";
    const double gap = std::chrono::duration<double>(times[1] - times[0]).count();
    shortest = std::min(shortest, gap);
    longest = std::max(longest, gap);
  }
  EXPECT_GE(shortest, 60.0);
  const auto report = analyze(
      {"time-wait", "--db", m_db, "--since", iso(begin), "--until", iso(end), "--by", "socket", "--format", "json"});
  std::map<int, int> entries;
  for (const auto& row : report["rows"]) {
    const std::string local = row["local"];
    if (row["state"] == "TIME_WAIT") {
      ++entries[std::stoi(local.substr(local.rfind(':') + 1))];
      EXPECT_EQ(row["anomalies"], "-") << row.dump();
    }
  }
  for (const auto& [port, times] : entered) {
    EXPECT_EQ(entries[port], 2) << "port " << port << ": two TIME_WAIT entries seen";
  }
  const auto summary =
      analyze({"time-wait", "--db", m_db, "--since", iso(begin), "--until", iso(end), "--format", "json"})["summary"];
  EXPECT_EQ(summary["anomaly_counts"]["reused_tuple"], 0) << summary.dump(1);
  EXPECT_EQ(summary["kernel_counters"].value("TWRecycled", 0), 0) << summary.dump(1);
  // Some ports came back within the earlier TIME_WAIT's overtime, but TWRecycled stayed still: no doubt.
  EXPECT_EQ(summary["reused_tuple_maybe"], 0) << summary.dump(1);
  std::cout << fmt::format(
      "[ figures ] 10 ports reused {:.1f} to {:.1f} s after their first TIME_WAIT began ({} connects refused "
      "meanwhile): anomalies {}, TWRecycled {}\n",
      shortest, longest, refused, summary["anomaly_counts"]["reused_tuple"].get<int>(),
      summary["kernel_counters"].value("TWRecycled", 0));
}

TEST_F(LifecycleLive, TimeWaitCounterAgreesWithEntriesAndPopulationAtFiftyClosesASecond) {
  const Fd listener = listen_tcp(4);
  const auto begin = Clock::now();
  LoopingCollector collector(m_db);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const auto load_start = Clock::now();
  const auto period = std::chrono::milliseconds(20);  // 50 a second
  const int total = 90 * 50;
  auto next = load_start;
  for (int i = 0; i < total; ++i) {
    std::this_thread::sleep_until(next);
    next += period;
    make_time_wait(connect_pair(4, listener));
  }
  const auto load_end = Clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  collector.stop();
  const double achieved = total / std::chrono::duration<double>(load_end - load_start).count();

  // The first 50 s: the population is still growing, but TcpExt.TW already counts every entry.
  const auto ramp = analyze({"time-wait", "--db", m_db, "--since", iso(load_start + std::chrono::seconds(2)), "--until",
                             iso(load_start + std::chrono::seconds(50)), "--format", "json"})["summary"];
  ASSERT_FALSE(ramp["tw_counter_per_s"].is_null()) << ramp.dump(1);
  const double ramp_counter = ramp["tw_counter_per_s"], ramp_entries = ramp["table_entries_per_s"];
  EXPECT_NEAR(ramp_counter, ramp_entries, 0.2 * ramp_entries) << "TcpExt.TW is not counted on entry";

  // Steady state: from 62 s (every TIME_WAIT of the first second has expired) to the end of the load.
  const auto steady = analyze({"time-wait", "--db", m_db, "--since", iso(load_start + std::chrono::seconds(62)),
                               "--until", iso(load_end), "--format", "json"})["summary"];
  ASSERT_FALSE(steady["tw_counter_per_s"].is_null()) << steady.dump(1);
  const double counter = steady["tw_counter_per_s"], entries = steady["table_entries_per_s"];
  const double population = steady["mean_population"];
  EXPECT_TRUE(steady["entries_complete"]) << steady.dump(1);
  EXPECT_NEAR(entries, counter, 0.2 * counter) << steady.dump(1);
  EXPECT_NEAR(population, counter * 60.0, 0.2 * counter * 60.0) << steady.dump(1);
  EXPECT_NEAR(counter, achieved, 0.2 * achieved) << steady.dump(1);
  // Over the whole run: loopback connects take over TIME_WAIT slots (tcp_tw_reuse 2, the default,
  // counted in TWRecycled); each shows as a 4-tuple in TIME_WAIT again with a fresh timer.
  const auto whole = analyze(
      {"time-wait", "--db", m_db, "--since", iso(begin), "--until", iso(Clock::now()), "--format", "json"})["summary"];
  const std::int64_t recycled = whole["kernel_counters"].value("TWRecycled", 0);
  const std::int64_t reused = whole["anomaly_counts"]["reused_tuple"];
  const std::int64_t maybe = whole["reused_tuple_maybe"];
  // The kernel takes over TIME_WAIT sockets before their 60 s (anomalies) and also in their overtime,
  // the second or two before their late timer fires (a CI run saw 73 of 359 so): those entered after
  // their predecessor's 60 s while TWRecycled rose, and are counted as doubts, not anomalies. None is
  // invented, and between them every takeover is accounted for, less the odd one whose two entries
  // fell into one snapshot.
  EXPECT_LE(reused, recycled + 2) << "anomalies beyond what the kernel counted" << whole.dump(1);
  EXPECT_GE(static_cast<double>(reused + maybe), 0.97 * static_cast<double>(recycled) - 2) << whole.dump(1);
  // The entries the collector recorded as it wrote, which the report reads, are the reader's exactly,
  // takeovers (a fresh timer on a 4-tuple, a new cookie) included.
  const auto recorded = compare_recorded_entries(m_db, {1'000, 10'000});
  EXPECT_GT(recorded.entries, total / 2);
  std::cout << fmt::format(
      "[ figures ] {:.1f} closes/s driven; steady state: TcpExt.TW {:.2f}/s, entries from timers {:.2f}/s ({:+.1f} %), "
      "mean population {:.0f} vs TW/s x 60 = {:.0f} ({:+.1f} %); first 50 s: TcpExt.TW {:.2f}/s vs entries {:.2f}/s; "
      "TWRecycled {} vs reused 4-tuples seen {} (+{} in the earlier one's overtime)\n",
      achieved, counter, entries, 100.0 * (entries - counter) / counter, population, counter * 60.0,
      100.0 * (population - counter * 60.0) / (counter * 60.0), ramp_counter, ramp_entries, recycled, reused, maybe);
}

}  // namespace
