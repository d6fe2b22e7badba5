// The TIME_WAIT entries the collector records (time_wait_entries, schema 11), which the report
// reads instead of a million spans: on the lifecycle sample (a reused 4-tuple, an early vanish, a
// timer above 60 s, FIN_WAIT2 minisockets, a reboot) they equal what time-wait's reader counts from
// the spans, over the whole history and over ranges of it, in buckets of 1 s to 1 min; a version
// 10 file migrated gets the rows the writer would have written; retention takes a row with its
// span; a merge carries them; the report says which it read. The live tests compare them on real
// sockets (lifecycle_live_test at 50 closes a second, connections_live_test with the connection
// log's exact dates).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <SQLiteCpp/Database.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "files.hpp"
#include "histories.hpp"
#include "process.hpp"
#include "recorded_entries.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"
#include "store_history.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

// A consistent copy of a database, whatever is still in its -wal, then changed by `statements`
// (foreign keys off, as a migration runs).
std::string copy_of(const std::string& from, const std::filesystem::path& to,
                    const std::vector<std::string>& statements = {}) {
  std::filesystem::remove(to);
  {
    SQLite::Database db(from, SQLite::OPEN_READONLY);
    db.exec("VACUUM INTO '" + to.string() + "'");
  }
  SQLite::Database db(to.string(), SQLite::OPEN_READWRITE);
  db.exec("PRAGMA foreign_keys = OFF");
  for (const auto& sql : statements) {
    db.exec(sql);
  }
  return to.string();
}

// This test's own copy of the lifecycle sample's database (histories.hpp records it once).
std::string lifecycle_copy(const std::filesystem::path& dir) {
  return copy_of(lifecycle_db(), dir / "api1.db");
}

// Every row, in key order, as text.
std::vector<std::string> entry_rows(const std::string& path) {
  SQLite::Database db(path, SQLite::OPEN_READONLY);
  return dump_rows(db,
                   "SELECT netns_id, snapshot_id, span_id, entered_ms, exact FROM time_wait_entries "
                   "ORDER BY netns_id, snapshot_id, span_id");
}

// The rows the migration's statement derives from the spans now stored, in a scratch copy.
std::vector<std::string> derived_rows(const std::string& path, const std::filesystem::path& dir) {
  return entry_rows(
      copy_of(path, dir / "derived.db", {"DELETE FROM time_wait_entries", store::time_wait_entries_sql("1")}));
}

TEST(RecordedEntries, EqualWhatTheSpansSayOnTheLifecycleSample) {
  const auto dir = scratch_dir("recorded-entries-lifecycle");
  const auto db = lifecycle_copy(dir);
  const auto compared = compare_recorded_entries(db, {1'000, 15'000, 60'000});
  // 6 client closes per interval over 00-07 and 3 after the reboot, 2 server closes per interval,
  // the reused tuple's second entry: dozens, none exact (no connection log in the sample).
  EXPECT_GT(compared.entries, 40);
  EXPECT_EQ(compared.exact, 0);
  EXPECT_GE(compared.ranges, 3 * 9);
  // The timer above 60 s (10.0.0.1:40092 > 10.0.0.60:80) has no entry: it cannot be dated.
  SQLite::Database read(db, SQLite::OPEN_READONLY);
  EXPECT_EQ(scalar(read,
                   "SELECT count(*) FROM time_wait_entries t JOIN socket_spans sp ON sp.span_id = t.span_id "
                   "WHERE sp.remote_addr = '10.0.0.60' AND sp.remote_port = 80"),
            0);
  EXPECT_EQ(entry_rows(db), derived_rows(db, dir));
}

// The two cases where spans and sockets part: a second TIME_WAIT on a 4-tuple a second later whose
// timer alone would make it the first (another cookie: another socket, as the collector splits it),
// and one socket seen on both sides of a boot id change (the collector starts every span anew).
TEST(RecordedEntries, ANewCookieIsANewEntryAndANewBootIdIsNot) {
  const auto dir = scratch_dir("recorded-entries-cookies");
  const auto path = (dir / "cookies.db").string();
  const std::int64_t t0 = 1'800'000'000'000;
  const auto time_wait = [](std::uint16_t port, std::uint64_t cookie, std::uint32_t remaining_ms) {
    auto s = tcp(SockState::time_wait, port, 443, 0);
    s.remote_addr = "10.0.0.50";
    s.cookie = cookie;
    s.timer_ms = remaining_ms;
    return s;
  };
  {
    auto db = store::open_for_write(path);
    store::SnapshotWriter writer(db);
    writer.write(capture_at(t0 - 5'000, {tcp(SockState::listen, 8080, 0, 7)}));
    // 40000: cookie 1, entered at t0 - 1 s; 40001: cookie 10, entered at t0 - 1 s.
    writer.write(capture_at(t0, {time_wait(40000, 1, 59'000), time_wait(40001, 10, 59'000)}));
    // 40000: cookie 2 entered at t0 + 0.5 s, 1.5 s after the first; 40001 as it was.
    writer.write(capture_at(t0 + 1'000, {time_wait(40000, 2, 59'500), time_wait(40001, 10, 58'000)}));
    // A new boot id, and 40001 still there with its own timer.
    writer.write(capture_at(t0 + 2'000, {time_wait(40001, 10, 57'000)}, "boot-b"));
  }
  SQLite::Database db(path, SQLite::OPEN_READONLY);
  EXPECT_EQ(scalar(db,
                   "SELECT count(*) FROM socket_spans sp JOIN socket_states st ON st.state_id = sp.state_id "
                   "WHERE st.state = 'TIME_WAIT'"),
            4);
  EXPECT_EQ(dump_rows(db, "SELECT local_port, entered_ms - " + std::to_string(t0) +
                              " FROM v_time_wait_entries ORDER BY entered_ms, local_port"),
            (std::vector<std::string>{"40000|-1000|", "40001|-1000|", "40000|500|"}));
  const auto compared = compare_recorded_entries(path, {1'000, 2'000}, 1);
  EXPECT_EQ(compared.entries, 3);
}

// time-wait's reader scans the table in the order it was written when the range holds most of it,
// and checks that this is the order of first sighting: in a file whose span ids run the other way
// (another program's), it reads again through the index, and says the same.
TEST(RecordedEntries, ATableNotInTheOrderOfFirstSightingIsReadThroughTheIndex) {
  const auto dir = scratch_dir("recorded-entries-order");
  const auto db = lifecycle_copy(dir);
  const auto reversed =
      copy_of(db, dir / "reversed.db",
              {"UPDATE socket_spans SET span_id = 10000000 - span_id, prev_span_id = 10000000 - prev_span_id",
               "UPDATE socket_values SET span_id = 10000000 - span_id",
               "UPDATE time_wait_entries SET span_id = 10000000 - span_id"});
  {
    SQLite::Database read(reversed, SQLite::OPEN_READONLY);
    ASSERT_EQ(scalar(read, "SELECT count(*) FROM connection_ends"), 0);  // no other span ids to turn
  }
  const auto summary = [](const std::string& path) {
    const auto r = run(SOCKHIST_ANALYZER_BIN,
                       {"time-wait", "--db", path, "--since", "2026-11-24T01:00:00Z", "--utc", "--format", "json"});
    EXPECT_LE(r.exit_code, 1) << r.err;
    return nlohmann::json::parse(r.out)["summary"];
  };
  const auto ordered = summary(db);
  EXPECT_EQ(ordered["anomaly_counts"]["reused_tuple"], 1) << ordered.dump();
  EXPECT_EQ(ordered["anomaly_counts"]["vanished_early"], 1) << ordered.dump();
  EXPECT_EQ(summary(reversed), ordered);
  EXPECT_GT(compare_recorded_entries(reversed, {15'000}).entries, 40);
}

TEST(RecordedEntries, AVersionTenFileMigratedGetsTheRowsTheWriterWrote) {
  const auto dir = scratch_dir("recorded-entries-migrate");
  const auto db = lifecycle_copy(dir);
  const auto written = entry_rows(db);
  ASSERT_FALSE(written.empty());
  const auto old =
      copy_of(db, dir / "v10.db",
              {"DROP VIEW v_time_wait_entries", "DROP TABLE time_wait_entries", "PRAGMA user_version = 10"});
  // The analyzer reads a version 10 file as it is, from the spans, and says so.
  const auto html = (dir / "v10.html").string();
  const auto report = run(SOCKHIST_ANALYZER_BIN, {"report", "--db", old, "--utc", "-o", html});
  ASSERT_EQ(report.exit_code, 0) << report.err;
  const auto html11 = (dir / "v11.html").string();
  const auto report11 = run(SOCKHIST_ANALYZER_BIN, {"report", "--db", db, "--utc", "-o", html11});
  ASSERT_EQ(report11.exit_code, 0) << report11.err;
  EXPECT_NE(read_text(html11).find("the collector recorded as it wrote each snapshot"), std::string::npos);
  // Apart from that note, the two pages say the same.
  const auto page_of = [&](const std::string& path, const std::string& note, const std::string& database) {
    auto page = read_text(path);
    const auto at = page.find(note);
    EXPECT_NE(at, std::string::npos);
    if (at != std::string::npos) {
      page.erase(at, note.size());
    }
    for (auto d = page.find(database); d != std::string::npos; d = page.find(database)) {
      page.erase(d, database.size());
    }
    const auto made = page.find("Made by sockhist report at ");  // when, to the millisecond
    if (made != std::string::npos) {
      page.erase(made, page.find(" from ", made) - made);
    }
    return page;
  };
  EXPECT_EQ(page_of(html,
                    "Entries were read from the TIME_WAIT spans: this file is older than schema version 11, "
                    "which records them as it writes.",
                    old),
            page_of(html11,
                    "Entries were read from those the collector recorded as it wrote each snapshot "
                    "(time_wait_entries).",
                    db));
  // The writer migrates it: the rows are those it wrote itself.
  {
    auto migrated = store::open_for_write(old);
    EXPECT_EQ(scalar(migrated, "PRAGMA user_version"), store::schema_version());
  }
  EXPECT_EQ(entry_rows(old), written);
}

TEST(RecordedEntries, RetentionTakesARowWithItsSpanAndKeepsTheRest) {
  const auto dir = scratch_dir("recorded-entries-retention");
  const auto db = lifecycle_copy(dir);
  const auto before = entry_rows(db);
  {
    auto write = store::open_for_write(db);
    // Up to capture 04 (02:01:00): the client TIME_WAITs of 00-03 and the reused tuple's first go.
    EXPECT_EQ(store::apply_retention(write, *model::parse_time_ms("2026-11-24T02:01:00Z") - 1), 4U);
    EXPECT_EQ(scalar(write,
                     "SELECT count(*) FROM time_wait_entries t WHERE NOT EXISTS "
                     "(SELECT 1 FROM socket_spans sp WHERE sp.span_id = t.span_id)"),
              0);
  }
  const auto after = entry_rows(db);
  EXPECT_LT(after.size(), before.size());
  EXPECT_FALSE(after.empty());
  EXPECT_EQ(after, derived_rows(db, dir));
  compare_recorded_entries(db, {1'000, 15'000});
}

TEST(RecordedEntries, AMergeCarriesThemAsTheWriterWritesThem) {
  const auto dir = scratch_dir("recorded-entries-merge");
  const auto db = lifecycle_copy(dir);
  const auto busy = (dir / "web1.db").string();
  collect_samples(busy, "web1", {"00", "01", "02", "03"});
  const auto fleet = (dir / "fleet.db").string();
  const auto merged = run(SOCKHIST_ANALYZER_BIN, {"merge", "--quiet", fleet, busy, db});
  ASSERT_EQ(merged.exit_code, 0) << merged.err;
  SQLite::Database a(db, SQLite::OPEN_READONLY), f(fleet, SQLite::OPEN_READONLY);
  const auto entries_of = [](SQLite::Database& d, const std::string& host) {
    return dump_rows(d,
                     "SELECT t.entered_ms, t.exact, s.time_ms FROM time_wait_entries t "
                     "JOIN snapshots s ON s.snapshot_id = t.snapshot_id JOIN netns n ON n.netns_id = t.netns_id "
                     "JOIN hosts h ON h.host_id = n.host_id WHERE h.name = '" +
                         host + "' ORDER BY 1, 2, 3");
  };
  const auto own = entries_of(a, "api1");
  ASSERT_FALSE(own.empty());
  EXPECT_EQ(entries_of(f, "api1"), own);
  const auto compared = compare_recorded_entries(fleet, {1'000, 15'000});
  EXPECT_GT(compared.entries, 40);
}

}  // namespace
