// sockhist ship against a real ClickHouse (Debian's clickhouse-server, started by the test on a
// free port of 127.0.0.1 with a data directory of its own): three hosts' databases recorded by the
// real collector are shipped, and every snapshot's socket list, state counts, counters, spans and
// TIME_WAIT entries read back from the central views equal the SQLite views exactly; shipping again
// adds nothing; a push killed at every INSERT, or half-way through one, and run again leaves no
// duplicate and no gap; what another machine or another copy would mix in is refused.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <memory>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "central_views.hpp"
#include "clickhouse.hpp"
#include "histories.hpp"
#include "sockhist/central.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

// One server for the test process (ctest runs each test in a process of its own).
ClickHouseServer& server() {
  static const auto dir = scratch_dir(fmt::format("clickhouse-{}", ::getpid()));
  static ClickHouseServer s(dir);
  return s;
}

class Ship : public testing::Test {
 protected:
  void SetUp() override {
    if (const auto why = ClickHouseServer::missing()) {
      GTEST_SKIP() << *why;
    }
    database_ = testing::UnitTest::GetInstance()->current_test_info()->name();
    endpoint_.url = server().url();
    endpoint_.database = database_;
    endpoint_.user = "shipper";
    endpoint_.password = "ship-secret";
    ::setenv("SOCKHIST_CLICKHOUSE_USER", "shipper", 1);
    ::setenv("SOCKHIST_CLICKHOUSE_PASSWORD", "ship-secret", 1);
  }
  void TearDown() override {
    ::unsetenv("SOCKHIST_CLICKHOUSE_USER");
    ::unsetenv("SOCKHIST_CLICKHOUSE_PASSWORD");
    ::unsetenv("SOCKHIST_TEST_SHIP_DIE_AT");
  }

  Result ship(const std::string& db, const std::vector<std::string>& more = {}, const std::string& database = "") {
    std::vector<std::string> args{
        "ship", "--db", db, "--to", server().url(), "--database", database.empty() ? database_ : database};
    args.insert(args.end(), more.begin(), more.end());
    return run(SOCKHIST_ANALYZER_BIN, args);
  }

  Rows central(const std::string& sql, const std::string& database = "") {
    auto e = endpoint_;
    if (!database.empty()) {
      e.database = database;
    }
    central::Server s(e);
    return s.select(sql);
  }

  // Every view of `host` read back from `database` (default: the test's) equals the SQLite one of
  // `db` (central_views.hpp).
  std::size_t expect_same(const std::string& db, const std::string& host, const std::string& database = "",
                          bool every_list = true) {
    return expect_same_views([&](const std::string& sql) { return central(sql, database); }, db, host, every_list);
  }

  // Rows of every central table for `host`, so that "nothing added" is checked in the tables too.
  Rows table_counts(const std::string& database = "") {
    auto rows = central(
        "SELECT 'spans', count() FROM spans UNION ALL SELECT 'open_spans', count() FROM open_spans UNION ALL "
        "SELECT 'counters', count() FROM counters UNION ALL SELECT 'state_counts', count() FROM state_counts UNION "
        "ALL SELECT 'socket_values', count() FROM socket_values UNION ALL SELECT 'time_wait_entries', count() FROM "
        "time_wait_entries UNION ALL SELECT 'snapshots', count() FROM snapshots UNION ALL SELECT 'diagnostics', "
        "count() FROM diagnostics UNION ALL SELECT 'connection_ends', count() FROM connection_ends",
        database);
    std::sort(rows.begin(), rows.end());
    return rows;
  }

  std::string database_;
  central::Endpoint endpoint_;
};

TEST_F(Ship, ThreeHostsReadBackExactlyAndShippingAgainAddsNothing) {
  for (const auto* db : {&lifecycle_db(), &sample_db(), &web2_db()}) {
    const auto r = ship(*db, {"--round", "5"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_EQ(expect_same(lifecycle_db(), "api1"), 12U);
  EXPECT_EQ(expect_same(sample_db(), "web1"), 4U);
  EXPECT_EQ(expect_same(web2_db(), "web2"), 3U);
  const auto before = table_counts();
  for (const auto* db : {&lifecycle_db(), &sample_db(), &web2_db()}) {
    const auto r = ship(*db, {"--format", "json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto doc = nlohmann::json::parse(r.out);
    for (const auto& row : doc["rows"]) {
      EXPECT_EQ(row["snapshots"], 0) << row.dump();
      EXPECT_EQ(row["rows"], 0) << row.dump();
    }
  }
  EXPECT_EQ(table_counts(), before);
  EXPECT_EQ(expect_same(lifecycle_db(), "api1"), 12U);
}

TEST_F(Ship, FleetAnswersAsTheSameQuestionsAskedOfMergesOutput) {
  // The three hosts shipped, and merged into one SQLite file: `fleet hosts` and `fleet show` at
  // every snapshot of every host answer as `hosts` and `show` do on the merged file.
  const std::string merged = (scratch() / "fleet-merged.db").string();
  std::filesystem::remove(merged);
  ASSERT_EQ(run(SOCKHIST_ANALYZER_BIN, {"merge", "-q", merged, lifecycle_db(), sample_db(), web2_db()}).exit_code, 0);
  for (const auto* db : {&lifecycle_db(), &sample_db(), &web2_db()}) {
    ASSERT_EQ(ship(*db, {"-q"}).exit_code, 0);
  }
  const std::vector<std::string> from{"fleet", "--from", server().url(), "--database", database_};
  const auto fleet = [&](std::vector<std::string> args) {
    args.insert(args.begin(), from.begin(), from.end());
    return run(SOCKHIST_ANALYZER_BIN, args);
  };
  // Right after the newest snapshot everything is fresh; a week later everything is stale.
  ::setenv("SOCKHIST_NOW", "2026-11-24T02:04:00Z", 1);
  auto r = fleet({"hosts", "--format", "json", "--max-age", "1000d"});
  ::unsetenv("SOCKHIST_NOW");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto hosts = nlohmann::json::parse(r.out)["rows"];
  const auto local =
      nlohmann::json::parse(run(SOCKHIST_ANALYZER_BIN, {"hosts", "--db", merged, "--format", "json"}).out)["rows"];
  ASSERT_EQ(hosts.size(), local.size());
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    EXPECT_EQ(hosts[i]["host"], local[i]["host"]);
    EXPECT_EQ(hosts[i]["first"], local[i]["first"]) << hosts[i].dump();
    EXPECT_EQ(hosts[i]["newest"], local[i]["last"]) << hosts[i].dump();
    EXPECT_EQ(hosts[i]["snapshots"], local[i]["snapshots"]) << hosts[i].dump();
  }
  r = fleet({"hosts", "--format", "json"});
  EXPECT_EQ(r.exit_code, 1) << "snapshots of 2026-11 are stale now: " << r.out;
  const auto stale = nlohmann::json::parse(r.out)["rows"];  // a copy: the parsed document is a temporary
  EXPECT_EQ(stale.size(), 3U);
  for (const auto& row : stale) {
    EXPECT_EQ(row["fresh"], "STALE") << row.dump();
  }
  std::size_t compared = 0, sockets = 0;
  for (const auto& [db, host] : std::vector<std::pair<std::string, std::string>>{
           {lifecycle_db(), "api1"}, {sample_db(), "web1"}, {web2_db(), "web2"}}) {
    for (const auto& snap : sqlite_rows(db, "SELECT time_iso FROM v_snapshots ORDER BY snapshot_id")) {
      const auto mine = fleet({"show", "--host", host, "--at", snap.at(0), "--format", "json"});
      ASSERT_EQ(mine.exit_code, 0) << mine.err;
      const auto theirs = run(SOCKHIST_ANALYZER_BIN,
                              {"show", "-a", "--db", merged, "--host", host, "--at", snap.at(0), "--format", "json"});
      ASSERT_EQ(theirs.exit_code, 0) << theirs.err;
      const auto a = nlohmann::json::parse(mine.out), b = nlohmann::json::parse(theirs.out);
      EXPECT_EQ(a["rows"], b["rows"]) << host << " at " << snap.at(0);
      EXPECT_EQ(a["snapshot"]["time"], b["snapshot"]["time"]);
      ++compared;
      sockets += a["rows"].size();
    }
  }
  EXPECT_EQ(compared, 19U);
  EXPECT_GT(sockets, 500U) << "the socket lists compared were empty";
  std::cout << fmt::format("[ figures ] fleet show = show -a at {} snapshots, {} sockets\n", compared, sockets);
  r = fleet({"show", "--host", "web9"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--host web9: not in the store (hosts: api1, web1, web2)"), std::string::npos) << r.err;
}

TEST_F(Ship, AGrowingDatabaseShipsWhatIsNewAndSpansThatEndLaterEndThere) {
  // api1's first seven captures shipped, then the rest recorded into the same file and shipped:
  // spans open at the first push end in the second (open_spans' -1 rows), across a reboot.
  const std::string db = (scratch() / "growing.db").string();
  std::vector<std::string> first, rest;
  for (int i = 0; i < 12; ++i) {
    (i < 7 ? first : rest).push_back(fmt::format("{:02d}", i));
  }
  collect_samples(db, "api1", first, "history-lifecycle");
  ASSERT_EQ(ship(db, {"--round", "2"}).exit_code, 0);
  EXPECT_EQ(expect_same(db, "api1"), 7U);
  collect_samples(db, "api1", rest, "history-lifecycle");
  const auto r = ship(db, {"--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["rows"][0]["snapshots"], 5);
  EXPECT_EQ(expect_same(db, "api1"), 12U);
  const auto cancelled = central("SELECT count() FROM open_spans WHERE sign = -1");
  EXPECT_NE(cancelled.at(0).at(0), "0") << "no span open at the first push ended in the second";
}

TEST_F(Ship, APushKilledAtAnyInsertAndRunAgainLeavesNoDuplicateAndNoGap) {
  // Every INSERT of a push in rounds of four snapshots, killed before it is sent and half-way
  // through it (the server stores a body cut at a row as far as it got), each into a store of its
  // own; then the same push again.
  int points = 0;
  for (int k = 1;; ++k) {
    bool past_the_end = false;
    for (const auto* cut : {"", ".5"}) {
      const auto database = fmt::format("killed_{}{}", k, *cut ? "_half" : "");
      ::setenv("SOCKHIST_TEST_SHIP_DIE_AT", fmt::format("{}{}", k, cut).c_str(), 1);
      const auto killed = ship(lifecycle_db(), {"--round", "4", "-q"}, database);
      ::unsetenv("SOCKHIST_TEST_SHIP_DIE_AT");
      if (killed.exit_code == 0) {
        past_the_end = true;
        break;
      }
      ASSERT_EQ(killed.exit_code, 86) << k << cut << ": " << killed.err;
      ++points;
      // What was committed reads whole: snapshots 1..newest, each row once.
      const auto newest = central("SELECT count(), ifNull(max(snapshot_id), 0) FROM v_snapshots", database);
      const auto committed = std::stoll(newest.at(0).at(1));
      EXPECT_EQ(std::stoll(newest.at(0).at(0)),
                std::stoll(sqlite_rows(lifecycle_db(), "SELECT count() FROM snapshots WHERE snapshot_id <= ?",
                                       {std::to_string(committed)})
                               .at(0)
                               .at(0)))
          << "a gap in the snapshots after a kill at " << k << cut;
      const auto twice = central(
          "SELECT (SELECT count() - uniqExact(snapshot_id, proto, state) FROM v_state_counts) + (SELECT count() - "
          "uniqExact(span_id) FROM v_spans) + (SELECT count() - uniqExact(snapshot_id, section, name) FROM v_counters)",
          database);
      EXPECT_EQ(twice.at(0).at(0), "0") << "rows read twice after a kill at " << k << cut;
      const auto again = ship(lifecycle_db(), {"--round", "4", "-q"}, database);
      ASSERT_EQ(again.exit_code, 0) << again.err;
      EXPECT_EQ(expect_same(lifecycle_db(), "api1", database, false), 12U) << "after a kill at " << k << cut;
    }
    if (past_the_end) {
      break;
    }
  }
  // 3 rounds of up to 7 INSERTs and a commit each, and the push's record: two kills each.
  EXPECT_GE(points, 30);
  std::cout << fmt::format("[ figures ] {} kill points, each retried to an exact copy\n", points);
}

TEST_F(Ship, AnotherMachineOfTheSameNameAndAStaleCopyAreRefusedBeforeAnythingIsSent) {
  // api1 with a machine-id (the samples have none), shipped.
  const auto with_machine = [](const std::string& path, const std::string& machine_id) {
    SQLite::Database d(path, SQLite::OPEN_READWRITE);
    d.exec(fmt::format("UPDATE hosts SET machine_id = {}", central::quote(machine_id)));
  };
  const std::string mine = (scratch() / "api1-machine-a.db").string();
  std::filesystem::copy_file(lifecycle_db(), mine, std::filesystem::copy_options::overwrite_existing);
  with_machine(mine, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  ASSERT_EQ(ship(mine).exit_code, 0);
  const auto before = table_counts();
  // The same host name with another machine-id: two machines would read as one.
  const std::string other = (scratch() / "api1-machine-b.db").string();
  std::filesystem::copy_file(lifecycle_db(), other, std::filesystem::copy_options::overwrite_existing);
  with_machine(other, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
  auto r = ship(other);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("machine-id"), std::string::npos) << r.err;
  // A copy of the file from before its last five snapshots: the server's history of the namespace
  // ends at a snapshot it does not hold.
  const std::string stale = (scratch() / "stale.db").string();
  std::vector<std::string> seven;
  for (int i = 0; i < 7; ++i) {
    seven.push_back(fmt::format("{:02d}", i));
  }
  std::filesystem::remove(stale);
  collect_samples(stale, "api1", seven, "history-lifecycle");
  with_machine(stale, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  r = ship(stale);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.err.find("another database shipped it"), std::string::npos) << r.err;
  EXPECT_EQ(table_counts(), before);
  EXPECT_EQ(expect_same(mine, "api1"), 12U);
}

TEST_F(Ship, CredentialsComeFromAFileOrTheEnvironmentNeverTheCommandLine) {
  auto r = run(SOCKHIST_ANALYZER_BIN, {"ship", "--db", lifecycle_db(), "--to", "http://shipper:ship-secret@127.0.0.1:1",
                                       "--database", database_});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--to: credentials do not belong on the command line"), std::string::npos) << r.err;
  const auto file = scratch() / "credentials";
  write_text(file, "shipper:ship-secret\n");
  ::chmod(file.c_str(), 0644);
  ::unsetenv("SOCKHIST_CLICKHOUSE_PASSWORD");
  r = ship(lifecycle_db(), {"--credentials", file.string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("lets others read it"), std::string::npos) << r.err;
  ::chmod(file.c_str(), 0600);
  r = ship(lifecycle_db(), {"--credentials", file.string(), "-q"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  write_text(file, "shipper:wrong\n");
  r = ship(lifecycle_db(), {"--credentials", file.string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("HTTP 401"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("wrong"), std::string::npos) << "the password was printed: " << r.err;
}

TEST_F(Ship, AServerThatIsNotThereIsAOneLineErrorNamingIt) {
  const auto url = fmt::format("http://127.0.0.1:{}", free_port());
  const auto r = run(SOCKHIST_ANALYZER_BIN, {"ship", "--db", lifecycle_db(), "--to", url});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.find(fmt::format("sockhist: error: {}: ", url)), 0U) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  for (const auto& bad : {"ftp://127.0.0.1:21", "http://127.0.0.1:8123/?database=x", "clickhouse"}) {
    const auto refused = run(SOCKHIST_ANALYZER_BIN, {"ship", "--db", lifecycle_db(), "--to", bad});
    EXPECT_EQ(refused.exit_code, 2) << bad;
    EXPECT_NE(refused.err.find(fmt::format("--to {}", bad)), std::string::npos) << refused.err;
  }
}

}  // namespace
