// sockhist-collect as an operator meets it: options, exit codes, one-line errors, copied trees.
#include <gtest/gtest.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include "files.hpp"
#include "process.hpp"
#include "sockhist/store.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

const std::string k_collect = SOCKHIST_COLLECT_BIN;

// A copy of one sample capture that a test may break.
std::filesystem::path copy_sample(const std::string& name, const char* sample = "01") {
  const auto dir = scratch_dir(name);
  std::filesystem::copy(samples_dir() / "history-busy" / sample / "proc", dir / "proc",
                        std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks);
  return dir;
}

int count_snapshots(const std::filesystem::path& db) {
  auto connection = store::open_read_only(db);
  return connection.execAndGet("SELECT count(*) FROM snapshots").getInt();
}

std::size_t lines(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

struct UsageCase {
  const char* name;
  std::vector<std::string> args;
  const char* mentions;
};

void PrintTo(const UsageCase& c, std::ostream* out) {
  *out << c.name;
}

class CollectUsage : public testing::TestWithParam<UsageCase> {};

TEST_P(CollectUsage, ExitsTwoWithAMessageNamingTheOption) {
  const auto dir = scratch_dir(std::string("usage-") + GetParam().name);
  auto args = GetParam().args;
  args.insert(args.begin(), {"--db", (dir / "u.db").string()});
  const auto r = run(k_collect, args);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(GetParam().mentions), std::string::npos) << r.err;
  EXPECT_TRUE(r.err.starts_with("sockhist-collect: error: ")) << r.err;
  EXPECT_LE(lines(r.err), 2U) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "u.db"));  // nothing was created
}

INSTANTIATE_TEST_SUITE_P(
    Options, CollectUsage,
    testing::Values(UsageCase{"unknown_option", {"--bogus"}, "--bogus"},
                    UsageCase{"at_without_proc_root", {"--at", "2026-11-20T03:12:00Z"}, "--at"},
                    UsageCase{"bad_interval", {"--interval", "soon"}, "--interval soon"},
                    UsageCase{"count_without_interval", {"--count", "3"}, "--count"},
                    UsageCase{"bad_time", {"--proc-root", "/proc", "--at", "yesterday"}, "--at yesterday"},
                    UsageCase{"bad_retain", {"--retain", "7 days"}, "--retain"},
                    UsageCase{"bad_source", {"--source", "ss"}, "--source"},
                    UsageCase{"netlink_with_proc_root",
                              {"--proc-root", SOCKHIST_SAMPLES_DIR "/history-busy/00/proc", "--source", "netlink"},
                              "--source netlink"}),
    [](const testing::TestParamInfo<UsageCase>& param) { return std::string(param.param.name); });

TEST(Collect, HelpAndVersionExitZero) {
  const auto help = run(k_collect, {"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--proc-root"), std::string::npos);
  const auto version = run(k_collect, {"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.out.find("sockhist-collect"), std::string::npos);
}

TEST(Collect, CopiedTreeIsRecordedUnderItsHostAndTime) {
  const auto dir = copy_sample("copied-tree");
  const auto db = dir / "c.db";
  const auto r = run(k_collect, {"--db", db.string(), "--proc-root", (dir / "proc").string(), "--host", "web1", "--at",
                                 "2026-11-20T03:12:00Z"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto connection = store::open_read_only(db);
  SQLite::Statement q(connection, "SELECT host, time, time_iso, source, proc_root, socket_count FROM v_snapshots");
  ASSERT_TRUE(q.executeStep());
  EXPECT_EQ(q.getColumn(0).getString(), "web1");
  EXPECT_EQ(q.getColumn(1).getInt64(), 1795144320);
  EXPECT_EQ(q.getColumn(2).getString(), "2026-11-20T03:12:00.000Z");
  EXPECT_EQ(q.getColumn(3).getString(), "proc");
  EXPECT_EQ(q.getColumn(4).getString(), std::filesystem::canonical(dir / "proc").string());
  EXPECT_GT(q.getColumn(5).getInt(), 100);
  // An older moment of the same host cannot follow a newer one.
  const auto older = run(k_collect, {"--db", db.string(), "--proc-root", (dir / "proc").string(), "--host", "web1",
                                     "--at", "2026-11-20T03:00:00Z"});
  EXPECT_EQ(older.exit_code, 5);
  EXPECT_NE(older.err.find("time order"), std::string::npos) << older.err;
  EXPECT_EQ(count_snapshots(db), 1);
}

TEST(Collect, MalformedLinesAreSkippedAndRecorded) {
  const auto dir = copy_sample("malformed-line");
  write_text(dir / "proc/net/tcp", read_text(samples_dir() / "broken/tcp-truncated-line"));
  const auto db = dir / "m.db";
  const auto r = run(k_collect, {"--db", db.string(), "--proc-root", (dir / "proc").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto connection = store::open_read_only(db);
  EXPECT_EQ(connection.execAndGet("SELECT skipped_lines FROM snapshots").getInt(), 1);
  SQLite::Statement q(connection, "SELECT file, line, message FROM diagnostics WHERE line > 0");
  ASSERT_TRUE(q.executeStep());
  EXPECT_EQ(q.getColumn(0).getString(), (dir / "proc/net/tcp").string());
  EXPECT_EQ(q.getColumn(1).getInt(), 3);
  EXPECT_NE(q.getColumn(2).getString().find("truncated"), std::string::npos);
}

TEST(Collect, MalformedFileIsAnErrorAndStoresNothing) {
  const auto dir = copy_sample("malformed-file");
  const auto db = dir / "m.db";
  ASSERT_EQ(run(k_collect, {"--db", db.string(), "--proc-root", (dir / "proc").string()}).exit_code, 0);
  write_text(dir / "proc/net/tcp6", read_text(samples_dir() / "broken/tcp-wrong-header"));
  const auto r = run(k_collect, {"--db", db.string(), "--proc-root", (dir / "proc").string()});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.err.find((dir / "proc/net/tcp6").string()), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1U);
  EXPECT_EQ(count_snapshots(db), 1);
}

TEST(Collect, MissingRootAndMissingTablesAreErrors) {
  const auto dir = scratch_dir("missing-root");
  const auto db = dir / "m.db";
  const auto r = run(k_collect, {"--db", db.string(), "--proc-root", (dir / "nowhere").string()});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.err.find("nowhere"), std::string::npos);
  std::filesystem::create_directories(dir / "empty/net");
  const auto empty = run(k_collect, {"--db", db.string(), "--proc-root", (dir / "empty").string()});
  EXPECT_EQ(empty.exit_code, 5);
  EXPECT_NE(empty.err.find("no socket table"), std::string::npos) << empty.err;
}

TEST(Collect, MissingOptionalFilesBecomeDiagnostics) {
  const auto dir = copy_sample("optional-missing");
  std::filesystem::remove(dir / "proc/net/tcp6");
  std::filesystem::remove(dir / "proc/net/snmp6");
  const auto db = dir / "o.db";
  ASSERT_EQ(run(k_collect, {"--db", db.string(), "--proc-root", (dir / "proc").string()}).exit_code, 0);
  auto connection = store::open_read_only(db);
  EXPECT_EQ(connection.execAndGet("SELECT count(*) FROM diagnostics WHERE message = 'not present'").getInt(), 2);
  EXPECT_EQ(
      connection.execAndGet("SELECT count(*) FROM v_snapshot_sockets WHERE family = 6 AND proto = 'tcp'").getInt(), 0);
}

TEST(Collect, ForeignDatabaseIsRefusedUntouched) {
  const auto dir = scratch_dir("foreign");
  const auto db = dir / "f.db";
  {
    SQLite::Database foreign(db.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    foreign.exec("CREATE TABLE t(x)");
  }
  const auto before = read_text(db);
  const auto r = run(k_collect, {"--db", db.string()});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find(db.string()), std::string::npos);
  EXPECT_EQ(read_text(db), before);
}

TEST(Collect, EnvironmentNamesTheDatabase) {
  const auto dir = scratch_dir("env-db");
  const auto db = dir / "e.db";
  ::setenv("SOCKHIST_DB", db.c_str(), 1);
  const auto r = run(k_collect, {"--proc-root", (samples_dir() / "history-busy/00/proc").string()});
  ::unsetenv("SOCKHIST_DB");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(count_snapshots(db), 1);
}

TEST(Collect, EachSnapshotRecordsItsSource) {
  const auto dir = scratch_dir("sources");
  const auto db = dir / "s.db";
  ASSERT_EQ(run(k_collect, {"--db", db.string()}).exit_code, 0);
  ASSERT_EQ(run(k_collect, {"--db", db.string(), "--source", "proc"}).exit_code, 0);
  ASSERT_EQ(run(k_collect, {"--db", db.string(), "--source", "netlink"}).exit_code, 0);
  ASSERT_EQ(run(k_collect, {"--db", db.string(), "--proc-root", (samples_dir() / "history-busy/00/proc").string(),
                            "--host", "copy"})
                .exit_code,
            0);
  auto connection = store::open_read_only(db);
  EXPECT_EQ(connection
                .execAndGet("SELECT group_concat(source, ' ') FROM (SELECT source FROM snapshots ORDER BY "
                            "snapshot_id)")
                .getString(),
            "netlink proc netlink proc");
}
