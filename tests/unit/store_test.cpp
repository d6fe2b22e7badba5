// The store: creation, refusal of what is not ours, span semantics, counters and retention.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include <SQLiteCpp/SQLiteCpp.h>

#include "files.hpp"
#include "sockhist/capture.hpp"
#include "sockhist/error.hpp"
#include "sockhist/merge.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"
#include "store_history.hpp"

using namespace sockhist;
using namespace sockhist::test;

TEST(StoreFile, MigratesFromEmptyAndIdentifiesItself) {
  SQLite::Database db(":memory:", SQLite::OPEN_READWRITE);
  store::initialize(db);
  EXPECT_EQ(scalar(db, "PRAGMA application_id"), store::k_application_id);
  EXPECT_EQ(scalar(db, "PRAGMA user_version"), store::schema_version());
  for (const char* view : {"v_snapshots", "v_snapshot_sockets", "v_state_counts", "v_counters"}) {
    EXPECT_EQ(scalar(db, fmt::format("SELECT count(*) FROM sqlite_schema WHERE type = 'view' AND name = '{}'", view)),
              1)
        << view;
  }
  store::initialize(db);  // a second run is a no-op
  EXPECT_EQ(scalar(db, "PRAGMA user_version"), store::schema_version());
}

// The schema the build dumped (sockhist-schema-dump) is the one the migrations make at run time:
// the schema check's fast path accepts a new database, and anything more (a table of the user's
// own) goes to the full comparison, which allows it.
TEST(StoreFile, TheSchemaTheBuildDumpedIsTheOneTheMigrationsMake) {
  const auto dir = test::scratch_dir("schema-as-built");
  const auto path = dir / "s.db";
  {
    auto db = store::open_for_write(path);
    EXPECT_TRUE(store::schema_as_built(db));
    db.exec("CREATE TABLE my_notes (t TEXT)");
    EXPECT_FALSE(store::schema_as_built(db));
  }
  auto db = store::open_read_only(path);  // the full comparison allows a table of the user's own
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM my_notes"), 0);
}

TEST(StoreFile, CreatedWithPrivateModesAndWal) {
  const auto dir = test::scratch_dir("store-modes");
  const auto path = dir / "sub" / "dir" / "h.db";
  ::umask(0);  // the store itself must not rely on the caller's umask
  {
    auto db = store::open_for_write(path);
    EXPECT_EQ(db.execAndGet("PRAGMA journal_mode").getString(), "wal");
  }
  ::umask(022);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640U);
  ASSERT_EQ(::stat((dir / "sub" / "dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0750U);
  EXPECT_EQ(store::check_file(path).kind, store::FileKind::sockhist);
  // No temporary file is left behind; the -wal (emptied) and -shm stay for readers who may not
  // create them, with the database's mode.
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "sub" / "dir")) {
    names.insert(entry.path().filename().string());
  }
  EXPECT_EQ(names, (std::set<std::string>{"h.db", "h.db-shm", "h.db-wal"}));
  EXPECT_EQ(std::filesystem::file_size(path.string() + "-wal"), 0U);
  for (const char* suffix : {"-wal", "-shm"}) {
    ASSERT_EQ(::stat((path.string() + suffix).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0640U) << suffix;
  }
}

struct RefusalCase {
  const char* name;
  std::function<void(const std::filesystem::path&)> make;
  const char* message;
};

class StoreRefuses : public testing::TestWithParam<RefusalCase> {};

void PrintTo(const RefusalCase& c, std::ostream* out) {
  *out << c.name;
}

TEST_P(StoreRefuses, AndLeavesTheFileUntouched) {
  const auto dir = test::scratch_dir(std::string("refuse-") + GetParam().name);
  const auto path = dir / "x.db";
  GetParam().make(path);
  const auto before = test::read_text(path);
  for (int mode = 0; mode < 2; ++mode) {
    try {
      if (mode == 0) {
        store::open_for_write(path);
      } else {
        store::open_read_only(path);
      }
      FAIL() << "opened " << GetParam().name;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Exit::db_refused);
      EXPECT_NE(std::string(e.what()).find(GetParam().message), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(test::read_text(path), before);
  EXPECT_FALSE(std::filesystem::exists(path.string() + "-wal"));
}

INSTANTIATE_TEST_SUITE_P(
    Files, StoreRefuses,
    testing::Values(RefusalCase{"zero_bytes", [](const auto& p) { test::write_text(p, ""); }, "empty file"},
                    RefusalCase{"random_bytes",
                                [](const auto& p) {
                                  std::mt19937 rng(42);
                                  std::string bytes(8192, '\0');
                                  for (char& c : bytes) {
                                    c = static_cast<char>(rng());
                                  }
                                  test::write_text(p, bytes);
                                },
                                "not an SQLite database"},
                    RefusalCase{"foreign_sqlite",
                                [](const auto& p) {
                                  SQLite::Database db(p.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
                                  db.exec("CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT)");
                                  db.exec("INSERT INTO accounts VALUES (1, 'alice')");
                                },
                                "another application"},
                    RefusalCase{"newer_schema",
                                [](const auto& p) {
                                  { store::open_for_write(p); }
                                  SQLite::Database db(p.string(), SQLite::OPEN_READWRITE);
                                  db.exec("PRAGMA user_version = 999");
                                  db.exec("PRAGMA journal_mode = DELETE");
                                },
                                "newer than this sockhist"}),
    [](const testing::TestParamInfo<RefusalCase>& param) { return std::string(param.param.name); });

TEST_F(Store, UnchangedSocketsCostNoWrites) {
  store::SnapshotWriter writer(db);
  const std::vector<Socket> sockets = {tcp(SockState::listen, 80, 0, 11, 7),
                                       tcp(SockState::established, 80, 40000, 12, 7)};
  const auto first = writer.write(capture_at(1'000'000, sockets));
  EXPECT_EQ(first.spans_opened, 2U);
  EXPECT_EQ(first.counter_rows, 3U);
  const auto second = writer.write(capture_at(1'010'000, sockets));
  EXPECT_EQ(second.spans_opened, 0U);
  EXPECT_EQ(second.spans_closed, 0U);
  EXPECT_EQ(second.counter_rows, 0U);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM socket_spans"), 2);
  EXPECT_EQ(snapshot_rows(db, second.snapshot_id), capture_rows(capture_at(0, sockets)));
}

TEST_F(Store, StateChangeSplitsTheSpanAndLinksIt) {
  store::SnapshotWriter writer(db);
  const auto a = writer.write(capture_at(1'000'000, {tcp(SockState::established, 80, 40000, 12, 7)}));
  const auto b = writer.write(capture_at(1'010'000, {tcp(SockState::close_wait, 80, 40000, 12, 7)}));
  EXPECT_EQ(b.spans_opened, 1U);
  EXPECT_EQ(b.spans_closed, 1U);
  SQLite::Statement q(db, "SELECT state, last_snapshot_id, prev_span_id FROM v_spans ORDER BY span_id");
  ASSERT_TRUE(q.executeStep());
  EXPECT_EQ(q.getColumn(0).getString(), "ESTABLISHED");
  EXPECT_EQ(q.getColumn(1).getInt64(), a.snapshot_id);
  const auto first_span = scalar(db, "SELECT min(span_id) FROM socket_spans");
  ASSERT_TRUE(q.executeStep());
  EXPECT_EQ(q.getColumn(0).getString(), "CLOSE_WAIT");
  EXPECT_TRUE(q.getColumn(1).isNull());
  EXPECT_EQ(q.getColumn(2).getInt64(), first_span);
}

TEST_F(Store, DisappearanceClosesAtTheLastSnapshotThatSawIt) {
  store::SnapshotWriter writer(db);
  const auto a = writer.write(
      capture_at(1'000'000, {tcp(SockState::established, 80, 40000, 12, 7), tcp(SockState::listen, 80, 0, 11, 7)}));
  const auto b = writer.write(capture_at(1'010'000, {tcp(SockState::listen, 80, 0, 11, 7)}));
  EXPECT_EQ(b.spans_closed, 1U);
  EXPECT_EQ(scalar(db, "SELECT last_snapshot_id FROM socket_spans WHERE inode = 12"), a.snapshot_id);
  EXPECT_EQ(scalar(db, fmt::format("SELECT count(*) FROM v_snapshot_sockets WHERE snapshot_id = {}", b.snapshot_id)),
            1);
}

TEST_F(Store, OwnerChangeStartsANewSpan) {
  store::SnapshotWriter writer(db);
  writer.write(capture_at(1'000'000, {tcp(SockState::listen, 80, 0, 11, 7)}));
  const auto b = writer.write(capture_at(1'010'000, {tcp(SockState::listen, 80, 0, 11, 8)}));
  EXPECT_EQ(b.spans_opened, 1U);
  EXPECT_EQ(scalar(db, fmt::format("SELECT pid FROM v_snapshot_sockets WHERE snapshot_id = {}", b.snapshot_id)), 8);
}

TEST_F(Store, TimeWaitCarriesTheOwnerOfItsConnection) {
  store::SnapshotWriter writer(db);
  writer.write(capture_at(1'000'000, {tcp(SockState::established, 40000, 80, 12, 7)}));
  // The client closed first: the same 4-tuple is now a TIME_WAIT minisocket without inode.
  const auto b = writer.write(capture_at(1'010'000, {tcp(SockState::time_wait, 40000, 80, 0)}));
  auto later = tcp(SockState::time_wait, 40000, 80, 0);
  later.timer_ms = 49'000;  // the kernel's countdown, ten seconds on
  const auto c = writer.write(capture_at(1'020'000, {later}));
  EXPECT_EQ(c.spans_opened, 0U);
  SQLite::Statement q(db, "SELECT pid, process, owner_carried, state FROM v_snapshot_sockets WHERE snapshot_id = ?");
  for (const auto id : {b.snapshot_id, c.snapshot_id}) {
    q.reset();
    q.bind(1, id);
    ASSERT_TRUE(q.executeStep());
    EXPECT_EQ(q.getColumn(0).getInt(), 7);
    EXPECT_EQ(q.getColumn(1).getString(), "proc7");
    EXPECT_EQ(q.getColumn(2).getInt(), 1);
    EXPECT_EQ(q.getColumn(3).getString(), "TIME_WAIT");
  }
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM socket_spans WHERE prev_span_id IS NOT NULL"), 1);
  // The view projects the kernel's countdown from the first observation: 59 s, then 49 s.
  EXPECT_EQ(scalar(db, fmt::format("SELECT timer_ms FROM v_snapshot_sockets WHERE snapshot_id = {}", c.snapshot_id)),
            49'000);
}

TEST_F(Store, ReusedTimeWaitTupleIsANewSocket) {
  store::SnapshotWriter writer(db);
  writer.write(capture_at(1'000'000, {tcp(SockState::time_wait, 40000, 80, 0)}));
  // 30 s later the tuple shows 59 s remaining again: a new connection went through it.
  const auto b = writer.write(capture_at(1'030'000, {tcp(SockState::time_wait, 40000, 80, 0)}));
  EXPECT_EQ(b.spans_opened, 1U);
  EXPECT_EQ(b.spans_closed, 1U);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM socket_spans WHERE prev_span_id IS NOT NULL"), 0);
}

TEST_F(Store, RebootClosesEverythingAndRestartsCounters) {
  store::SnapshotWriter writer(db);
  const auto a = writer.write(capture_at(1'000'000, {tcp(SockState::listen, 80, 0, 11, 7)}));
  const auto b = writer.write(capture_at(1'010'000, {tcp(SockState::listen, 80, 0, 11, 7)}, "boot-b"));
  EXPECT_EQ(b.spans_opened, 1U);
  EXPECT_EQ(b.spans_closed, 1U);
  EXPECT_EQ(b.counter_rows, 3U);  // a new boot stores every counter again
  EXPECT_EQ(scalar(db, "SELECT last_snapshot_id FROM socket_spans WHERE span_id = 1"), a.snapshot_id);
}

TEST_F(Store, CountersStoreChangesAndReconstructEverySnapshot) {
  store::SnapshotWriter writer(db);
  auto c1 = capture_at(1'000'000, {});
  auto c2 = capture_at(1'010'000, {});
  c2.counters[0].value = 150;                                       // InSegs moved
  c2.counters.pop_back();                                           // TcpExt.TW disappeared
  c2.counters.push_back({"MPTcpExt", "MPCapableSYNRX", 1, false});  // a counter appeared
  auto c3 = capture_at(1'020'000, {});
  c3.counters = c2.counters;
  const auto s1 = writer.write(c1);
  const auto s2 = writer.write(c2);
  const auto s3 = writer.write(c3);
  EXPECT_EQ(s2.counter_rows, 3U);  // InSegs, the TW tombstone, the new counter
  EXPECT_EQ(s3.counter_rows, 0U);
  const auto value = [&](std::int64_t snapshot, const char* section, const char* name) {
    SQLite::Statement q(db, "SELECT value FROM v_counters WHERE snapshot_id = ? AND section = ? AND name = ?");
    q.bind(1, snapshot);
    q.bind(2, section);
    q.bind(3, name);
    return q.executeStep() ? std::optional<std::int64_t>(q.getColumn(0).getInt64()) : std::nullopt;
  };
  EXPECT_EQ(value(s1.snapshot_id, "Tcp", "InSegs"), 100);
  EXPECT_EQ(value(s3.snapshot_id, "Tcp", "InSegs"), 150);
  EXPECT_EQ(value(s1.snapshot_id, "TcpExt", "TW"), 5);
  EXPECT_EQ(value(s3.snapshot_id, "TcpExt", "TW"), std::nullopt);
  EXPECT_EQ(value(s1.snapshot_id, "MPTcpExt", "MPCapableSYNRX"), std::nullopt);
  EXPECT_EQ(value(s3.snapshot_id, "MPTcpExt", "MPCapableSYNRX"), 1);
  EXPECT_EQ(scalar(db, fmt::format("SELECT count(*) FROM v_counters WHERE snapshot_id = {}", s3.snapshot_id)), 3);
  EXPECT_EQ(scalar(db, "SELECT is_gauge FROM v_counters WHERE name = 'CurrEstab' LIMIT 1"), 1);
}

TEST_F(Store, OlderCopiedTreeOfTheSameHostIsRefused) {
  store::SnapshotWriter writer(db);
  writer.write(capture_at(1'010'000, {}));
  auto older = capture_at(1'000'000, {});
  older.proc_root = "/cases/4711/proc";
  try {
    writer.write(older);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::bad_input);
    EXPECT_NE(std::string(e.what()).find("time order"), std::string::npos);
  }
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM snapshots"), 1);
  // The writer is still usable after the rolled-back attempt.
  EXPECT_EQ(writer.write(capture_at(1'020'000, {})).counter_rows, 0U);
}

TEST_F(Store, LiveCaptureAfterAClockStepBackContinuesItsSpans) {
  store::SnapshotWriter writer(db);
  writer.write(capture_at(1'010'000, {tcp(SockState::listen, 80, 0, 11, 7)}));
  const auto stepped = writer.write(capture_at(1'000'000, {tcp(SockState::listen, 80, 0, 11, 7)}));
  EXPECT_EQ(stepped.spans_opened, 0U);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM snapshots"), 2);
}

TEST_F(Store, RetentionRemovesWholePrefixesEvenAfterAClockStep) {
  store::SnapshotWriter writer(db);
  // The second snapshot's clock stepped back before the first's: retention must not keep it
  // while removing the spans and counters it relies on.
  writer.write(capture_at(1'000'000, {tcp(SockState::established, 80, 40000, 12, 7)}));
  writer.write(capture_at(2'000'000, {tcp(SockState::listen, 80, 0, 11, 7)}));
  writer.write(capture_at(1'500'000, {tcp(SockState::listen, 80, 0, 11, 7)}));
  const auto d = writer.write(capture_at(3'000'000, {tcp(SockState::listen, 80, 0, 11, 7)}));
  EXPECT_EQ(store::apply_retention(db, 1'600'000), 3U);  // the first and third expired; the second lies between
  EXPECT_EQ(scalar(db, "SELECT group_concat(snapshot_id) FROM snapshots"), d.snapshot_id);
  EXPECT_EQ(snapshot_rows(db, d.snapshot_id).size(), 1U);
  EXPECT_EQ(scalar(db, fmt::format("SELECT count(*) FROM v_counters WHERE snapshot_id = {}", d.snapshot_id)), 3);
}

TEST_F(Store, RetentionKeepsLiveSocketsAndCounterBaselines) {
  store::SnapshotWriter writer(db);
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 6; ++i) {
    std::vector<Socket> sockets = {tcp(SockState::listen, 80, 0, 11, 7)};
    if (i < 2) {
      sockets.push_back(tcp(SockState::established, 80, 40000, 12, 7));  // gone after snapshot 2
    }
    auto c = capture_at(1'000'000 + i * 10'000, sockets);
    c.counters[0].value = i < 3 ? 100 : 200;
    ids.push_back(writer.write(c).snapshot_id);
  }
  std::vector<std::multiset<Row>> before;
  for (const auto id : ids) {
    before.push_back(snapshot_rows(db, id));
  }
  std::vector<std::size_t> progress;
  EXPECT_EQ(store::apply_retention(db, 1'000'000 + 3 * 10'000, 2, [&](std::size_t n) { progress.push_back(n); }), 3U);
  EXPECT_EQ(progress, (std::vector<std::size_t>{2, 3}));  // two batches, reported as they commit
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM snapshots"), 3);
  for (std::size_t i = 3; i < ids.size(); ++i) {
    const auto after = snapshot_rows(db, ids[i]);
    EXPECT_TRUE(after == before[i]) << "snapshot " << ids[i] << "\n" << difference(after, before[i]);
  }
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM socket_spans"), 1);  // the listener, still alive
  EXPECT_EQ(scalar(db, fmt::format("SELECT value FROM v_counters WHERE snapshot_id = {} AND name = 'TW'", ids[3])), 5);
  EXPECT_EQ(scalar(db, fmt::format("SELECT value FROM v_counters WHERE snapshot_id = {} AND name = 'InSegs'", ids[5])),
            200);
  EXPECT_EQ(scalar(db, "SELECT first_time_ms FROM socket_spans"), 1'000'000);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
  // A later snapshot continues the surviving span.
  EXPECT_EQ(writer.write(capture_at(1'100'000, {tcp(SockState::listen, 80, 0, 11, 7)})).spans_opened, 0U);
}

TEST_F(Store, RetentionRemovesUnreferencedProcessesOncePerHourOfHistory) {
  store::SnapshotWriter writer(db);
  constexpr std::int64_t hour = 3'600'000;
  // pid 7 owns the listener throughout; pid 9 owns a connection seen only in the first snapshot.
  const auto listener = tcp(SockState::listen, 80, 0, 11, 7);
  auto connection = tcp(SockState::established, 80, 40000, 12, 9);
  connection.local_addr = "10.9.9.9";
  writer.write(capture_at(10 * hour, {listener, connection}));
  writer.write(capture_at(10 * hour + 60'000, {listener}));
  writer.write(capture_at(10 * hour + 120'000, {listener}));
  writer.write(capture_at(11 * hour + 60'000, {listener}));
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM processes"), 2);
  // Removing the first snapshot removes the connection's span, but the oldest kept snapshot is
  // still in the same hour: pid 9's row waits.
  EXPECT_EQ(store::apply_retention(db, 10 * hour + 1), 1U);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM processes"), 2);
  // The oldest kept snapshot moves to the next hour: unreferenced processes go, pid 7 stays.
  EXPECT_EQ(store::apply_retention(db, 11 * hour), 2U);
  EXPECT_EQ(scalar(db, "SELECT group_concat(pid) FROM processes"), 7);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM addresses WHERE addr = '10.9.9.9'"), 0);  // unreferenced too
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
  // The same process, still alive, opens a connection from the same address again: the writer
  // must not reuse the row ids retention deleted.
  writer.forget_removable_ids();
  connection.inode = 13;
  writer.write(capture_at(11 * hour + 120'000, {listener, connection}));
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM v_spans WHERE pid = 9 AND local_addr = '10.9.9.9' AND inode = 13"), 1);
}
