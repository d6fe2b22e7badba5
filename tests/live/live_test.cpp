// End to end through the built sockhist-collect, on real sockets this test makes: each lands in the
// snapshot with the right state, this process as owner, a TIME_WAIT timer within 60 s and its
// owner carried forward; ss sees the same TCP sockets; an unchanged population writes nothing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include "files.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "sockets.hpp"
#include "sockhist/store.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

std::string own_comm() {
  std::ifstream in("/proc/self/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

struct Found {
  std::string state;
  std::int64_t pid = 0;
  std::string process;
  std::string timer;
  std::int64_t timer_ms = 0;
  int owner_carried = 0;
  std::int64_t inode = 0;
};

// The sockets of one snapshot, keyed by "proto local_addr:local_port remote_addr:remote_port".
std::multimap<std::string, Found> sockets_of(SQLite::Database& db, std::int64_t snapshot) {
  SQLite::Statement q(db,
                      "SELECT proto, local_addr, coalesce(local_port, 0), coalesce(remote_addr, ''), "
                      "coalesce(remote_port, 0), state, coalesce(pid, 0), coalesce(process, ''), timer, timer_ms, "
                      "owner_carried, inode FROM v_snapshot_sockets WHERE snapshot_id = ?");
  q.bind(1, snapshot);
  std::multimap<std::string, Found> out;
  while (q.executeStep()) {
    const std::string key = q.getColumn(0).getString() + " " + q.getColumn(1).getString() + ":" +
                            std::to_string(q.getColumn(2).getInt()) + " " + q.getColumn(3).getString() + ":" +
                            std::to_string(q.getColumn(4).getInt());
    out.emplace(key, Found{q.getColumn(5).getString(), q.getColumn(6).getInt64(), q.getColumn(7).getString(),
                           q.getColumn(8).getString(), q.getColumn(9).getInt64(), q.getColumn(10).getInt(),
                           q.getColumn(11).getInt64()});
  }
  return out;
}

std::string key(const char* proto, const std::string& local, int lport, const std::string& remote, int rport) {
  return std::string(proto) + " " + local + ":" + std::to_string(lport) + " " + remote + ":" + std::to_string(rport);
}

// TCP sockets as `ss -tan` prints them, in netstat's state names: "STATE local:port remote:port".
std::multiset<std::string> ss_view() {
  const auto result = run("/usr/bin/ss", {"-tanH"});
  static const std::map<std::string, std::string> names = {
      {"ESTAB", "ESTABLISHED"},     {"SYN-SENT", "SYN_SENT"},    {"SYN-RECV", "SYN_RECV"},
      {"FIN-WAIT-1", "FIN_WAIT1"},  {"FIN-WAIT-2", "FIN_WAIT2"}, {"TIME-WAIT", "TIME_WAIT"},
      {"CLOSE-WAIT", "CLOSE_WAIT"}, {"LAST-ACK", "LAST_ACK"},    {"LISTEN", "LISTEN"},
      {"CLOSING", "CLOSING"},       {"UNCONN", "CLOSE"}};
  std::multiset<std::string> out;
  std::istringstream lines(result.out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string state, recvq, sendq, local, remote;
    fields >> state >> recvq >> sendq >> local >> remote;
    const auto strip = [](std::string endpoint) {
      // "[::1]:8080" -> "::1:8080", "*:*" stays.
      if (!endpoint.empty() && endpoint[0] == '[') {
        const auto close = endpoint.find(']');
        endpoint = endpoint.substr(1, close - 1) + endpoint.substr(close + 1);
      }
      return endpoint;
    };
    out.insert(names.at(state) + " " + strip(local) + " " + strip(remote));
  }
  return out;
}

std::multiset<std::string> stored_tcp_view(SQLite::Database& db, std::int64_t snapshot) {
  SQLite::Statement q(db,
                      "SELECT state, local_addr, local_port, remote_addr, remote_port FROM v_snapshot_sockets "
                      "WHERE snapshot_id = ? AND proto = 'tcp'");
  q.bind(1, snapshot);
  std::multiset<std::string> out;
  while (q.executeStep()) {
    // ss prints a zero port as '*'.
    const auto endpoint = [](const std::string& addr, int port) {
      return addr + ":" + (port == 0 ? std::string("*") : std::to_string(port));
    };
    out.insert(q.getColumn(0).getString() + " " + endpoint(q.getColumn(1).getString(), q.getColumn(2).getInt()) + " " +
               endpoint(q.getColumn(3).getString(), q.getColumn(4).getInt()));
  }
  return out;
}

}  // namespace

TEST(Live, EverySocketMadeIsRecordedWithItsOwner) {
  std::string why;
  const bool isolated = enter_private_netns(why);
  if (!isolated) {
    std::cout << "[ NOTE     ] running in the shared network namespace (" << why
              << "): assertions are limited to this test's own sockets\n";
  }
  const auto dir = scratch_dir("live");
  const std::string db_path = (dir / "live.db").string();

  Population pop = make_population(dir.string(), false);
  const int port4 = pop.port4;
  const int port6 = pop.port6;
  const std::string unix_path = pop.unix_path;
  const std::vector<std::string> args = {"--db", db_path, "--retain", "0"};
  const auto first = run(SOCKHIST_COLLECT_BIN, args);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, "");  // silent on success when not on a terminal (cron)
  EXPECT_EQ(first.err, "");

  finish_time_wait(pop);
  const int tw_port = pop.time_wait_port;
  const auto second = run(SOCKHIST_COLLECT_BIN, args);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const auto ss_now = ss_view();
  const auto third = run(SOCKHIST_COLLECT_BIN, args);
  ASSERT_EQ(third.exit_code, 0) << third.err;

  auto db = store::open_read_only(db_path);
  const auto snapshot = sockets_of(db, 2);
  const std::int64_t me = ::getpid();
  const std::string comm = own_comm();
  const auto expect_one = [&](const std::string& k, const std::string& state, bool owned) {
    const auto [begin, end] = snapshot.equal_range(k);
    ASSERT_EQ(std::distance(begin, end), 1) << k;
    EXPECT_EQ(begin->second.state, state) << k;
    if (owned) {
      EXPECT_EQ(begin->second.pid, me) << k;
      EXPECT_EQ(begin->second.process, comm) << k;
      EXPECT_EQ(begin->second.owner_carried, 0) << k;
    }
  };
  expect_one(key("tcp", "127.0.0.1", port4, "0.0.0.0", 0), "LISTEN", true);
  expect_one(key("tcp", "::1", port6, "::", 0), "LISTEN", true);
  expect_one(key("tcp", "127.0.0.1", local_port(pop.est4.client), "127.0.0.1", port4), "ESTABLISHED", true);
  expect_one(key("tcp", "127.0.0.1", port4, "127.0.0.1", local_port(pop.est4.client)), "ESTABLISHED", true);
  expect_one(key("tcp", "::1", local_port(pop.est6.client), "::1", port6), "ESTABLISHED", true);
  expect_one(key("udp", "127.0.0.1", local_port(pop.udp4), "0.0.0.0", 0), "CLOSE", true);
  expect_one(key("udp", "::1", local_port(pop.udp6), "::", 0), "CLOSE", true);
  // The kernel prints the listener's path on the ends accept() returned too.
  std::multiset<std::string> unix_states;
  for (auto [it, end] = snapshot.equal_range(key("unix", unix_path, 0, "", 0)); it != end; ++it) {
    unix_states.insert(it->second.state);
    EXPECT_EQ(it->second.pid, me);
  }
  EXPECT_EQ(unix_states, (std::multiset<std::string>{"CONNECTED", "LISTENING"}));
  // The CLOSE_WAIT server end: we hold it and never close it.
  bool found_close_wait = false;
  for (const auto& [k, v] : snapshot) {
    if (v.state == "CLOSE_WAIT" && k.starts_with(key("tcp", "127.0.0.1", port4, "", 0).substr(0, 14))) {
      found_close_wait = true;
      EXPECT_EQ(v.pid, me);
    }
  }
  EXPECT_TRUE(found_close_wait);
  // The client that closed first is in TIME_WAIT, with the owner carried from its ESTABLISHED life.
  const auto tw = snapshot.equal_range(key("tcp", "127.0.0.1", tw_port, "127.0.0.1", port4));
  ASSERT_EQ(std::distance(tw.first, tw.second), 1);
  EXPECT_EQ(tw.first->second.state, "TIME_WAIT");
  EXPECT_EQ(tw.first->second.timer, "timewait");
  EXPECT_GT(tw.first->second.timer_ms, 0);
  EXPECT_LE(tw.first->second.timer_ms, 60'000);
  EXPECT_EQ(tw.first->second.inode, 0);
  EXPECT_EQ(tw.first->second.pid, me);
  EXPECT_EQ(tw.first->second.owner_carried, 1);

  // The unchanged population: the third snapshot opens and closes no span.
  SQLite::Statement writes(db,
                           "SELECT spans_opened, spans_closed, counter_rows, socket_count FROM snapshots "
                           "WHERE snapshot_id = ?");
  writes.bind(1, 1);
  ASSERT_TRUE(writes.executeStep());
  const auto first_counters = writes.getColumn(2).getInt64();
  EXPECT_GT(writes.getColumn(0).getInt64(), 10);
  writes.reset();
  writes.bind(1, 3);
  ASSERT_TRUE(writes.executeStep());
  if (isolated) {
    EXPECT_EQ(writes.getColumn(0).getInt64(), 0);
    EXPECT_EQ(writes.getColumn(1).getInt64(), 0);
    EXPECT_LT(writes.getColumn(2).getInt64() * 10, first_counters);
    // ss, run between the second and third snapshots, sees exactly the TCP sockets stored.
    EXPECT_EQ(stored_tcp_view(db, 3), ss_now);
  } else {
    for (const auto& [k, v] : sockets_of(db, 3)) {
      if (v.pid == me) {
        EXPECT_EQ(db.execAndGet("SELECT count(*) FROM socket_spans WHERE first_snapshot_id = 3 AND process_id = "
                                "(SELECT process_id FROM processes WHERE pid = " +
                                std::to_string(me) + ")")
                      .getInt(),
                  0);
        break;
      }
    }
  }
}

TEST(Live, NoCmdlineStoresNone) {
  const auto dir = scratch_dir("no-cmdline");
  const std::string db_path = (dir / "c.db").string();
  Fd listener = listen_tcp(4);
  ASSERT_EQ(run(SOCKHIST_COLLECT_BIN, {"--db", db_path, "--no-cmdline"}).exit_code, 0);
  auto db = store::open_read_only(db_path);
  EXPECT_GT(db.execAndGet("SELECT count(*) FROM processes").getInt(), 0);
  EXPECT_EQ(db.execAndGet("SELECT count(*) FROM processes WHERE cmdline IS NOT NULL").getInt(), 0);
  const auto with = dir / "d.db";
  ASSERT_EQ(run(SOCKHIST_COLLECT_BIN, {"--db", with.string()}).exit_code, 0);
  auto db2 = store::open_read_only(with);
  EXPECT_GT(db2.execAndGet("SELECT count(*) FROM processes WHERE cmdline LIKE '%live_test%'").getInt(), 0);
}

// A second snapshot by a new process (cron) compares each socket with its open span as it reads
// it and keeps only what changed. What it stores must still be the whole moment: ss's sockets,
// a socket handed to another process under its new owner, a grown queue, and the count of all.
// Through netlink, and through /proc's text (read while the store reads its open spans back, the
// sockets read meanwhile held and sieved once it has).
class LiveSieve : public testing::TestWithParam<std::string> {};

TEST_P(LiveSieve, ASecondSnapshotStoresTheWholeMomentWhileLeavingOutWhatIsUnchanged) {
  std::string why;
  if (!enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root): " << why;
  }
  const auto dir = scratch_dir("live-sieve-" + GetParam());
  const std::string db_path = (dir / "sieve.db").string();
  const std::vector<std::string> args = {"--db", db_path, "--retain", "0", "--source", GetParam()};
  Population pop = make_population(dir.string(), true);
  std::vector<Pair> pairs;
  for (int i = 0; i < 40; ++i) {
    pairs.push_back(connect_pair(i % 2 == 0 ? 4 : 6, i % 2 == 0 ? pop.listener4 : pop.listener6));
  }
  ASSERT_EQ(run(SOCKHIST_COLLECT_BIN, args).exit_code, 0);

  // Between the snapshots: one connection is handed to a child process (the parent closes its
  // copy), one gains unread bytes, one closes, one is new; the other 37 and the rest stay.
  const int handed_port = local_port(pairs[0].client);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    for (int fd = 3; fd < 1024; ++fd) {  // keep only the handed socket and the pipe
      if (fd != pairs[0].client.get() && fd != ready[1]) {
        ::close(fd);
      }
    }
    (void)::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  pairs[0].client = Fd();
  ASSERT_EQ(::send(pairs[1].client.get(), "hello", 5, 0), 5);
  const int closed_port = local_port(pairs[2].client);
  pairs[2] = Pair{};
  pairs.push_back(connect_pair(4, pop.listener4));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  const auto ss_before = ss_view();
  const auto second = run(SOCKHIST_COLLECT_BIN, args);
  const auto ss_after = ss_view();
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  ASSERT_EQ(ss_before, ss_after) << "the population moved while it was captured";

  auto db = store::open_read_only(db_path);
  EXPECT_EQ(stored_tcp_view(db, 2), ss_before) << "the second snapshot holds every TCP socket ss shows";
  const auto snapshot = sockets_of(db, 2);
  EXPECT_EQ(db.execAndGet("SELECT socket_count FROM snapshots WHERE snapshot_id = 2").getInt64(),
            static_cast<std::int64_t>(snapshot.size()))
      << "the count includes the sockets that were left out";
  const auto handed = snapshot.equal_range(key("tcp", "127.0.0.1", handed_port, "127.0.0.1", pop.port4));
  ASSERT_EQ(std::distance(handed.first, handed.second), 1);
  EXPECT_EQ(handed.first->second.pid, child) << "the handed socket is stored under its new owner";
  const auto closed = snapshot.equal_range(key("tcp", "127.0.0.1", closed_port, "127.0.0.1", pop.port4));
  ASSERT_EQ(std::distance(closed.first, closed.second), 1);
  EXPECT_EQ(closed.first->second.state, "TIME_WAIT") << "the closed client's end waits out 2*MSL";
  EXPECT_EQ(db.execAndGet(fmt::format("SELECT rx_queue FROM v_snapshot_sockets WHERE snapshot_id = 2 AND "
                                      "remote_port = {} AND local_port = {}",
                                      local_port(pairs[1].client), pop.port6))
                .getInt64(),
            5)
      << "the reader's unread bytes are this snapshot's";
  // What changed is all that was written: the handed socket's new span, the new connection's two
  // ends, the closed connection's TIME_WAIT end, and one values row for the unread bytes.
  SQLite::Statement writes(db, "SELECT spans_opened, value_rows FROM snapshots WHERE snapshot_id = 2");
  ASSERT_TRUE(writes.executeStep());
  EXPECT_GE(writes.getColumn(0).getInt64(), 4);
  EXPECT_LE(writes.getColumn(0).getInt64(), 6);
  EXPECT_EQ(writes.getColumn(1).getInt64(), 1);
}

INSTANTIATE_TEST_SUITE_P(Sources, LiveSieve, testing::Values("netlink", "proc"),
                         [](const testing::TestParamInfo<std::string>& param) { return param.param; });
