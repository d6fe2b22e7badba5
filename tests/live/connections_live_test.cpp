// The connection log end to end: in a network namespace of its own, the real collector loops every
// second while the test makes connections whose bytes and times it records, then the real analyzer
// (`sockhist connections --format json`) is checked against that record:
// - every connection is there twice (its two ends), each once, with tcp_info's bytes as the test
//   sent them, lifetime bounds that hold the true lifetime, and inbound ends owned by the test;
// - a storm of 5,000 connections a second for 30 s is all kept whole or summed, none unaccounted.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

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
#include "report_page.hpp"
#include "sockets.hpp"

using namespace sockhist::test;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

nlohmann::json connections(const std::string& db, const std::vector<std::string>& more = {}) {
  std::vector<std::string> args{"connections", "--db", db, "--format", "json", "--since", "1h"};
  args.insert(args.end(), more.begin(), more.end());
  const auto r = run(SOCKHIST_ANALYZER_BIN, args);
  if (r.exit_code != 0) {
    throw std::runtime_error("sockhist connections failed: " + r.err);
  }
  return nlohmann::json::parse(r.out);
}

class ConnectionsLive : public testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!enter_private_netns(why)) {
      GTEST_SKIP() << "needs a private network namespace (root; CI runs it): " << why;
    }
    m_dir =
        scratch_dir(std::string("connections-live-") + testing::UnitTest::GetInstance()->current_test_info()->name());
    m_db = (m_dir / "live.db").string();
  }
  std::filesystem::path m_dir;
  std::string m_db;
};

void send_all(const Fd& fd, std::size_t n) {
  const std::string data(n, 'x');
  std::size_t done = 0;
  while (done < n) {
    const auto wrote = ::write(fd.get(), data.data() + done, n - done);
    if (wrote <= 0) {
      throw std::runtime_error("write failed");
    }
    done += static_cast<std::size_t>(wrote);
  }
}

// Reads until `n` bytes came, or with n = 0 until end of file.
void receive(const Fd& fd, std::size_t n) {
  char buffer[4096];
  std::size_t got = 0;
  while (n == 0 || got < n) {
    const auto r = ::read(fd.get(), buffer, sizeof(buffer));
    if (r < 0) {
      throw std::runtime_error("read failed");
    }
    if (r == 0) {
      if (n == 0) {
        return;
      }
      throw std::runtime_error("end of file before the bytes");
    }
    got += static_cast<std::size_t>(r);
  }
}

// A time column's epoch (seconds, with milliseconds) as epoch ms.
std::int64_t ms_of(const nlohmann::json& epoch) {
  return std::llround(epoch.get<double>() * 1000.0);
}

// What the test did with one connection.
struct Made {
  int client_port = 0;
  std::size_t client_bytes = 0;
  std::size_t server_bytes = 0;
  bool held = false;  // the server end held in CLOSE_WAIT for 2.5 s
  std::int64_t connect_start = 0, connected = 0;
  std::int64_t client_close = 0, server_close = 0, closed = 0;  // when each close began; all done
};

}  // namespace

TEST_F(ConnectionsLive, EveryConnectionWithExactBytesBoundedLifetimesAndInboundOwners) {
  LoopingCollector collector(m_db);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // a first snapshot before any
  const Fd listener = listen_tcp(4);
  std::vector<Made> made;
  // 30 connections, each closed by the client first. 24 live a few ms, between two snapshots, and
  // the server closes at once: the client goes to TIME_WAIT. For every fifth the server holds its
  // end in CLOSE_WAIT for 2.5 s, seen by snapshots; the client's end is orphaned in FIN_WAIT2 (a
  // minisocket) as it closes, before the server's FIN, and its TIME_WAIT begins only later.
  for (int i = 0; i < 30; ++i) {
    Made m;
    m.client_bytes = 100 + static_cast<std::size_t>(i);
    m.server_bytes = 1000 + 10 * static_cast<std::size_t>(i);
    m.held = i % 5 == 4;
    m.connect_start = now_ms();
    Pair pair = connect_pair(4, listener);
    m.connected = now_ms();
    m.client_port = local_port(pair.client);
    send_all(pair.client, m.client_bytes);
    send_all(pair.server, m.server_bytes);
    receive(pair.server, m.client_bytes);
    receive(pair.client, m.server_bytes);
    m.client_close = now_ms();
    pair.client.reset();
    receive(pair.server, 0);
    if (m.held) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    }
    m.server_close = now_ms();
    pair.server.reset();
    m.closed = now_ms();
    made.push_back(m);
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // the last ends taken by a snapshot
  collector.stop();

  const auto out = connections(m_db);
  const auto& coverage = out["coverage"];
  EXPECT_EQ(coverage["overruns"], 0);
  EXPECT_EQ(coverage["summed"], 0);
  EXPECT_EQ(coverage["heard"], coverage["kept_whole"]);
  std::map<std::pair<int, int>, std::vector<nlohmann::json>> by_ports;  // (local, remote port)
  for (const auto& row : out["rows"]) {
    by_ports[{row["local_port"].get<int>(), row["remote_port"].get<int>()}].push_back(row);
  }
  const int server_port = local_port(listener);
  int seen_alive = 0;
  for (const auto& m : made) {
    SCOPED_TRACE(fmt::format("client port {}{}", m.client_port, m.held ? ", held in CLOSE_WAIT" : ""));
    const auto& client_side = by_ports[{m.client_port, server_port}];
    const auto& server_side = by_ports[{server_port, m.client_port}];
    ASSERT_EQ(client_side.size(), 1u);
    ASSERT_EQ(server_side.size(), 1u);
    for (const auto* end : {&client_side[0], &server_side[0]}) {
      const auto& e = *end;
      const bool is_client = e["local_port"] == m.client_port;
      // tcp_info: payload as sent; received counts the peer's FIN as one, when it came before the
      // end (a held server's FIN comes after its client's end).
      EXPECT_EQ(e["bytes_sent"], is_client ? m.client_bytes : m.server_bytes);
      EXPECT_EQ(e["bytes_received"], is_client ? m.server_bytes + (m.held ? 0 : 1) : m.client_bytes + 1);
      EXPECT_EQ(e["total_retrans"], 0);
      // The end was heard after its close began, within 1 s of the closes ending.
      const std::int64_t end_ms = ms_of(e["end_epoch"]);
      EXPECT_GE(end_ms, is_client ? m.client_close : m.server_close);
      EXPECT_LE(end_ms, m.closed + 1000);
      // The bounds hold the birth: after born_after, by born_by.
      ASSERT_FALSE(e["born_after_epoch"].is_null()) << "a snapshot came before every connection";
      EXPECT_LE(ms_of(e["born_after_epoch"]), m.connected);
      if (!e["born_by_epoch"].is_null()) {
        EXPECT_GE(ms_of(e["born_by_epoch"]), m.connect_start);
        ++seen_alive;
      }
      // An owner only on stated grounds, and then the right one: the test holds both ends.
      if (e["owner_basis"] != "none") {
        EXPECT_EQ(e["pid"], ::getpid()) << e.dump();
      } else {
        EXPECT_FALSE(e["owner_reason"].is_null());
      }
      if (!is_client) {
        EXPECT_TRUE(e["owner_basis"] == "listener" || e["owner_basis"] == "span") << e.dump();
      }
    }
    // The TIME_WAIT a client's end began; none for one orphaned into a minisocket first.
    EXPECT_EQ(client_side[0]["entered_time_wait"], m.held ? 0 : 1);
    EXPECT_EQ(server_side[0]["entered_time_wait"], 0);
    if (m.held) {
      EXPECT_EQ(server_side[0]["seen_state"], "CLOSE_WAIT");
      EXPECT_EQ(server_side[0]["owner_basis"], "span");
    }
  }
  // The held servers were seen alive, in CLOSE_WAIT, and their clients before they closed.
  EXPECT_GE(seen_alive, 6);
  // time-wait dates the 24 TIME_WAITs entered at their socket's end by it, the others by their timers.
  const auto tw = run(SOCKHIST_ANALYZER_BIN, {"time-wait", "--db", m_db, "--since", "1h"});
  EXPECT_NE(tw.out.find("TIME_WAIT entered (24 dated by the connection log"), std::string::npos) << tw.out;
  // The entries the collector recorded as it wrote (what the report reads) are those same 24, as exact.
  const auto recorded = compare_recorded_entries(m_db, {1'000, 5'000});
  EXPECT_EQ(recorded.exact, 24);
  // close-wait says when each held server's socket ended: after its close began, within 1 s.
  const auto cw =
      run(SOCKHIST_ANALYZER_BIN, {"close-wait", "--db", m_db, "--since", "1h", "--min-age", "0", "--format", "json"});
  ASSERT_EQ(cw.exit_code, 1) << cw.err;
  int ended = 0;
  const auto close_wait = nlohmann::json::parse(cw.out);
  for (const auto& row : close_wait["rows"]) {
    for (const auto& m : made) {
      if (m.held && row["remote"] == fmt::format("127.0.0.1:{}", m.client_port)) {
        ASSERT_FALSE(row["ended_epoch"].is_null()) << row.dump();
        EXPECT_GE(ms_of(row["ended_epoch"]), m.server_close);
        EXPECT_LE(ms_of(row["ended_epoch"]), m.closed + 1000);
        ++ended;
      }
    }
  }
  EXPECT_EQ(ended, 6);
  std::cout << fmt::format(
      "[ figures  ] {} connections, {} ends heard, {} seen alive by a snapshot, {} CLOSE_WAIT "
      "ends dated\n",
      made.size(), coverage["heard"].get<int>(), seen_alive, ended);
}

TEST_F(ConnectionsLive, AStormOf5000ASecondFor30sIsAllKeptOrSummed) {
  // A budget below a second's ends, so that both kinds of row are exercised.
  LoopingCollector collector(m_db, {"--connection-budget", "4000"});
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const auto storm = run(SOCKHIST_CONNECT_STORM_BIN, {"5000", "30"});
  ASSERT_EQ(storm.exit_code, 0) << storm.err;
  long made = 0;
  ASSERT_EQ(std::sscanf(storm.err.c_str(), "connections %ld", &made), 1) << storm.err;
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  collector.stop();

  const auto out = connections(m_db, {"--by", "local-port"});
  const auto& c = out["coverage"];
  // Each connection ends twice (client and server); the storm's listener once more.
  const long ends = 2 * made + 1;
  EXPECT_EQ(c["overruns"], 0) << "the kernel dropped announcements: the log says so, but cannot be complete";
  EXPECT_EQ(c["only_counted"], 0);
  EXPECT_EQ(c["heard"].get<long>(), ends);
  EXPECT_EQ(c["kept_whole"].get<long>() + c["summed"].get<long>(), ends);
  EXPECT_GT(c["summed"].get<long>(), 0);
  long counted = 0;
  for (const auto& row : out["rows"]) {
    counted += row["connections"].get<long>();
  }
  EXPECT_EQ(counted, ends);
  // The report draws the same ends: its connections chart's rates, times their bucket, add up to them.
  const auto html = (m_dir / "report.html").string();
  const auto made_report = run(SOCKHIST_ANALYZER_BIN, {"report", "--db", m_db, "--utc", "-o", html});
  ASSERT_EQ(made_report.exit_code, 0) << made_report.err;
  const Page page(html);
  const std::string table = "//h:section[@id='chart-connections']//h:table[@class='numbers-table']";
  const double bucket_s = std::stod(page.string(table + "/@data-bucket-ms")) / 1000.0;
  const auto columns = page.count(table + "//h:th") - 2;  // less the time and the mark
  ASSERT_GE(columns, 2) << "the storm's owner and the summed ends";
  double drawn = 0;
  for (long k = 0; k < columns; ++k) {
    for (const auto& cell : page.strings(fmt::format("{}/h:tbody/h:tr/h:td[{}][. != '']", table, k + 2))) {
      drawn += std::stod(cell) * bucket_s;
    }
  }
  EXPECT_NEAR(drawn, static_cast<double>(ends), 0.5);
  std::cout << fmt::format(
      "[ figures  ] storm: {} connections in 30 s, {} ends heard, {} kept whole, {} summed, "
      "{} overruns\n",
      made, c["heard"].get<long>(), c["kept_whole"].get<long>(), c["summed"].get<long>(), c["overruns"].get<long>());
}
