// sockhist import of netstat and ss listings. Live (root, a private network namespace): a
// population the test makes is snapshotted by the built collector and listed by the real netstat
// and ss at the same moment; each listing imported equals the collector's snapshot field by field
// wherever its format carries the field. Everywhere: the listings saved in samples/imports import
// with the socket counts they hold, and broken listings give their errors and store nothing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include "files.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "sockets.hpp"
#include "sockhist/analysis.hpp"
#include "sockhist/store.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

const std::string k_sockhist = SOCKHIST_ANALYZER_BIN;

std::string tool(const char* name) {
  for (const char* dir : {"/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"}) {
    const std::string path = std::string(dir) + name;
    if (::access(path.c_str(), X_OK) == 0) {
      return path;
    }
  }
  return {};
}

using Key = std::tuple<std::string, std::string, std::int64_t, std::string, std::int64_t, std::string>;
std::map<Key, analysis::SocketRow> rows_of(const std::string& db) {
  auto conn = store::open_read_only(db);
  SQLite::Statement q(conn, "SELECT max(snapshot_id) FROM snapshots");
  q.executeStep();
  std::map<Key, analysis::SocketRow> out;
  for (auto& r : analysis::snapshot_sockets(conn, q.getColumn(0).getInt64())) {
    // A UNIX socket is known by its inode; an Internet one by its endpoints.
    Key key{r.proto,       r.proto == "unix" ? std::to_string(r.inode) : r.local_addr,
            r.local_port,  r.remote_addr,
            r.remote_port, r.state};
    out.emplace(std::move(key), std::move(r));
  }
  return out;
}

struct Format {
  const char* tool;
  std::vector<std::string> args;
  bool owners, timers, inodes, uid, unix, udp;
  std::int64_t timer_slack_ms;  // the listing's resolution and the time between the two readings
};

TEST(ImportLive, EachListingEqualsTheCollectorsSnapshotWhereItsFormatCarriesTheField) {
  std::string why;
  if (!enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root; CI runs it): " << why;
  }
  const auto netstat = tool("netstat"), ss = tool("ss");
  ASSERT_FALSE(netstat.empty()) << "netstat (net-tools) is installed by dev.sh";
  ASSERT_FALSE(ss.empty()) << "ss (iproute2) is installed by dev.sh";
  const auto dir = scratch_dir("import-live");
  auto population = make_population(dir.string());
  const std::string live = (dir / "live.db").string();
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
  const auto expected = rows_of(live);
  for (std::size_t i = 0; i < formats.size(); ++i) {
    const auto& f = formats[i];
    const std::string name = std::string(f.tool) + " " + f.args[0];
    const std::string db = (dir / fmt::format("import{}.db", i)).string();
    const auto r =
        run(k_sockhist, {"import", f.tool, files[i], "--db", db, "--host", "h1", "--at", "2026-11-20T03:12:00Z"});
    ASSERT_EQ(r.exit_code, 0) << name << ": " << r.err;
    const auto got = rows_of(db);
    std::size_t compared = 0;
    for (const auto& [key, want] : expected) {
      const auto& proto = std::get<0>(key);
      if ((proto == "unix" && !f.unix) || (proto == "udp" && !f.udp)) {
        continue;
      }
      const auto it = got.find(key);
      ASSERT_NE(it, got.end()) << name << ": no " << proto << " " << want.local_addr << ":" << want.local_port << " "
                               << want.remote_addr << ":" << want.remote_port << " " << want.state;
      const auto& g = it->second;
      const auto what = fmt::format("{}: {} {}:{} {}", name, proto, want.local_addr, want.local_port, want.state);
      EXPECT_EQ(g.family, want.family) << what;
      EXPECT_EQ(g.rx_queue, want.rx_queue) << what;
      if (want.state != "LISTEN" || f.tool == std::string("netstat")) {
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
        EXPECT_NEAR(static_cast<double>(g.timer_ms), static_cast<double>(want.timer_ms),
                    static_cast<double>(f.timer_slack_ms))
            << what;
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
    // Nothing more than what the collector saw (of the families the format lists).
    std::size_t listed = 0;
    for (const auto& [key, row] : got) {
      const auto& proto = std::get<0>(key);
      listed += (proto == "unix" && !f.unix) || (proto == "udp" && !f.udp) ? 0 : 1;
    }
    EXPECT_EQ(listed, compared) << name;
  }
  finish_time_wait(population);
}

// The listings in samples/imports, taken on this machine at one moment over one population (23
// sockets: 10 ESTABLISHED, 2 LISTEN, 2 TIME_WAIT, a CLOSE_WAIT, a FIN_WAIT2, 2 UDP, 5 UNIX), each
// imported and shown as netstat would: golden outputs (tests/golden/import_*).
TEST(Import, SavedListingsImportAndShowAsNetstatWould) {
  ::setenv("TZ", "UTC", 1);
  const auto dir = scratch_dir("import-samples");
  struct Sample {
    std::string kind, file, show;
    std::size_t sockets;
  };
  for (const auto& c : std::vector<Sample>{{"netstat", "netstat-antp", "-tanp", 16},
                                           {"netstat", "netstat-neopa", "-aneop", 23},
                                           {"netstat", "netstat-tunapo", "-tunapo", 18},
                                           {"ss", "ss-tanp", "-tanp", 16},
                                           {"ss", "ss-tanpo", "-tanpo", 16},
                                           {"ss", "ss-peaonmi", "-aneop", 23}}) {
    const std::string db = (dir / (c.file + ".db")).string();
    const auto path = (samples_dir() / "imports" / (c.file + ".txt")).string();
    const auto r =
        run(k_sockhist, {"import", c.kind, path, "--db", db, "--host", "h1", "--at", "2026-11-24T05:14:42Z"});
    ASSERT_EQ(r.exit_code, 0) << c.file << ": " << r.err;
    EXPECT_NE(r.out.find(fmt::format(": {} sockets recorded as h1", c.sockets)), std::string::npos) << r.out;
    const auto shown = run(k_sockhist, {"show", "--db", db, c.show});
    ASSERT_EQ(shown.exit_code, 0) << shown.err;
    const auto golden = std::filesystem::path(SOCKHIST_GOLDEN_DIR) / ("import_" + c.file + ".txt");
    if (std::getenv("SOCKHIST_UPDATE_GOLDEN") != nullptr) {
      write_text(golden, shown.out);
    }
    EXPECT_EQ(shown.out, read_text(golden)) << golden;
  }
}

TEST(Import, BrokenListingsGiveTheirErrorsAndStoreNothing) {
  const auto dir = scratch_dir("import-broken");
  const std::string db = (dir / "broken.db").string();
  const auto write = [&](const std::string& name, const std::string& text) {
    const auto path = (dir / name).string();
    write_text(path, text);
    return path;
  };
  const std::string header =
      "Active Internet connections (servers and established)\n"
      "Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name\n";
  const std::string good_line = "tcp        0      0 127.0.0.1:18080         0.0.0.0:*               LISTEN      7/x\n";
  // Refused whole: nothing stored.
  struct Refused {
    std::string kind, name, text, says;
  };
  for (const auto& c : std::vector<Refused>{
           {"netstat", "empty.txt", "", "empty"},
           {"netstat", "ss-as-netstat.txt", "State Recv-Q Send-Q Local Address:Port Peer Address:Port\n",
            "not a netstat listing"},
           {"ss", "netstat-as-ss.txt", header + good_line, "not an ss listing"},
           {"netstat", "unix-proc.txt", "Num       RefCount Protocol Flags    Type St Inode Path\n",
            "not a netstat listing"},
           {"netstat", "only-bad.txt", header + "tcp 0 0 localhost:http 0.0.0.0:* LISTEN 7/x\n", "no socket line"},
       }) {
    const auto path = write(c.name, c.text);
    const auto r =
        run(k_sockhist, {"import", c.kind, path, "--db", db, "--host", "h1", "--at", "2026-11-20T03:12:00Z"});
    EXPECT_NE(r.exit_code, 0) << c.name;
    EXPECT_NE(r.err.find(path), std::string::npos) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << c.name << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(db)) << c.name << ": a refused file created the database";
  }
  // A truncated copy and a mixed one: the bad lines are reported with their numbers and skipped.
  const auto truncated = write("truncated.txt", header + good_line + "tcp        0      0 127.0.0.1:5");
  auto r =
      run(k_sockhist, {"import", "netstat", truncated, "--db", db, "--host", "h1", "--at", "2026-11-20T03:12:00Z"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(truncated + ":4: fewer than 5 fields (line skipped)"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("1 sockets recorded"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 lines skipped"), std::string::npos) << r.out;
  const auto mixed = write("mixed.txt", header + good_line + "LISTEN 0 128 127.0.0.1:22 0.0.0.0:*\n" +
                                            "tcp 0 0 127.0.0.1:40000 127.0.0.1:18080 ESTABLISHED 7/x\n");
  r = run(k_sockhist, {"import", "netstat", mixed, "--db", db, "--host", "h1", "--at", "2026-11-20T03:13:00Z"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(mixed + ":4: unknown protocol LISTEN (line skipped)"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("2 sockets recorded"), std::string::npos) << r.out;
  // The skipped lines are stored as the snapshot's diagnostics, and the source is the tool.
  SQLite::Database conn(db, SQLite::OPEN_READONLY);
  EXPECT_EQ(conn.execAndGet("SELECT count(*) FROM diagnostics").getInt(), 2);
  EXPECT_EQ(conn.execAndGet("SELECT group_concat(DISTINCT source) FROM snapshots").getString(), "netstat");
  // --host and --at are required: these formats say neither.
  r = run(k_sockhist, {"import", "netstat", mixed, "--db", db, "--at", "2026-11-20T03:14:00Z"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--host"), std::string::npos) << r.err;
  r = run(k_sockhist, {"import", "netstat", mixed, "--db", db, "--host", "h1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--at"), std::string::npos) << r.err;
}

}  // namespace
