// --all-netns and --netns through the built collector: sockets made inside two namespaces the test
// creates with `ip netns add` land in their own namespace's snapshot, and nowhere else.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "files.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "report_page.hpp"
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
  // The report draws sockets per state for every namespace, each with its own sockets; --netns draws one.
  const auto html = (dir / "report.html").string();
  const auto made = run(SOCKHIST_ANALYZER_BIN, {"report", "--db", db_path.string(), "--utc", "-o", html});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const Page page(html);
  const auto count_at = [&](const std::string& chart, const std::string& series) {
    const auto headings = page.strings(chart + "//h:table[@class='numbers-table']//h:th");
    const auto cells = page.strings(chart + "//h:table[@class='numbers-table']/h:tbody/h:tr[h:td[2] != ''][1]/h:td");
    for (std::size_t i = 0; i < headings.size() && i < cells.size(); ++i) {
      if (headings[i] == series) {
        return cells[i];
      }
    }
    return std::string("(no such series)");
  };
  const auto chart_a = fmt::format("//h:section[@id='chart-states-{}']", m_a);
  const auto chart_b = fmt::format("//h:section[@id='chart-states-{}']", m_b);
  EXPECT_EQ(page.count("//h:section[@id='chart-states']"), 1);
  EXPECT_EQ(page.string(chart_a + "/h:h2"), fmt::format("Sockets per state, namespace {} ({})", m_a, inode_a));
  EXPECT_EQ(count_at(chart_a, "ESTABLISHED"), "2");
  EXPECT_EQ(count_at(chart_a, "LISTEN"), "1");
  EXPECT_EQ(count_at(chart_b, "LISTEN"), "1");
  EXPECT_EQ(count_at(chart_b, "UDP"), "1");
  const auto one = run(SOCKHIST_ANALYZER_BIN, {"report", "--db", db_path.string(), "--netns", m_b, "-o", html});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const Page only_b(html);
  EXPECT_EQ(only_b.count("//h:section[starts-with(@id, 'chart-states')]"), 1);
  EXPECT_EQ(only_b.string("//h:section[@id='chart-states']/h:h2"),
            fmt::format("Sockets per state, namespace {} ({})", m_b, inode_b));
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

namespace {

// A namespace made with `ip netns add NAME` on the inode `want` once the kernel has freed it
// (deletion completes in the background): up to 45 s. The kernel hands out the lowest free inode,
// so a namespace that lands in a hole below `want` (one another namespace left meanwhile) is kept
// alive under a placeholder name until `want` is the lowest free; placeholders go at the end. 0 when
// the kernel never gave `want`.
std::uint64_t add_netns_on_inode(const std::string& name, std::uint64_t want) {
  const auto ip = find_tool("ip");
  const std::string path = "/run/netns/" + name;
  std::vector<std::string> placeholders;
  std::uint64_t got = 0;
  for (int attempt = 0; attempt < 225 && got == 0; ++attempt) {
    if (run(ip, {"netns", "add", name}).exit_code != 0) {
      break;
    }
    const auto inode = inode_of_path(path);
    if (inode == want) {
      got = want;
    } else if (inode < want) {
      // Move it aside, as `ip netns` keeps a namespace: a bind mount of its file.
      const std::string placeholder = fmt::format("/run/netns/{}-hole-{}", name, attempt);
      const int fd = ::open(placeholder.c_str(), O_CREAT | O_EXCL | O_RDONLY | O_CLOEXEC, 0444);
      if (fd < 0 || ::mount(path.c_str(), placeholder.c_str(), nullptr, MS_BIND, nullptr) != 0) {
        break;
      }
      ::close(fd);
      placeholders.push_back(placeholder);
      ::umount2(path.c_str(), MNT_DETACH);
      ::unlink(path.c_str());
    } else {
      run(ip, {"netns", "del", name});  // ours is not free yet
      ::usleep(200'000);
    }
  }
  for (const auto& placeholder : placeholders) {
    ::umount2(placeholder.c_str(), MNT_DETACH);
    ::unlink(placeholder.c_str());
  }
  if (got != 0) {
    run_in_netns(path, [] {
      std::string why;
      if (!bring_up_loopback(why)) {
        throw std::runtime_error(why);
      }
    });
  }
  return got;
}

// What `sockhist show --netns SPEC -tan --format json` listed: its local ports, and its stderr.
std::pair<std::set<int>, std::string> shown_ports(const std::string& db, const std::string& spec) {
  const auto r = run(SOCKHIST_ANALYZER_BIN, {"show", "--db", db, "--netns", spec, "-tan", "--format", "json"});
  if (r.exit_code != 0) {
    throw std::runtime_error("sockhist show --netns " + spec + ": " + r.err);
  }
  std::set<int> ports;
  const auto shown = nlohmann::json::parse(r.out);
  for (const auto& row : shown["rows"]) {
    ports.insert(row["local_port"].get<int>());
  }
  return {ports, r.err};
}

}  // namespace

// After `ip netns del`, the kernel gives a new namespace the deleted one's inode. The new one's
// snapshot must start a namespace of its own: the old one keeps its name, its snapshots and its
// open sockets; --netns by name finds each; by inode, the newest, saying so.
TEST(NamespaceIdentity, AReusedInodeIsANewNamespaceAndHistoryStays) {
  const auto ip = find_tool("ip");
  if (ip.empty()) {
    GTEST_SKIP() << "no ip(8) binary to create network namespaces";
  }
  const std::string old_name = fmt::format("shreuse-old-{}", ::getpid());
  const std::string new_name = fmt::format("shreuse-new-{}", ::getpid());
  if (run(ip, {"netns", "add", old_name}).exit_code != 0) {
    GTEST_SKIP() << "cannot create network namespaces here; this test runs in CI as root";
  }
  const auto dir = scratch_dir("netns-reuse");
  const std::string db = (dir / "reuse.db").string();
  const auto collect = [&](const std::string& name) {
    const auto r = run(k_collect, {"--db", db, "--netns", name, "--retain", "0", "--quiet"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  };
  const std::uint64_t inode = inode_of_path("/run/netns/" + old_name);
  int old_port = 0, new_port = 0, third_port = 0;
  {
    Fd listener;
    Pair pair;
    run_in_netns("/run/netns/" + old_name, [&] {
      std::string why;
      ASSERT_TRUE(bring_up_loopback(why)) << why;
      listener = listen_tcp(4);
      pair = connect_pair(4, listener);
    });
    old_port = local_port(listener);
    collect(old_name);
    collect(old_name);
  }  // its sockets closed, so that deleting it frees it
  // Deletes `gone`, makes `name` on its inode and snapshots it holding one listener: the port, or 0
  // when the kernel gave another inode.
  const auto recreate = [&](const std::string& gone, const std::string& name) {
    run(ip, {"netns", "del", gone});
    if (add_netns_on_inode(name, inode) == 0) {
      return 0;
    }
    Fd listener;
    run_in_netns("/run/netns/" + name, [&] { listener = listen_tcp(4); });
    collect(name);
    return static_cast<int>(local_port(listener));
  };
  new_port = recreate(old_name, new_name);
  if (new_port == 0) {
    GTEST_SKIP() << "the kernel did not give a new namespace the deleted one's inode within 45 s";
  }
  third_port = recreate(new_name, old_name);  // once more under the first name: one name, two namespaces
  if (third_port == 0) {
    GTEST_SKIP() << "the kernel did not reuse the inode a second time within 45 s";
  }
  run(ip, {"netns", "del", old_name});

  SQLite::Database conn(db, SQLite::OPEN_READONLY);
  const auto ids = [&] {
    std::vector<std::int64_t> out;
    SQLite::Statement q(conn, fmt::format("SELECT netns_id FROM netns WHERE inode = {} ORDER BY netns_id", inode));
    while (q.executeStep()) {
      out.push_back(q.getColumn(0).getInt64());
    }
    return out;
  }();
  ASSERT_EQ(ids.size(), 3U) << "each namespace on the reused inode is a namespace of its own";
  const auto scalar = [&](const std::string& sql) { return conn.execAndGet(sql).getInt64(); };
  // The first namespace's history is as recorded: its name, two snapshots, its three sockets
  // still open at its last snapshot (nothing closed them), and its own cookie.
  EXPECT_EQ(conn.execAndGet(fmt::format("SELECT name FROM netns WHERE netns_id = {}", ids[0])).getString(), old_name);
  EXPECT_EQ(scalar(fmt::format("SELECT count(*) FROM snapshots WHERE netns_id = {}", ids[0])), 2);
  EXPECT_EQ(scalar(fmt::format("SELECT count(*) FROM socket_spans WHERE netns_id = {} AND last_snapshot_id = "
                               "2147483647 AND state_id IN (SELECT state_id FROM socket_states WHERE proto = 'tcp')",
                               ids[0])),
            3);
  EXPECT_EQ(conn.execAndGet(fmt::format("SELECT name FROM netns WHERE netns_id = {}", ids[1])).getString(), new_name);
  EXPECT_EQ(scalar("SELECT count(DISTINCT netns_cookie) FROM snapshots WHERE netns_cookie IS NOT NULL"), 3);
  // --netns by name, by '#ID' and by inode (the newest, with a note naming the others).
  EXPECT_EQ(shown_ports(db, new_name).first, (std::set<int>{new_port}));
  const auto [by_name, name_note] = shown_ports(db, old_name);
  EXPECT_EQ(by_name, (std::set<int>{third_port})) << "the newest namespace of that name";
  EXPECT_NE(name_note.find(fmt::format("#{}", ids[0])), std::string::npos) << name_note;
  const auto [first_ports, first_note] = shown_ports(db, fmt::format("#{}", ids[0]));
  EXPECT_TRUE(first_ports.contains(old_port)) << "the first namespace's sockets, as its last snapshot saw them";
  EXPECT_EQ(first_ports.size(), 2U);  // the listener's port and the client's
  EXPECT_EQ(first_note, "");
  const auto [by_inode, inode_note] = shown_ports(db, std::to_string(inode));
  EXPECT_EQ(by_inode, (std::set<int>{third_port}));
  EXPECT_NE(inode_note.find("names 3 namespaces"), std::string::npos) << inode_note;
  // hosts lists the three, told apart.
  const auto hosts = run(SOCKHIST_ANALYZER_BIN, {"hosts", "--db", db, "--format", "json"});
  ASSERT_EQ(hosts.exit_code, 0) << hosts.err;
  const auto list = nlohmann::json::parse(hosts.out)["rows"][0]["namespace_list"];
  std::set<std::string> labels(list.begin(), list.end());
  for (const auto id : ids) {
    EXPECT_TRUE(std::any_of(labels.begin(), labels.end(), [&](const std::string& l) {
      return l.ends_with(fmt::format("#{}", id));
    })) << hosts.out;
  }
}
