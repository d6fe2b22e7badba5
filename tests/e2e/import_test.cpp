// sockhist import of saved listings and sosreports: the listings in samples/imports and the
// sample sosreport import with what they hold and answer as they should; broken ones give their
// errors and store nothing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include "files.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "sockets.hpp"
#include "sockhist/import.hpp"
#include "sockhist/query.hpp"
#include "sockhist/store.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

const std::string k_sockhist = SOCKHIST_ANALYZER_BIN;

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
  // The skipped lines are stored as the snapshot's diagnostics, with what the listing told of the
  // version that printed it; the source is the tool and that version.
  SQLite::Database conn(db, SQLite::OPEN_READONLY);
  EXPECT_EQ(conn.execAndGet("SELECT count(*) FROM diagnostics WHERE line > 0").getInt(), 2);
  EXPECT_EQ(conn.execAndGet("SELECT group_concat(DISTINCT message) FROM diagnostics WHERE line = 0").getString(),
            "read as netstat of net-tools: no endpoint longer than 23 columns, so -W or not is not told; nor is "
            "the version");
  EXPECT_EQ(conn.execAndGet("SELECT group_concat(DISTINCT source) FROM snapshots").getString(), "netstat (net-tools)");
  // --host and --at are required: these formats say neither.
  r = run(k_sockhist, {"import", "netstat", mixed, "--db", db, "--at", "2026-11-20T03:14:00Z"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--host"), std::string::npos) << r.err;
  r = run(k_sockhist, {"import", "netstat", mixed, "--db", db, "--host", "h1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--at"), std::string::npos) << r.err;
}

// (section.name -> value) of a stored snapshot's counters.
TEST(Import, SampleSosreportImportsAndAnswers) {
  ::setenv("TZ", "UTC", 1);
  const auto dir = scratch_dir("import-sosreport-sample");
  const std::string db = (dir / "web3.db").string();
  const auto report = (samples_dir() / "sosreport-web3").string();
  auto r = run(k_sockhist, {"import", "sosreport", report, "--db", db});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("sosreport of web3 at 2026-11-24T06:17:25.000Z (time from sos_commands/date/date_--utc)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("host namespace              329 sockets from /proc/net copies; owners from netstat -anpeo, 49 "
                       "of 49 sockets by inode; 415 counters from /proc/net copies"),
            std::string::npos)
      << r.out;
  EXPECT_NE(
      r.out.find("namespace blue                3 sockets from netstat -anpeo; owners from netstat -anpeo; 306 "
                 "counters from netstat -s of net-tools 2015-2019 or 2.10 (273 of them 0: netstat leaves zeros out)"),
      std::string::npos)
      << r.out;
  {
    // What each listing was read as is kept with the snapshot.
    SQLite::Database conn(db, SQLite::OPEN_READONLY);
    EXPECT_EQ(conn.execAndGet("SELECT group_concat(message, '; ') FROM diagnostics WHERE snapshot_id = 2 AND message "
                              "LIKE 'read as %'")
                  .getString(),
              "read as netstat of net-tools: no endpoint longer than 23 columns, so -W or not is not told; nor is "
              "the version; read as netstat -s of net-tools 2015-2019 or 2.10");
  }
  // Importing it again adds nothing.
  r = run(k_sockhist, {"import", "sosreport", report, "--db", db});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("already imported as web3"), std::string::npos) << r.err;
  const std::vector<std::string> range = {"--since", "2026-11-24T06:00:00Z", "--until", "2026-11-24T06:30:00Z"};
  struct Case {
    std::string golden;
    std::vector<std::string> args;
    int exit_code;
  };
  auto with_range = [&](std::vector<std::string> args) {
    args.insert(args.end(), range.begin(), range.end());
    return args;
  };
  for (const auto& c : std::vector<Case>{
           {"sosreport_snapshots", {"snapshots"}, 0},
           {"sosreport_show", {"show", "-tanpo"}, 0},
           {"sosreport_show_blue", {"--netns", "blue", "show", "-aneop"}, 0},
           {"sosreport_stats_blue", {"--netns", "blue", "stats", "--at", "2026-11-24T06:17:25Z"}, 0},
           {"sosreport_close_wait", with_range({"close-wait", "--min-age", "0", "--by", "process"}), 1},
           {"sosreport_time_wait_ports", with_range({"time-wait", "--ports"}), 1},
           {"sosreport_check", with_range({"check", "--close-wait-max-per-process", "10", "--time-wait-max", "200"}),
            1},
       }) {
    auto args = c.args;
    args.insert(args.begin(), {"--db", db});
    const auto shown = run(k_sockhist, args);
    EXPECT_EQ(shown.exit_code, c.exit_code) << c.golden << ": " << shown.err;
    const auto golden = std::filesystem::path(SOCKHIST_GOLDEN_DIR) / (c.golden + ".txt");
    if (std::getenv("SOCKHIST_UPDATE_GOLDEN") != nullptr) {
      write_text(golden, shown.out);
    }
    EXPECT_EQ(shown.out, read_text(golden)) << golden;
  }
}

// Copies the sample report to `to` (symlinks kept), for a test to break.
void copy_report(const std::filesystem::path& to) {
  std::filesystem::remove_all(to);
  std::filesystem::copy(samples_dir() / "sosreport-web3", to,
                        std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks);
}

TEST(Import, BrokenSosreportsGiveTheirErrorsAndStoreNothing) {
  const auto dir = scratch_dir("import-sosreport-broken");
  const std::string db = (dir / "broken.db").string();
  const auto import = [&](const std::filesystem::path& report, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"import", "sosreport", report.string(), "--db", db};
    args.insert(args.end(), extra.begin(), extra.end());
    return run(k_sockhist, args);
  };
  // Refused whole, nothing stored.
  write_text(dir / "a-file", "not a directory\n");
  std::filesystem::create_directories(dir / "empty");
  const auto no_date = dir / "no-date";
  copy_report(no_date);
  std::filesystem::remove_all(no_date / "sos_commands/date");
  std::filesystem::remove(no_date / "date");
  const auto bad_table = dir / "bad-table";
  copy_report(bad_table);
  const auto tcp = std::filesystem::canonical(bad_table / "proc/net/tcp");
  std::string text = read_text(tcp);
  write_text(tcp, "garbage header\n" + text.substr(text.find('\n') + 1));
  struct Refused {
    std::filesystem::path report;
    std::string says;
  };
  for (const auto& c : std::vector<Refused>{
           {dir / "missing", "not a directory"},
           {dir / "a-file", "not a directory"},
           {dir / "empty", "not a sosreport"},
           {no_date, "give --at"},
           {bad_table, "tcp"},
       }) {
    const auto r = import(c.report);
    EXPECT_EQ(r.exit_code, 2) << c.report;
    EXPECT_NE(r.err.find(c.report.filename().string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << c.report << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(std::filesystem::exists(db)) << c.report << ": a refused report created the database";
  }
  // --at and --host stand in for what the report does not say.
  auto r = import(no_date, {"--at", "2026-11-24T06:17:25Z", "--host", "web3-copy"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("sosreport of web3-copy at 2026-11-24T06:17:25.000Z (time from --at)"), std::string::npos)
      << r.out;
  // A truncated listing line and a line netstat -s does not print: reported with file and line,
  // skipped, the rest imported.
  const auto damaged = dir / "damaged";
  copy_report(damaged);
  const auto listing = damaged / "sos_commands/networking/ip_netns_exec_blue_netstat_-W_-neopa";
  text = read_text(listing);
  const auto third_line = text.find('\n', text.find('\n') + 1) + 1;
  write_text(listing, text.insert(third_line, "tcp        0      0 127.0.0.1:9\n"));
  const auto stats = damaged / "sos_commands/networking/ip_netns_exec_blue_netstat_-s";
  text = read_text(stats);
  text.insert(text.find("Tcp:\n") + 5, "    17 frobnications\n");
  write_text(stats, text);
  r = import(damaged, {"--host", "web3-damaged"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("sos_commands/networking/ip_netns_exec_blue_netstat_-W_-neopa:3: fewer than 5 fields (line "
                       "skipped)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("ip_netns_exec_blue_netstat_-s:"), std::string::npos) << r.err;
  EXPECT_NE(
      r.err.find("'17 frobnications' is not a line net-tools 2015-2019 or 2.10's netstat -s prints (line skipped)"),
      std::string::npos)
      << r.err;
  SQLite::Database conn(db, SQLite::OPEN_READONLY);
  EXPECT_EQ(conn.execAndGet("SELECT count(*) FROM snapshots").getInt(), 4);
  EXPECT_EQ(conn.execAndGet("SELECT sum(skipped_lines) FROM snapshots").getInt(), 2);
}

}  // namespace
