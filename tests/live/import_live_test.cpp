// sockhist import against the collector on a live population (root, a private network
// namespace): the population is snapshotted by the built collector and listed by the real netstat
// and ss, and saved as a sosreport would save it, at the same moment; each listing imported equals
// the collector's snapshot field by field wherever its format carries the field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <set>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "files.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "sockets.hpp"
#include "sockhist/import.hpp"
#include "sockhist/query.hpp"
#include "sockhist/store.hpp"
#include "sosreport.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

const std::string k_sockhist = SOCKHIST_ANALYZER_BIN;

using Key = std::tuple<std::string, std::string, std::int64_t, std::string, std::int64_t, std::string>;
// The sockets of a snapshot (the newest when `snapshot` is 0), by what identifies them.
std::map<Key, query::SocketRow> rows_of(const std::string& db, std::int64_t snapshot = 0) {
  auto conn = store::open_read_only(db);
  SQLite::Statement q(conn, "SELECT max(snapshot_id) FROM snapshots");
  q.executeStep();
  std::map<Key, query::SocketRow> out;
  for (auto& r : query::snapshot_sockets(conn, snapshot != 0 ? snapshot : q.getColumn(0).getInt64())) {
    // A UNIX socket is known by its inode; an Internet one by its endpoints.
    const std::string proto(model::name(r.proto));
    Key key{proto,         r.proto == model::Proto::unix_domain ? std::to_string(r.inode) : r.local_addr,
            r.local_port,  r.remote_addr,
            r.remote_port, std::string(model::name(r.state))};
    out.emplace(std::move(key), std::move(r));
  }
  return out;
}

struct Format {
  const char* tool;
  std::vector<std::string> args;
  bool owners, timers, inodes, uid, unix, udp;
  std::int64_t timer_slack_ms;  // the listing's resolution (and rounding)
};

// How long ago `began` was: an upper bound on how much later than the collector's snapshot a
// listing saved since was read, by which its running timers have counted down.
std::int64_t ms_since(std::chrono::steady_clock::time_point began) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count();
}

// Each socket of the collector's snapshot is in the imported one with every field the format
// carries equal, and the import holds nothing more (of the families the format lists). A timer,
// read up to `later_ms` after the snapshot, is the snapshot's within the listing's resolution, less
// what it counted down meanwhile.
void expect_same_sockets(const std::map<Key, query::SocketRow>& expected, const std::map<Key, query::SocketRow>& got,
                         const Format& f, const std::string& name, std::int64_t later_ms) {
  std::size_t compared = 0;
  for (const auto& [key, want] : expected) {
    const auto& proto = std::get<0>(key);
    if ((proto == "unix" && !f.unix) || (proto == "udp" && !f.udp)) {
      continue;
    }
    const auto it = got.find(key);
    ASSERT_NE(it, got.end()) << name << ": no " << proto << " " << want.local_addr << ":" << want.local_port << " "
                             << want.remote_addr << ":" << want.remote_port << " " << model::name(want.state);
    const auto& g = it->second;
    const auto what = fmt::format("{}: {} {}:{} {}", name, proto, want.local_addr, want.local_port, want.state);
    EXPECT_EQ(g.family, want.family) << what;
    EXPECT_EQ(g.rx_queue, want.rx_queue) << what;
    if (want.state != model::SockState::listen || f.tool != std::string("ss")) {
      EXPECT_EQ(g.tx_queue, want.tx_queue) << what;
    } else {
      EXPECT_EQ(g.backlog, want.backlog) << what;  // ss prints a listener's backlog as Send-Q
    }
    if (f.owners && want.pid && proto != "unix") {
      EXPECT_EQ(g.pid, want.pid) << what;
      ASSERT_TRUE(g.comm) << what;
      // netstat names a process by the start of its command line's first word, ss by its comm.
      EXPECT_TRUE(want.comm->starts_with(*g.comm) || g.comm->starts_with(*want.comm) ||
                  (want.cmdline && want.cmdline->starts_with(*g.comm)))
          << what << ": " << *g.comm << " vs " << *want.comm;
    }
    if (f.inodes || proto == "unix") {
      EXPECT_EQ(g.inode, want.inode) << what;
    }
    if (f.uid) {
      EXPECT_EQ(g.uid, want.uid) << what;
    }
    if (f.timers) {
      EXPECT_EQ(g.timer, want.timer) << what;
      EXPECT_LE(g.timer_ms, want.timer_ms + f.timer_slack_ms) << what;
      EXPECT_GE(g.timer_ms + later_ms + f.timer_slack_ms, want.timer_ms)
          << what << " (read up to " << later_ms << " ms after the snapshot)";
    }
    if (proto == "unix" && f.tool == std::string("ss")) {
      EXPECT_EQ(g.peer_inode, want.peer_inode) << what;
    }
    if (f.tool == std::string("ss") && f.inodes && proto != "unix") {
      EXPECT_EQ(g.cookie, want.cookie) << what;
    }
    ++compared;
  }
  EXPECT_GE(compared, 8U) << name;
  std::size_t listed = 0;
  for (const auto& [key, row] : got) {
    const auto& proto = std::get<0>(key);
    listed += (proto == "unix" && !f.unix) || (proto == "udp" && !f.udp) ? 0 : 1;
  }
  EXPECT_EQ(listed, compared) << name;
}

TEST(ImportLive, EachListingEqualsTheCollectorsSnapshotWhereItsFormatCarriesTheField) {
  std::string why;
  if (!enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root; CI runs it): " << why;
  }
  const auto netstat = find_tool("netstat"), ss = find_tool("ss");
  ASSERT_FALSE(netstat.empty()) << "netstat (net-tools) is installed by dev.sh";
  ASSERT_FALSE(ss.empty()) << "ss (iproute2) is installed by dev.sh";
  const auto dir = scratch_dir("import-live");
  auto population = make_population(dir.string());
  const std::string live = (dir / "live.db").string();
  const auto began = std::chrono::steady_clock::now();
  ASSERT_EQ(run(SOCKHIST_COLLECT_BIN, {"--db", live, "--host", "h1"}).exit_code, 0);
  const std::vector<Format> formats = {
      {"netstat", {"-antp"}, true, false, false, false, false, false, 0},
      {"netstat", {"-neopa"}, true, true, true, true, true, true, 300},
      {"netstat", {"-tunapo"}, true, true, false, false, false, true, 300},
      {"ss", {"-tanp"}, true, false, false, false, false, false, 0},
      {"ss", {"-tanpo"}, true, true, false, false, false, false, 1300},
      {"ss", {"-peaonmi"}, true, true, true, true, true, true, 1300},
  };
  std::vector<std::string> files;
  for (const auto& f : formats) {
    const auto r = run(f.tool == std::string("netstat") ? netstat : ss, f.args);
    ASSERT_EQ(r.exit_code, 0) << f.tool << " " << f.args[0] << ": " << r.err;
    files.push_back((dir / fmt::format("{}{}.txt", f.tool, f.args[0])).string());
    write_text(files.back(), r.out);
  }
  const auto later_ms = ms_since(began);
  const auto expected = rows_of(live);
  for (std::size_t i = 0; i < formats.size(); ++i) {
    const auto& f = formats[i];
    const std::string name = std::string(f.tool) + " " + f.args[0];
    const std::string db = (dir / fmt::format("import{}.db", i)).string();
    const auto r =
        run(k_sockhist, {"import", f.tool, files[i], "--db", db, "--host", "h1", "--at", "2026-11-20T03:12:00Z"});
    ASSERT_EQ(r.exit_code, 0) << name << ": " << r.err;
    expect_same_sockets(expected, rows_of(db), f, name, later_ms);
  }
  finish_time_wait(population);
}

// ss leaves out its Netid column when it lists one socket type and its State column when it lists
// one state: `ss -tanp state established`, `ss -tan state time-wait`, `ss -xanp -A unix_stream`,
// as pasted into tickets. Each, imported with what it leaves out (--proto, --state), holds exactly
// the collector's sockets of that type and state, with their owners.
TEST(ImportLive, SsListingsOfOneStateOrOneTypeEqualTheCollectorsSockets) {
  std::string why;
  if (!enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root; CI runs it): " << why;
  }
  const auto ss = find_tool("ss");
  ASSERT_FALSE(ss.empty()) << "ss (iproute2) is installed by dev.sh";
  const auto dir = scratch_dir("import-live-one-state");
  auto population = make_population(dir.string());
  const std::string live = (dir / "live.db").string();
  ASSERT_EQ(run(SOCKHIST_COLLECT_BIN, {"--db", live, "--host", "h1"}).exit_code, 0);
  struct Case {
    std::vector<std::string> ss_args, import_args;
    std::string proto, state;  // what the collector's sockets are filtered by
    bool unix_stream;
  };
  const std::vector<Case> cases = {
      {{"-tanp", "state", "established"}, {"--proto", "tcp", "--state", "established"}, "tcp", "ESTABLISHED", false},
      {{"-tan", "state", "time-wait"}, {"--state", "time-wait"}, "tcp", "TIME_WAIT", false},
      {{"-xanp", "-A", "unix_stream"}, {"--proto", "unix_stream"}, "unix", "", true},
  };
  const auto expected = rows_of(live);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const auto listed = run(ss, c.ss_args);
    ASSERT_EQ(listed.exit_code, 0) << listed.err;
    const auto file = (dir / fmt::format("ss{}.txt", i)).string();
    write_text(file, listed.out);
    const auto db = (dir / fmt::format("one{}.db", i)).string();
    std::vector<std::string> args{"import", "ss", file, "--db", db, "--host", "h1", "--at", "2026-11-20T03:12:00Z"};
    args.insert(args.end(), c.import_args.begin(), c.import_args.end());
    const auto r = run(k_sockhist, args);
    ASSERT_EQ(r.exit_code, 0) << fmt::format("{}", fmt::join(c.ss_args, " ")) << ": " << r.err;
    const auto got = rows_of(db);
    std::size_t compared = 0;
    for (const auto& [key, want] : expected) {
      if (std::get<0>(key) != c.proto || (!c.state.empty() && std::get<5>(key) != c.state) ||
          (c.unix_stream && want.sock_type != std::optional<std::string>("stream"))) {
        continue;
      }
      const auto it = got.find(key);
      ASSERT_NE(it, got.end()) << c.ss_args[0] << ": no " << want.local_addr << ":" << want.local_port << " "
                               << want.remote_addr << ":" << want.remote_port;
      EXPECT_EQ(it->second.family, want.family);
      EXPECT_EQ(it->second.sock_type, want.sock_type);
      if (want.pid && c.ss_args[0].find('p') != std::string::npos) {
        EXPECT_EQ(it->second.pid, want.pid) << want.local_addr << ":" << want.local_port;
      }
      ++compared;
    }
    EXPECT_GE(compared, 1U) << c.ss_args[0];
    EXPECT_EQ(got.size(), compared) << c.ss_args[0] << ": sockets the collector did not see";
  }
  finish_time_wait(population);
}

// The listings in samples/imports, taken on this machine at one moment over one population (23
// sockets: 10 ESTABLISHED, 2 LISTEN, 2 TIME_WAIT, a CLOSE_WAIT, a FIN_WAIT2, 2 UDP, 5 UNIX), each
// imported and shown as netstat would: golden outputs (tests/golden/import_*).
std::map<std::string, std::int64_t> counters_of(const std::string& db, std::int64_t snapshot) {
  auto conn = store::open_read_only(db);
  SQLite::Statement q(conn, "SELECT section, name, value FROM v_counters WHERE snapshot_id = ?");
  q.bind(1, snapshot);
  std::map<std::string, std::int64_t> out;
  while (q.executeStep()) {
    out[q.getColumn(0).getString() + "." + q.getColumn(1).getString()] = q.getColumn(2).getInt64();
  }
  return out;
}

// Tcp, TcpExt and Udp counters read back from an import equal the collector's, where both have them,
// but for those in `moved`: counters the kernel changed while the listings were saved (a delayed ACK
// or a timer firing on a loaded machine), which no two readings at different moments can agree on.
void expect_same_counters(const std::map<std::string, std::int64_t>& want,
                          const std::map<std::string, std::int64_t>& got, const std::string& name, std::size_t at_least,
                          const std::set<std::string>& moved) {
  std::size_t compared = 0;
  for (const auto& [key, value] : want) {
    if ((!key.starts_with("Tcp.") && !key.starts_with("TcpExt.") && !key.starts_with("Udp.")) || moved.contains(key)) {
      continue;
    }
    const auto it = got.find(key);
    if (it == got.end()) {
      continue;  // netstat -s does not print every counter (Tcp.RtoMin, ...)
    }
    EXPECT_EQ(it->second, value) << name << ": " << key;
    ++compared;
  }
  EXPECT_GE(compared, at_least) << name;
}

// A sosreport-shaped directory made the way sos makes one (copies of /proc/net, netstat -W -neopa,
// netstat -s, nstat -zas, ss -peaonmi, date --utc, hostname, uptime, uname -a, sysctl -a, ps
// auxwww), at the moment the collector takes its snapshot of the same population. The host's own
// namespace comes from the /proc/net copies with owners joined by inode from netstat; two
// "namespaces" (the same population listed again, as sos's `ip netns exec NAME ...` outputs: one
// in sos 4.1's namespaces/NAME/ layout with ss and nstat, one in 4.0's flat layout with netstat
// and netstat -s) come from the listings. Each imported snapshot equals the collector's.
TEST(ImportLive, SosreportSnapshotsEqualTheCollectorsFieldByField) {
  std::string why;
  if (!enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root; CI runs it): " << why;
  }
  const auto netstat = find_tool("netstat"), ss = find_tool("ss"), nstat = find_tool("nstat");
  ASSERT_FALSE(netstat.empty() || ss.empty() || nstat.empty()) << "net-tools and iproute2 are installed by dev.sh";
  const auto dir = scratch_dir("import-sosreport-live");
  auto population = make_population(dir.string());
  const std::string live = (dir / "live.db").string();
  const auto began = std::chrono::steady_clock::now();
  ASSERT_EQ(run(SOCKHIST_COLLECT_BIN, {"--db", live, "--host", "h1"}).exit_code, 0);
  const auto report = dir / "sosreport-h1";
  ASSERT_EQ(save_host_report(report, "h1", false), "");
  const std::string net = "sos_commands/networking/";
  const auto save = [&](const std::string& relative, const std::string& program, std::vector<std::string> args) {
    ASSERT_EQ(save_output(report, relative, program, std::move(args)), "");
  };
  save(net + "namespaces/inner/ip_netns_exec_inner_ss_-peaonmi", ss, {"-peaonmi"});
  save(net + "namespaces/inner/ip_netns_exec_inner_nstat_-zas", nstat, {"-zas"});
  save(net + "ip_netns_exec_flat_netstat_-W_-neopa", netstat, {"-W", "-neopa"});
  save(net + "ip_netns_exec_flat_netstat_-s", netstat, {"-s"});
  const auto later_ms = ms_since(began);
  // A second snapshot after the listings: what the kernel changed meanwhile.
  ASSERT_EQ(run(SOCKHIST_COLLECT_BIN, {"--db", live, "--host", "h1"}).exit_code, 0);

  const std::string db = (dir / "imported.db").string();
  const auto r = run(k_sockhist, {"import", "sosreport", report.string(), "--db", db});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("sosreport of h1 at "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(time from sos_commands/date/date_--utc)"), std::string::npos) << r.out;
  // The snapshot of each namespace, and what each was read from.
  std::map<std::string, std::int64_t> snapshot_of;
  std::map<std::string, std::string> source_of;
  {
    SQLite::Database conn(db, SQLite::OPEN_READONLY);
    SQLite::Statement q(conn,
                        "SELECT coalesce(n.name, '(host)'), s.snapshot_id, s.source, s.owners FROM snapshots s "
                        "JOIN netns n ON n.netns_id = s.netns_id");
    while (q.executeStep()) {
      snapshot_of[q.getColumn(0).getString()] = q.getColumn(1).getInt64();
      source_of[q.getColumn(0).getString()] = q.getColumn(2).getString() + " " + q.getColumn(3).getString();
    }
    EXPECT_EQ(conn.execAndGet("SELECT group_concat(message, '; ') FROM diagnostics WHERE snapshot_id = " +
                              std::to_string(snapshot_of["(host)"]) +
                              " AND file LIKE 'sos_commands/networking/%' AND message NOT LIKE 'read as %'")
                  .getString(),
              "source of owners");
  }
  ASSERT_EQ(snapshot_of.size(), 3U) << r.out;
  EXPECT_EQ(source_of["(host)"], "sosreport:proc complete");
  EXPECT_EQ(source_of["inner"], "sosreport:ss (iproute2 4.14 or later) complete");
  EXPECT_EQ(source_of["flat"], "sosreport:netstat (net-tools) complete");

  const auto expected = rows_of(live, 1);
  // The /proc/net copies carry every field; owners come from netstat by inode, command lines from ps.
  const Format proc_copies{"proc", {}, true, true, true, true, true, true, 300};
  const auto host = rows_of(db, snapshot_of["(host)"]);
  expect_same_sockets(expected, host, proc_copies, "sosreport /proc/net copies", later_ms);
  std::size_t with_cmdline = 0;
  for (const auto& [key, want] : expected) {
    const auto it = host.find(key);
    if (it == host.end()) {
      continue;
    }
    EXPECT_EQ(it->second.retransmits, want.retransmits);
    if (want.pid && std::get<0>(key) != "unix") {
      EXPECT_EQ(it->second.cmdline, want.cmdline) << want.local_addr << ":" << want.local_port;
      EXPECT_EQ(it->second.user, want.user) << want.local_addr << ":" << want.local_port;
      with_cmdline += it->second.cmdline ? 1 : 0;
    }
  }
  EXPECT_GE(with_cmdline, 8U);
  expect_same_sockets(expected, rows_of(db, snapshot_of["inner"]),
                      {"ss", {"-peaonmi"}, true, true, true, true, true, true, 1300}, "sosreport ss -peaonmi",
                      later_ms);
  expect_same_sockets(expected, rows_of(db, snapshot_of["flat"]),
                      {"netstat", {"-neopa"}, true, true, true, true, true, true, 300}, "sosreport netstat -W -neopa",
                      later_ms);
  // Counters: the copies, nstat -zas and netstat -s all give the collector's values.
  const auto live_counters = counters_of(live, 1);
  std::set<std::string> moved;
  for (const auto& [key, value] : counters_of(live, 2)) {
    if (!live_counters.contains(key) || live_counters.at(key) != value) {
      moved.insert(key);
    }
  }
  EXPECT_LE(moved.size(), 10U) << "the population is idle: few counters move";
  expect_same_counters(live_counters, counters_of(db, snapshot_of["(host)"]), "/proc/net copies", 80, moved);
  expect_same_counters(live_counters, counters_of(db, snapshot_of["inner"]), "nstat -zas", 80, moved);
  expect_same_counters(live_counters, counters_of(db, snapshot_of["flat"]), "netstat -s", 60, moved);
  finish_time_wait(population);
}

// Every counter this machine's netstat -s prints is read back with its own value: netstat is given
// a /proc (a tmpfs in a private mount namespace) whose snmp and netstat files list each counter of
// the running kernel with a value no other has; then again with every value zero.
TEST(ImportLive, NetstatStatisticsReadsBackEveryCounterThisNetstatPrints) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root (unshare -m and mount; CI runs it)";
  }
  const auto netstat = find_tool("netstat");
  ASSERT_FALSE(netstat.empty());
  const auto dir = scratch_dir("netstat-s-crafted");
  std::map<std::string, std::int64_t> crafted;
  const auto craft = [&](const char* file, bool zero) {
    const auto text = read_text(std::filesystem::path("/proc/net") / file);
    std::string out;
    std::istringstream in(text);
    std::string names, values;
    int section_index = 0;
    while (std::getline(in, names) && std::getline(in, values)) {
      const auto section = names.substr(0, names.find(':'));
      std::istringstream words(names.substr(names.find(':') + 1));
      std::string name, line = section + ":";
      int i = 0;
      while (words >> name) {
        const std::int64_t value = zero ? 0 : 7'000'001 + 1'000 * (section_index + (file[0] == 'n' ? 100 : 0)) + i++;
        crafted[section + "." + name] = value;
        line += " " + std::to_string(value);
      }
      out += names + "\n" + line + "\n";
      ++section_index;
    }
    write_text(dir / file, out);
  };
  for (const bool zero : {false, true}) {
    crafted.clear();
    craft("snmp", zero);
    craft("netstat", zero);
    const auto r =
        run("/usr/bin/unshare",
            {"-m", "--propagation", "private", "sh", "-c",
             fmt::format("mount -t tmpfs none /proc && mkdir /proc/net && cp {0}/snmp {0}/netstat /proc/net/ "
                         "&& LC_ALL=C {1} -s",
                         dir.string(), netstat)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto statistics = import::parse_netstat_statistics(r.out);
    // Debian 12's netstat is 2.10; with every counter zero, the lines that tell it from 2015-2019's
    // (FragOKs, FragFails, PAWSEstab) are left out, and it reads as either.
    EXPECT_EQ(statistics.dialect, zero ? "net-tools 2015-2019 or 2.10" : "net-tools 2.10");
    const auto& parsed = statistics.counters;
    ASSERT_FALSE(parsed.error) << *parsed.error;
    for (const auto& issue : parsed.issues) {
      ADD_FAILURE() << "line " << issue.line << ": " << issue.reason;
    }
    std::size_t read_back = 0;
    for (const auto& c : parsed.rows) {
      const auto it = crafted.find(c.section + "." + c.name);
      ASSERT_NE(it, crafted.end()) << c.section << "." << c.name << " is not a counter of this kernel";
      EXPECT_EQ(c.value, it->second) << c.section << "." << c.name;
      ++read_back;
    }
    // What netstat never prints: Ip.DefaultTTL and Tcp's RtoAlgorithm, RtoMin, RtoMax and MaxConn.
    std::vector<std::string> missing;
    for (const auto& [key, value] : crafted) {
      if (std::none_of(parsed.rows.begin(), parsed.rows.end(),
                       [&](const model::Counter& c) { return c.section + "." + c.name == key; })) {
        missing.push_back(key);
      }
    }
    if (zero) {
      // netstat leaves zeros out: those of its table are recorded as 0, the others are absent.
      EXPECT_GT(statistics.zeros, 50U) << "counters netstat leaves out at zero, recorded as 0";
    } else {
      EXPECT_LE(missing.size(), 5U) << fmt::format("{}", fmt::join(missing, ", "));
      EXPECT_GE(read_back, crafted.size() - 5);
      EXPECT_EQ(statistics.zeros, 0U);
    }
  }
}

// The sosreport in samples/ (a real `sos report` of web3 by samples/make-sosreport.sh): both
// namespaces imported, and the leak and the TIME_WAIT pile it was taken for found (golden outputs).
}  // namespace
