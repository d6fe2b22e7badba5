// --all-netns and --netns through the built collector: sockets made inside two namespaces the test
// creates with `ip netns add` land in their own namespace's snapshot, and nowhere else.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <set>

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

const std::string k_collect = SOCKHIST_COLLECT_BIN;

std::uint64_t inode_of_path(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

class Namespaces : public testing::Test {
 protected:
  void SetUp() override {
    const auto ip = find_tool("ip");
    if (ip.empty()) {
      GTEST_SKIP() << "no ip(8) binary to create network namespaces";
    }
    for (const auto& name : {m_a, m_b}) {
      const auto r = run(ip, {"netns", "add", name});
      if (r.exit_code != 0) {
        GTEST_SKIP() << "cannot create network namespaces here (ip netns add: " << r.err
                     << "); this test runs in CI as root";
      }
      m_created.push_back(name);
    }
    for (const auto& name : {m_a, m_b}) {
      run_in_netns("/run/netns/" + name, [] {
        std::string why;
        if (!bring_up_loopback(why)) {
          throw std::runtime_error(why);
        }
      });
    }
    // A listener and an established pair in A; a listener and a UDP socket in B.
    run_in_netns("/run/netns/" + m_a, [this] {
      m_listen_a = listen_tcp(4);
      m_pair_a = connect_pair(4, m_listen_a);
    });
    run_in_netns("/run/netns/" + m_b, [this] {
      m_listen_b = listen_tcp(4);
      m_udp_b = udp_bound(4);
    });
    m_port_a = local_port(m_listen_a);
    m_port_b = local_port(m_listen_b);
  }

  void TearDown() override {
    m_listen_a.reset();
    m_listen_b.reset();
    m_pair_a.client.reset();
    m_pair_a.server.reset();
    m_udp_b.reset();
    for (const auto& name : m_created) {
      run(find_tool("ip"), {"netns", "del", name});
    }
  }

  // The LISTEN ports of each namespace's newest snapshot, by namespace inode.
  static std::map<std::int64_t, std::set<int>> listeners(SQLite::Database& db) {
    std::map<std::int64_t, std::set<int>> out;
    SQLite::Statement q(db,
                        "SELECT netns, local_port FROM v_snapshot_sockets WHERE state = 'LISTEN' AND snapshot_id IN "
                        "(SELECT max(snapshot_id) FROM v_snapshots GROUP BY netns)");
    while (q.executeStep()) {
      out[q.getColumn(0).getInt64()].insert(q.getColumn(1).getInt());
    }
    SQLite::Statement all(db, "SELECT DISTINCT netns FROM v_snapshots");
    while (all.executeStep()) {
      out[all.getColumn(0).getInt64()];
    }
    return out;
  }

  const std::string m_a = "sockhist-test-a-" + std::to_string(::getpid());
  const std::string m_b = "sockhist-test-b-" + std::to_string(::getpid());
  std::vector<std::string> m_created;
  Fd m_listen_a, m_listen_b, m_udp_b;
  Pair m_pair_a;
  int m_port_a = 0, m_port_b = 0;
};

}  // namespace

TEST_F(Namespaces, AllNetnsPutsEachSocketInItsOwnNamespace) {
  const auto dir = scratch_dir("all-netns");
  const auto db_path = dir / "n.db";
  const auto r = run(k_collect, {"--db", db_path.string(), "--all-netns", "--retain", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto db = store::open_read_only(db_path);
  const auto inode_a = static_cast<std::int64_t>(inode_of_path("/run/netns/" + m_a));
  const auto inode_b = static_cast<std::int64_t>(inode_of_path("/run/netns/" + m_b));
  const auto by_netns = listeners(db);
  ASSERT_TRUE(by_netns.contains(inode_a));
  ASSERT_TRUE(by_netns.contains(inode_b));
  EXPECT_EQ(by_netns.at(inode_a), (std::set<int>{m_port_a}));
  EXPECT_EQ(by_netns.at(inode_b), (std::set<int>{m_port_b}));
  for (const auto& [netns, ports] : by_netns) {
    if (netns != inode_a && netns != inode_b) {
      EXPECT_FALSE(ports.contains(m_port_a) && ports.contains(m_port_b)) << "netns " << netns;
    }
  }
  // Names, the initial namespace, owners across namespaces, and a namespace's own counters.
  SQLite::Statement names(db, "SELECT netns_name, netns_initial FROM v_snapshots WHERE netns = ?");
  names.bind(1, inode_a);
  ASSERT_TRUE(names.executeStep());
  EXPECT_EQ(names.getColumn(0).getString(), m_a);
  EXPECT_EQ(names.getColumn(1).getInt(), 0);
  EXPECT_EQ(db.execAndGet("SELECT count(*) FROM v_snapshots WHERE netns_initial = 1").getInt(), 1);
  EXPECT_EQ(db.execAndGet(fmt::format("SELECT count(*) FROM v_snapshot_sockets WHERE netns = {} AND pid = {} AND "
                                      "state = 'ESTABLISHED'",
                                      inode_a, ::getpid()))
                .getInt(),
            2);
  EXPECT_EQ(
      db.execAndGet(fmt::format("SELECT count(*) FROM v_snapshot_sockets WHERE netns = {} AND proto = 'udp'", inode_b))
          .getInt(),
      1);
  EXPECT_EQ(db.execAndGet(fmt::format("SELECT value FROM v_counters WHERE netns = {} AND section = 'Tcp' AND name = "
                                      "'CurrEstab'",
                                      inode_a))
                .getInt(),
            2);
  EXPECT_EQ(db.execAndGet(fmt::format("SELECT value FROM v_counters WHERE netns = {} AND section = 'Tcp' AND name = "
                                      "'CurrEstab'",
                                      inode_b))
                .getInt(),
            0);
}

TEST_F(Namespaces, NetnsByNamePidAndPath) {
  const auto dir = scratch_dir("one-netns");
  const auto db_path = dir / "o.db";
  // A process living in A, to name the namespace by pid.
  const pid_t child = ::fork();
  if (child == 0) {
    const int ns = ::open(("/run/netns/" + m_a).c_str(), O_RDONLY);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) {
      ::_exit(1);
    }
    ::pause();
    ::_exit(0);
  }
  ::usleep(100'000);
  const auto by_name = run(k_collect, {"--db", db_path.string(), "--netns", m_a});
  const auto by_pid = run(k_collect, {"--db", db_path.string(), "--netns", std::to_string(child)});
  const auto by_path = run(k_collect, {"--db", db_path.string(), "--netns", "/run/netns/" + m_b});
  const auto missing = run(k_collect, {"--db", db_path.string(), "--netns", "sockhist-no-such-netns"});
  ::kill(child, SIGKILL);
  wait_child(child);
  ASSERT_EQ(by_name.exit_code, 0) << by_name.err;
  ASSERT_EQ(by_pid.exit_code, 0) << by_pid.err;
  ASSERT_EQ(by_path.exit_code, 0) << by_path.err;
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("sockhist-no-such-netns"), std::string::npos) << missing.err;
  auto db = store::open_read_only(db_path);
  const auto inode_a = static_cast<std::int64_t>(inode_of_path("/run/netns/" + m_a));
  const auto inode_b = static_cast<std::int64_t>(inode_of_path("/run/netns/" + m_b));
  SQLite::Statement q(db, "SELECT netns, netns_name, netns_pid FROM v_snapshots ORDER BY snapshot_id");
  ASSERT_TRUE(q.executeStep());
  EXPECT_EQ(q.getColumn(0).getInt64(), inode_a);
  EXPECT_EQ(q.getColumn(1).getString(), m_a);
  ASSERT_TRUE(q.executeStep());
  EXPECT_EQ(q.getColumn(0).getInt64(), inode_a);
  EXPECT_EQ(q.getColumn(2).getInt(), child);
  ASSERT_TRUE(q.executeStep());
  EXPECT_EQ(q.getColumn(0).getInt64(), inode_b);
  EXPECT_FALSE(q.executeStep());
  EXPECT_EQ(listeners(db).at(inode_b), (std::set<int>{m_port_b}));
}

// A database of two named namespaces and not the host's own: hosts lists them, a command without
// --netns names them in its error, $SOCKHIST_NETNS and --netns choose one, diff takes --netns.
TEST_F(Namespaces, NamespacesAtFirstContact) {
  const auto dir = scratch_dir("first-contact");
  const auto db = (dir / "n.db").string();
  for (int i = 0; i < 2; ++i) {
    const auto r = run(k_collect, {"--db", db, "--netns", m_a, "--netns", m_b});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const std::string analyzer = SOCKHIST_ANALYZER_BIN;
  const auto hosts = run(analyzer, {"hosts", "--db", db});
  EXPECT_EQ(hosts.exit_code, 0) << hosts.err;
  EXPECT_NE(hosts.out.find(m_a + " ("), std::string::npos) << hosts.out;
  EXPECT_NE(hosts.out.find(m_b + " ("), std::string::npos) << hosts.out;
  const auto bare = run(analyzer, {"snapshots", "--db", db});
  EXPECT_EQ(bare.exit_code, 2);
  EXPECT_NE(bare.err.find("--netns is required"), std::string::npos) << bare.err;
  EXPECT_NE(bare.err.find(m_a), std::string::npos) << bare.err;
  EXPECT_NE(bare.err.find(m_b), std::string::npos) << bare.err;
  ::setenv("SOCKHIST_NETNS", m_b.c_str(), 1);
  const auto by_env = run(analyzer, {"snapshots", "--db", db});
  const auto by_option = run(analyzer, {"--netns", m_a, "snapshots", "--db", db});  // the option wins
  const auto diff = run(analyzer, {"diff", "--db", db, "--at", "0s", "--at", "0s"});
  ::unsetenv("SOCKHIST_NETNS");
  EXPECT_EQ(by_env.exit_code, 0) << by_env.err;
  EXPECT_NE(by_env.out.find("(" + m_b + ")"), std::string::npos) << by_env.out;
  EXPECT_EQ(by_option.exit_code, 0) << by_option.err;
  EXPECT_NE(by_option.out.find("(" + m_a + ")"), std::string::npos) << by_option.out;
  EXPECT_EQ(diff.exit_code, 0) << diff.err;
  const auto diff_option = run(analyzer, {"diff", "--db", db, "--netns", m_a, "--at", "0s", "--at", "0s"});
  EXPECT_EQ(diff_option.exit_code, 0) << diff_option.err;
}
