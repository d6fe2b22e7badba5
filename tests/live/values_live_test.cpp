// Each snapshot's own Recv-Q, Send-Q and timer against ss and netstat taken at the same moments,
// on sockets whose queues change while they stay in one state: a listener whose accept queue
// fills (nobody calls accept), a reader that stops reading, and a CLOSE_WAIT socket whose owner
// reads part of what was left. In a private network namespace, so the sockets are the test's own.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "files.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "sockets.hpp"

using namespace sockhist::test;

namespace {

// Recv-Q and Send-Q of one TCP socket as a listing tool printed them.
struct Queues {
  long recv_q = -1;
  long send_q = -1;
  bool operator==(const Queues&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Queues& q) {
  return os << "Recv-Q " << q.recv_q << " Send-Q " << q.send_q;
}

// `ss -Htan`: State Recv-Q Send-Q Local Peer, keyed by "local peer".
std::map<std::string, Queues> ss_queues() {
  const auto r = run(find_tool("ss"), {"-Htan"});
  std::map<std::string, Queues> out;
  std::istringstream lines(r.out);
  std::string state, local, peer;
  Queues q;
  while (lines >> state >> q.recv_q >> q.send_q >> local >> peer) {
    out[local + " " + peer] = q;
  }
  return out;
}

// `netstat -tan`: Proto Recv-Q Send-Q Local Foreign State, keyed by "local peer".
std::map<std::string, Queues> netstat_queues() {
  const auto r = run(find_tool("netstat"), {"-tan"});
  std::map<std::string, Queues> out;
  std::istringstream lines(r.out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string proto, local, peer;
    Queues q;
    if (fields >> proto >> q.recv_q >> q.send_q >> local >> peer && proto.starts_with("tcp")) {
      out[local + " " + peer] = q;
    }
  }
  return out;
}

// What `sockhist show --format json` printed for one snapshot, keyed as the tools' listings.
std::map<std::string, Queues> shown_queues(const std::string& db, std::int64_t snapshot, bool ss_style) {
  const auto r = run(SOCKHIST_ANALYZER_BIN,
                     {"show", "--db", db, "--snapshot", std::to_string(snapshot), "-tan", "--format", "json"});
  if (r.exit_code != 0) {
    throw std::runtime_error("sockhist show failed: " + r.err);
  }
  std::map<std::string, Queues> out;
  const auto shown = nlohmann::json::parse(r.out);
  if (!shown.contains("rows")) {
    throw std::runtime_error("sockhist show printed no rows: " + r.out.substr(0, 2000));
  }
  for (const auto& row : shown["rows"]) {
    const bool listening = row["state"] == "LISTEN";
    // ss prints a listener's peer as 0.0.0.0:*, netstat as 0.0.0.0:*.
    const std::string local = fmt::format("{}:{}", row["local_addr"].get<std::string>(), row["local_port"].get<int>());
    const std::string peer =
        listening ? "0.0.0.0:*"
                  : fmt::format("{}:{}", row["remote_addr"].get<std::string>(), row["remote_port"].get<int>());
    // netstat prints the kernel's send queue for a listener (0): the backlog is ss's alone.
    const long send_q = listening && !ss_style ? 0 : row["send_q"].get<long>();
    out[local + " " + peer] = Queues{row["recv_q"].get<long>(), send_q};
  }
  return out;
}

std::int64_t collect(const std::string& db, const std::string& source) {
  const auto r = run(SOCKHIST_COLLECT_BIN, {"--db", db, "--source", source, "--quiet"});
  if (r.exit_code != 0) {
    throw std::runtime_error("sockhist-collect failed: " + r.err);
  }
  SQLite::Database conn(db, SQLite::OPEN_READONLY);
  return conn.execAndGet("SELECT max(snapshot_id) FROM snapshots").getInt64();
}

std::int64_t value_rows(const std::string& db, std::int64_t snapshot) {
  SQLite::Database conn(db, SQLite::OPEN_READONLY);
  return conn.execAndGet(fmt::format("SELECT value_rows FROM snapshots WHERE snapshot_id = {}", snapshot)).getInt64();
}

void send_bytes(const Fd& socket, std::size_t n) {
  const std::string data(n, 'x');
  ASSERT_EQ(::send(socket.get(), data.data(), data.size(), 0), static_cast<ssize_t>(n));
}

// Waits until the kernel's view settles (a few ms on loopback).
void settle() {
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
}

class Values : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!enter_private_netns(why)) {
      GTEST_SKIP() << "needs a private network namespace (root): " << why;
    }
    if (find_tool("ss").empty() || find_tool("netstat").empty()) {
      GTEST_SKIP() << "needs ss (iproute2) and netstat (net-tools) as ground truth";
    }
    dir = scratch_dir("values-live");
  }
  std::filesystem::path dir;
};

// A full accept queue and a stuck reader, the reasons to open netstat at all: each snapshot shows
// the queues ss and netstat showed at that moment, not those of the socket's first sighting.
TEST_F(Values, EachSnapshotShowsTheQueuesSsAndNetstatShowed) {
  const Fd listener = listen_tcp(4, 0, 8);
  const int port = local_port(listener);
  std::vector<Fd> waiting;  // connected, never accepted
  const auto connect_more = [&](int n) {
    for (int i = 0; i < n; ++i) {
      Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_port = htons(static_cast<std::uint16_t>(port));
      to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ASSERT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
      waiting.push_back(std::move(c));
    }
  };
  const Fd reader_listener = listen_tcp(4);
  Pair reader = connect_pair(4, reader_listener);
  connect_more(2);
  send_bytes(reader.client, 1000);
  settle();

  const std::string db_netlink = (dir / "netlink.db").string();
  const std::string db_proc = (dir / "proc.db").string();
  struct Moment {
    std::int64_t netlink_id = 0, proc_id = 0;
    std::map<std::string, Queues> ss, netstat;
  };
  const auto moment = [&] {
    Moment m;
    m.ss = ss_queues();
    m.netstat = netstat_queues();
    m.netlink_id = collect(db_netlink, "netlink");
    m.proc_id = collect(db_proc, "proc");
    EXPECT_EQ(ss_queues(), m.ss) << "the population changed while it was captured";
    return m;
  };
  std::vector<Moment> moments;
  moments.push_back(moment());
  connect_more(4);                  // accept queue 2 -> 6
  send_bytes(reader.client, 5000);  // unread 1000 -> 6000
  settle();
  moments.push_back(moment());
  moments.push_back(moment());  // nothing changed

  const std::string listener_key = fmt::format("127.0.0.1:{} 0.0.0.0:*", port);
  const std::string reader_key =
      fmt::format("127.0.0.1:{} 127.0.0.1:{}", local_port(reader.server), local_port(reader.client));
  // The ground truth changed as the test made it.
  EXPECT_EQ(moments[0].ss.at(listener_key), (Queues{2, 8}));
  EXPECT_EQ(moments[1].ss.at(listener_key), (Queues{6, 8}));
  EXPECT_EQ(moments[0].ss.at(reader_key).recv_q, 1000);
  EXPECT_EQ(moments[1].ss.at(reader_key).recv_q, 6000);
  for (std::size_t i = 0; i < moments.size(); ++i) {
    const auto& m = moments[i];
    EXPECT_EQ(shown_queues(db_netlink, m.netlink_id, true), m.ss) << "snapshot " << i << " (netlink) against ss";
    EXPECT_EQ(shown_queues(db_proc, m.proc_id, false), m.netstat) << "snapshot " << i << " (proc) against netstat";
  }
  // Storage follows change: the second snapshot stored the two sockets whose queues changed, the
  // third nothing.
  EXPECT_EQ(value_rows(db_netlink, moments[1].netlink_id), 2);
  EXPECT_EQ(value_rows(db_netlink, moments[2].netlink_id), 0);
  EXPECT_EQ(value_rows(db_proc, moments[2].proc_id), 0);
  // The public view agrees with show.
  SQLite::Database conn(db_netlink, SQLite::OPEN_READONLY);
  for (std::size_t i = 0; i < moments.size(); ++i) {
    EXPECT_EQ(conn.execAndGet(fmt::format("SELECT rx_queue FROM v_snapshot_sockets WHERE snapshot_id = {} AND "
                                          "state = 'LISTEN' AND local_port = {}",
                                          moments[i].netlink_id, port))
                  .getInt64(),
              moments[i].ss.at(listener_key).recv_q);
  }
  std::cout << fmt::format("[ FIGURES  ] listener Recv-Q {} -> {} -> {}, reader Recv-Q {} -> {} -> {} (ss)\n",
                           moments[0].ss.at(listener_key).recv_q, moments[1].ss.at(listener_key).recv_q,
                           moments[2].ss.at(listener_key).recv_q, moments[0].ss.at(reader_key).recv_q,
                           moments[1].ss.at(reader_key).recv_q, moments[2].ss.at(reader_key).recv_q);
}

// close-wait's unread bytes are those of the last snapshot that saw the socket: the owner read
// 600 of the 1,000 bytes the peer left before closing.
TEST_F(Values, CloseWaitUnreadBytesAreThoseOfTheLastSnapshot) {
  const Fd listener = listen_tcp(4);
  Pair pair = connect_pair(4, listener);
  send_bytes(pair.client, 1000);
  const std::string key = fmt::format("127.0.0.1:{} 127.0.0.1:{}", local_port(pair.server), local_port(pair.client));
  const int client_port = local_port(pair.client);
  Fd server = std::move(pair.server);
  pair.client.reset();  // the peer closes: the server end enters CLOSE_WAIT with 1,000 bytes unread
  settle();
  const std::string db = (dir / "close-wait.db").string();
  const auto before = ss_queues();
  collect(db, "netlink");
  std::string buffer(600, '\0');
  ASSERT_EQ(::recv(server.get(), buffer.data(), buffer.size(), MSG_WAITALL), 600);
  settle();
  const auto after = ss_queues();
  collect(db, "netlink");
  ASSERT_EQ(before.at(key).recv_q, 1001);  // the FIN counts one
  ASSERT_EQ(after.at(key).recv_q, 401);
  const auto r = run(SOCKHIST_ANALYZER_BIN, {"close-wait", "--db", db, "--min-age", "0", "--format", "json"});
  ASSERT_LE(r.exit_code, 1) << r.err;
  const auto rows = nlohmann::json::parse(r.out)["rows"];
  ASSERT_EQ(rows.size(), 1U) << r.out;
  EXPECT_EQ(rows[0]["remote"], fmt::format("127.0.0.1:{}", client_port));
  EXPECT_EQ(rows[0]["recv_q"], after.at(key).recv_q);
  EXPECT_EQ(rows[0]["recv_q_first"], before.at(key).recv_q);
}

}  // namespace
