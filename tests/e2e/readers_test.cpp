// Readers who are not the writer, as the real binaries and the sqlite3 CLI meet them: a member of
// the database's group reading the live database while collectors come and go, and any user
// reading a copy that nobody can write (a file 0444 in a directory 0555). The users and the group
// are created by the test (useradd, groupadd), so it needs root; elsewhere it skips, saying so.
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "files.hpp"
#include "process.hpp"
#include "users.hpp"

using namespace sockhist::test;

namespace {

const std::string k_collect = SOCKHIST_COLLECT_BIN;
const std::string k_sockhist = SOCKHIST_ANALYZER_BIN;

class Readers : public testing::Test {
 protected:
  void SetUp() override {
    if (const auto why = why_no_test_users(); !why.empty()) {
      GTEST_SKIP() << why;
    }
    if (find_tool("sqlite3").empty()) {
      GTEST_SKIP() << "needs sqlite3";
    }
    const auto suffix = std::to_string(::getpid());
    m_group_account = std::make_unique<TestAccount>(TestAccount::Kind::group, "shrg" + suffix);
    m_member_account = std::make_unique<TestAccount>(TestAccount::Kind::user, "shrm" + suffix);
    m_outsider_account = std::make_unique<TestAccount>(TestAccount::Kind::user, "shro" + suffix);
    m_group = m_group_account->name();
    m_member = m_member_account->name();
    m_outsider = m_outsider_account->name();
    add_to_group(m_member, m_group);
    m_gid = ::getgrnam(m_group.c_str())->gr_gid;
    m_shared = std::make_unique<SharedDir>();
    m_dir = m_shared->path();
    const auto probe = as(m_member, k_sockhist, {"--version"});
    if (probe.exit_code != 0) {
      GTEST_SKIP() << "the built sockhist cannot be run by another user here (" << probe.err
                   << "): the build tree is not readable by others";
    }
  }

  static Result as(const std::string& user, const std::string& program, const std::vector<std::string>& args) {
    return run_as(user, program, args);
  }

  std::int64_t snapshots_as(const std::string& user, const std::filesystem::path& db) {
    const auto r = as(user, k_sockhist, {"snapshots", "--db", db.string(), "--since", "1d", "--format", "json"});
    EXPECT_EQ(r.exit_code, 0) << user << ": " << r.err;
    return r.exit_code == 0 ? static_cast<std::int64_t>(nlohmann::json::parse(r.out)["rows"].size()) : -1;
  }

  // Users before the directory: the directory goes first, then the accounts, then the group.
  std::unique_ptr<TestAccount> m_group_account, m_member_account, m_outsider_account;
  std::unique_ptr<SharedDir> m_shared;
  std::string m_group, m_member, m_outsider;
  gid_t m_gid = 0;
  std::filesystem::path m_dir;
};

TEST_F(Readers, GroupMembersReadTheLiveDatabaseWhileCollectorsComeAndGo) {
  const auto db = m_dir / "live" / "sockhist.db";
  const auto first = run(k_collect, {"--db", db.string(), "--group", m_group, "--retain", "0", "--quiet"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  // The directory the collector made, the database, and its -wal and -shm kept for readers.
  struct stat st {};
  ASSERT_EQ(::stat(db.parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, m_gid);
  EXPECT_EQ(st.st_mode & 07777, 0750U);
  for (const char* suffix : {"", "-wal", "-shm"}) {
    ASSERT_EQ(::stat((db.string() + suffix).c_str(), &st), 0) << suffix;
    EXPECT_EQ(st.st_gid, m_gid) << suffix;
    EXPECT_EQ(st.st_mode & 07777, 0640U) << suffix << ": never world-readable";
  }
  EXPECT_EQ(std::filesystem::file_size(db.string() + "-wal"), 0U);
  EXPECT_EQ(snapshots_as(m_member, db), 1);
  const auto cli = as(m_member, find_tool("sqlite3"), {"-readonly", db.string(), "SELECT count(*) FROM v_snapshots"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_EQ(cli.out, "1\n");
  // As Datasette opens a file it serves (Python's sqlite3, a mode=ro URI), where Python is installed.
  if (const auto python = find_tool("python3"); !python.empty()) {
    const auto py = as(m_member, python,
                       {"-c", fmt::format("import sqlite3; c = sqlite3.connect('file:{}?mode=ro', uri=True); "
                                          "print(c.execute('SELECT count(*) FROM v_snapshots').fetchone()[0])",
                                          db.string())});
    EXPECT_EQ(py.exit_code, 0) << py.err;
    EXPECT_EQ(py.out, "1\n");
  } else {
    std::cout << "[ NOTE     ] no python3 here: the mode=ro URI reader (as Datasette's) is not tried\n";
  }
  // Not a member: not a reader.
  const auto outsider = as(m_outsider, k_sockhist, {"snapshots", "--db", db.string()});
  EXPECT_EQ(outsider.exit_code, 2) << outsider.out;  // the analyzer's one error code, as diff's
  EXPECT_NE(outsider.err.find("Permission denied"), std::string::npos) << outsider.err;

  // While a looping collector writes, every read succeeds and sees a growing history.
  const pid_t loop = spawn(
      k_collect, {"--db", db.string(), "--group", m_group, "--retain", "0", "--interval", "100ms", "--count", "30"});
  int reads = 0;
  std::int64_t seen = 0;
  for (const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
       std::chrono::steady_clock::now() < until; ++reads) {
    const auto r = as(m_member, find_tool("sqlite3"), {"-readonly", db.string(), "SELECT count(*) FROM v_snapshots"});
    ASSERT_EQ(r.exit_code, 0) << "read " << reads << ": " << r.err;
    const auto count = std::stoll(r.out);
    EXPECT_GE(count, seen);
    seen = count;
    const auto shown = as(m_member, k_sockhist, {"show", "--db", db.string(), "-tan"});
    ASSERT_EQ(shown.exit_code, 0) << "read " << reads << ": " << shown.err;
  }
  EXPECT_EQ(wait_child(loop), 0);
  EXPECT_GT(reads, 3);
  std::cout << "[ FIGURES  ] " << reads << " reads (sqlite3 -readonly and sockhist show) as a group member while a "
            << "collector wrote 30 snapshots: every one succeeded\n";
  // After the collector has gone, the group still reads every snapshot.
  EXPECT_EQ(snapshots_as(m_member, db), 31);
  EXPECT_EQ(std::filesystem::file_size(db.string() + "-wal"), 0U);
}

TEST_F(Readers, AnExistingDatabaseJoinsTheGroupAndTheCollectorSaysWhatStillKeepsItOut) {
  const auto db = m_dir / "old" / "sockhist.db";
  ASSERT_EQ(run(k_collect, {"--db", db.string(), "--group", "", "--retain", "0", "--quiet"}).exit_code, 0);
  EXPECT_EQ(as(m_member, k_sockhist, {"snapshots", "--db", db.string()}).exit_code, 2);
  // With the group: the files join it, and the directory made without it is named, unchanged.
  const auto r = run(k_collect, {"--db", db.string(), "--group", m_group, "--retain", "0", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(fmt::format("{}: members of group {} cannot enter", db.parent_path().string(), m_group)),
            std::string::npos)
      << r.err;
  ASSERT_EQ(::chown(db.parent_path().c_str(), static_cast<uid_t>(-1), m_gid), 0);
  EXPECT_EQ(snapshots_as(m_member, db), 2);
  const auto unknown = run(k_collect, {"--db", db.string(), "--group", "no-such-group-here", "--quiet"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("--group no-such-group-here: no such group"), std::string::npos) << unknown.err;
}

TEST_F(Readers, AnyoneReadsACopyNobodyCanWriteAndIsToldWhenItsLogCannotBeRead) {
  const auto source = m_dir / "source" / "sockhist.db";
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(run(k_collect, {"--db", source.string(), "--group", "", "--retain", "0", "--quiet"}).exit_code, 0);
  }
  // Copies taken while a writer holds a change only in the -wal: the file alone, the file with its
  // log, and all three.
  const auto copy = [&](const std::string& name, std::vector<std::string> suffixes) {
    const auto dir = m_dir / name;
    std::filesystem::create_directories(dir);
    for (const auto& suffix : suffixes) {
      std::filesystem::copy_file(source.string() + suffix, dir / ("sockhist.db" + suffix));
      ::chmod((dir / ("sockhist.db" + suffix)).c_str(), 0444);
    }
    ::chmod(dir.c_str(), 0555);
    return dir / "sockhist.db";
  };
  std::filesystem::path alone, with_log, all_three;
  {
    SQLite::Database writer(source.string(), SQLite::OPEN_READWRITE);
    writer.exec("PRAGMA wal_autocheckpoint = 0");
    writer.exec("INSERT INTO users(host_id, uid, name) VALUES (1, 4242, 'only-in-the-log')");
    ASSERT_GT(std::filesystem::file_size(source.string() + "-wal"), 0U);
    alone = copy("alone", {""});
    with_log = copy("with-log", {"", "-wal"});
    all_three = copy("all-three", {"", "-wal", "-shm"});
  }
  const auto before = read_text(with_log) + read_text(with_log.string() + "-wal");
  // The file alone: read as it is (immutable), by a user of no group at all.
  EXPECT_EQ(snapshots_as(m_outsider, alone), 2);
  const auto shown = as(m_outsider, k_sockhist, {"show", "--db", alone.string(), "-a"});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  // With a log it cannot apply: said, in one line, naming the log and what to do.
  const auto refused = as(m_outsider, k_sockhist, {"snapshots", "--db", with_log.string()});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find(with_log.string() + "-wal holds"), std::string::npos) << refused.err;
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
  EXPECT_EQ(read_text(with_log) + read_text(with_log.string() + "-wal"), before) << "a refusal changes nothing";
  // With its -shm too, the log is read: the change is there.
  EXPECT_EQ(snapshots_as(m_outsider, all_three), 2);
  const auto cli = as(m_outsider, find_tool("sqlite3"),
                      {"-readonly", all_three.string(), "SELECT name FROM users WHERE uid = 4242"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_EQ(cli.out, "only-in-the-log\n");
}

}  // namespace
