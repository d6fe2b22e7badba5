// Databases that are not what they claim: made by another user (created by the test) to hang or
// mislead whoever reads them, or damaged. Each is refused in one line before any query runs, or
// read with a warning; nothing is written to it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "histories.hpp"
#include "hostile_fixture.hpp"

using namespace sockhist::test;

namespace {

class HostileDb : public Hostile {
 protected:
  // A real database of the busy sample, handed to the neighbour, who then changes it with sqlite3.
  std::filesystem::path neighbours_database(const std::string& name) {
    const auto db = m_dir / name;
    collect_samples(db.string(), "web1", {"00", "01", "02"});
    EXPECT_EQ(run("/bin/chown",
                  {m_neighbour->name(), db.string(), db.string() + "-wal", db.string() + "-shm", db.string() + ".lock"})
                  .exit_code,
              0);
    return db;
  }

  void neighbour_sql(const std::filesystem::path& db, const std::string& sql) {
    as_neighbour(fmt::format("sqlite3 {} \"{}\"", db.string(), sql));
  }

  // The database as root's own (a copy restored into place): what the collector may write.
  std::filesystem::path roots_copy(const std::filesystem::path& db) {
    const auto copy = std::filesystem::path(m_shared->path()) / db.filename();
    std::filesystem::copy_file(db, copy);
    return copy;
  }
};

// Before, `hosts`, `show` and every other command but `sql` hung on this view, and so did merge.
TEST_F(HostileDb, ATableReplacedByAnEndlessViewIsRefusedBeforeAnyQuery) {
  if (find_tool("sqlite3").empty()) {
    GTEST_SKIP() << "needs sqlite3 to change the database";
  }
  const auto db = neighbours_database("endless.db");
  neighbour_sql(db,
                "PRAGMA foreign_keys = OFF; ALTER TABLE hosts RENAME TO hosts_kept; "
                "CREATE VIEW hosts AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                "SELECT x AS host_id, 'web1' AS name FROM c;");
  const auto before = read_text(db);
  const std::string says = db.string() + ": has hosts as a view, where sockhist makes a table: not as sockhist made it";
  const auto started = std::chrono::steady_clock::now();
  for (const auto& command :
       std::vector<std::vector<std::string>>{{"hosts"}, {"snapshots"}, {"show"}, {"check", "--time-wait-max", "1"}}) {
    auto args = command;
    args.insert(args.end(), {"--db", db.string()});
    const auto r = run(k_sockhist, args);
    EXPECT_EQ(r.exit_code, 2) << command[0] << ": " << r.out;
    EXPECT_EQ(r.err, "sockhist: error: " + says + "; refused\n") << command[0];
  }
  const auto merged = run(k_sockhist, {"merge", (m_dir / "merged.db").string(), db.string()});
  EXPECT_EQ(merged.exit_code, 2);
  EXPECT_NE(merged.err.find(says), std::string::npos) << merged.err;
  const auto copy = roots_copy(db);
  expect_refused(run(k_collect, {"--db", copy.string(), "--quiet"}), 3,
                 copy.string() + ": has hosts as a view, where sockhist makes a table");
  EXPECT_TRUE(read_text(copy) == before) << "a refused database was written";
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30)) << "something ran the view";
  EXPECT_TRUE(read_text(db) == before) << "a refused database was written";
}

TEST_F(HostileDb, ATriggerOrAChangedViewIsRefused) {
  if (find_tool("sqlite3").empty()) {
    GTEST_SKIP() << "needs sqlite3 to change the database";
  }
  const auto trigger = neighbours_database("trigger.db");
  neighbour_sql(trigger, "CREATE TRIGGER grow AFTER INSERT ON snapshots BEGIN DELETE FROM hosts; END;");
  const auto copy = roots_copy(trigger);
  const auto before = read_text(copy);
  expect_refused(run(k_collect, {"--db", copy.string(), "--quiet"}), 3,
                 copy.string() + ": has a trigger, grow, which sockhist never makes: refused");
  EXPECT_TRUE(read_text(copy) == before);
  const auto view = neighbours_database("view.db");
  neighbour_sql(view, "DROP VIEW v_snapshots; CREATE VIEW v_snapshots AS SELECT 1 AS snapshot_id;");
  expect_refused(run(k_sockhist, {"sql", "--db", view.string(), "SELECT * FROM v_snapshots"}), 2,
                 view.string() + ": has view v_snapshots defined otherwise than sockhist defines it");
  // A table of the user's own beside ours is no harm: it is read as before.
  const auto own = neighbours_database("own.db");
  neighbour_sql(own, "CREATE TABLE notes(t TEXT); CREATE INDEX notes_t ON notes(t);");
  const auto hosts = run(k_sockhist, {"hosts", "--db", own.string()});
  EXPECT_EQ(hosts.exit_code, 0) << hosts.err;
}

// Every command's own --timeout (default 10m): the guard behind the schema check.
TEST_F(HostileDb, EveryCommandGivesUpAfterItsTimeout) {
  const auto db = neighbours_database("slow.db");
  const auto r = run(k_sockhist, {"show", "--db", db.string(), "-a", "--timeout", "1ms"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, fmt::format("sockhist: error: {}: interrupted after 1ms (--timeout)\n", db.string()));
  const auto fine = run(k_sockhist, {"show", "--db", db.string(), "-a", "--timeout", "0"});
  EXPECT_EQ(fine.exit_code, 0) << fine.err;
}

}  // namespace
