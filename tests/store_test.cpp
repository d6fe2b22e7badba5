// The store: creation, refusal of what is not ours, span semantics, counters, retention, and exact
// reconstruction of every snapshot of a history built from samples/.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include <SQLiteCpp/SQLiteCpp.h>

#include "files.hpp"
#include "sockhist/error.hpp"
#include "sockhist/capture.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

using namespace sockhist;
using model::Capture;
using model::Proto;
using model::Socket;
using model::SockState;

namespace {

Socket tcp(SockState state, std::uint16_t local_port, std::uint16_t remote_port, std::uint64_t inode,
           std::int32_t pid = 0) {
  Socket s;
  s.proto = Proto::tcp;
  s.family = 4;
  s.state = state;
  s.local_addr = "127.0.0.1";
  s.local_port = local_port;
  s.remote_addr = remote_port == 0 ? "0.0.0.0" : "127.0.0.1";
  s.remote_port = remote_port;
  s.inode = inode;
  s.pid = pid;
  if (state == SockState::time_wait) {
    s.timer = model::TimerKind::timewait;
    s.timer_ms = 59'000;
  }
  return s;
}

Capture capture_at(std::int64_t time_ms, std::vector<Socket> sockets, std::string boot = "boot-a") {
  Capture c;
  c.host = "web1";
  c.hostname = "web1";
  c.boot_id = std::move(boot);
  c.time_ms = time_ms;
  c.netns_inode = 4026531840;
  c.owners = model::OwnerScan::complete;
  c.sockets = std::move(sockets);
  std::set<std::int32_t> pids;
  for (const auto& s : c.sockets) {
    if (s.pid != 0) {
      pids.insert(s.pid);
    }
  }
  for (const auto pid : pids) {
    c.processes.push_back(
        {pid, static_cast<std::uint64_t>(pid) * 100, "proc" + std::to_string(pid), "cmd", 0, std::nullopt});
  }
  c.counters = {{"Tcp", "InSegs", 100, false}, {"Tcp", "CurrEstab", 3, true}, {"TcpExt", "TW", 5, false}};
  return c;
}

struct Row {
  std::string proto, state, local;
  int lport;
  std::string remote;
  int rport;
  std::int64_t inode;
  std::int64_t pid;
  auto operator<=>(const Row&) const = default;
};

void PrintTo(const Row& r, std::ostream* out) {
  *out << r.proto << ' ' << r.state << ' ' << r.local << ':' << r.lport << ' ' << r.remote << ':' << r.rport
       << " inode " << r.inode << " pid " << r.pid;
}

// The rows only one side has, for a readable failure message.
std::string difference(const std::multiset<Row>& stored, const std::multiset<Row>& expected) {
  std::string out;
  const auto add = [&out](const char* label, const std::multiset<Row>& a, const std::multiset<Row>& b) {
    std::vector<Row> only;
    std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(only));
    for (const auto& r : only) {
      std::ostringstream line;
      PrintTo(r, &line);
      out += std::string(label) + line.str() + "\n";
    }
  };
  add("only stored:   ", stored, expected);
  add("only captured: ", expected, stored);
  return out;
}

std::multiset<Row> snapshot_rows(SQLite::Database& db, std::int64_t snapshot_id) {
  SQLite::Statement q(db,
                      "SELECT proto, state, local_addr, coalesce(local_port, -1), coalesce(remote_addr, ''), "
                      "coalesce(remote_port, -1), inode, CASE WHEN owner_carried = 1 THEN 0 ELSE coalesce(pid, 0) END "
                      "FROM v_snapshot_sockets "
                      "WHERE snapshot_id = ?");
  q.bind(1, snapshot_id);
  std::multiset<Row> rows;
  while (q.executeStep()) {
    rows.insert({q.getColumn(0).getString(), q.getColumn(1).getString(), q.getColumn(2).getString(),
                 q.getColumn(3).getInt(), q.getColumn(4).getString(), q.getColumn(5).getInt(),
                 q.getColumn(6).getInt64(), q.getColumn(7).getInt64()});
  }
  return rows;
}

std::multiset<Row> capture_rows(const Capture& c) {
  std::multiset<Row> rows;
  for (const auto& s : c.sockets) {
    const bool unix_socket = s.proto == Proto::unix_domain;
    rows.insert({std::string(model::name(s.proto)), std::string(model::name(s.state)), s.local_addr,
                 unix_socket ? -1 : s.local_port, unix_socket ? "" : s.remote_addr, unix_socket ? -1 : s.remote_port,
                 static_cast<std::int64_t>(s.inode), s.pid});
  }
  return rows;
}

std::int64_t scalar(SQLite::Database& db, const std::string& sql) {
  return db.execAndGet(sql).getInt64();
}

// Writes samples/history-busy/NAME for each name, as copied trees of `host` at their capture times.
enum class Writers { one, one_per_snapshot };

std::vector<std::pair<std::int64_t, Capture>> write_sample_history(SQLite::Database& db,
                                                                   const std::vector<std::string>& names,
                                                                   const std::string& host) {
  store::SnapshotWriter writer(db);
  std::vector<std::pair<std::int64_t, Capture>> written;
  for (const auto& name : names) {
    const auto sample = test::samples_dir() / "history-busy" / name;
    capture::CaptureOptions options;
    options.proc_root = sample / "proc";
    options.live = false;
    options.host = host;
    options.at_ms = model::parse_time_ms(test::read_text(sample / "captured_at").substr(0, 24));
    if (!options.at_ms) {
      throw std::runtime_error("bad captured_at in " + sample.string());
    }
    auto cap = capture::take(options);
    const auto stats = writer.write(cap);
    written.emplace_back(stats.snapshot_id, std::move(cap));
  }
  return written;
}

class Store : public testing::Test {
 protected:
  SQLite::Database db{":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE};
  void SetUp() override {
    db.exec("PRAGMA foreign_keys = ON");
    store::initialize(db);
  }
};

}  // namespace

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
  // No temporary file is left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir / "sub" / "dir"), {}), 1);
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

TEST(StoreHistory, EverySnapshotOfTheSampleHistoryIsReconstructedExactly) {
  const auto dir = test::scratch_dir("history");
  auto db = store::open_for_write(dir / "h.db");
  const auto written = write_sample_history(db, {"00", "01", "02", "03"}, "sample");
  for (const auto& [id, capture] : written) {
    EXPECT_EQ(capture.owners, model::OwnerScan::complete) << "snapshot " << id;
  }
  // The sample has sockets of every kind the issue names, and owners from the copied fd links.
  const auto& busy = written[1].second;
  for (const auto state : {SockState::established, SockState::time_wait, SockState::close_wait, SockState::listen,
                           SockState::fin_wait2, SockState::unix_connected, SockState::unix_listening}) {
    EXPECT_TRUE(std::any_of(busy.sockets.begin(), busy.sockets.end(), [&](const auto& s) { return s.state == state; }))
        << model::name(state);
  }
  EXPECT_TRUE(std::any_of(busy.sockets.begin(), busy.sockets.end(), [](const auto& s) { return s.pid != 0; }));
  for (const auto& [id, capture] : written) {
    const auto stored = snapshot_rows(db, id);
    const auto expected = capture_rows(capture);
    EXPECT_TRUE(stored == expected) << "snapshot " << id << "\n" << difference(stored, expected);
    EXPECT_EQ(scalar(db, fmt::format("SELECT socket_count FROM snapshots WHERE snapshot_id = {}", id)),
              static_cast<std::int64_t>(capture.sockets.size()));
    EXPECT_EQ(scalar(db, fmt::format("SELECT sum(count) FROM state_counts WHERE snapshot_id = {}", id)),
              static_cast<std::int64_t>(capture.sockets.size()));
  }
  // Snapshot 03 has another boot_id: everything of the old boot was closed at snapshot 02.
  EXPECT_EQ(scalar(db, fmt::format("SELECT count(*) FROM v_spans WHERE last_snapshot_id IS NULL AND "
                                   "first_snapshot_id < {}",
                                   written[3].first)),
            0);
  // TIME_WAIT sockets that were established in an earlier sample carry their owner.
  EXPECT_GT(scalar(db,
                   "SELECT count(*) FROM v_spans WHERE state = 'TIME_WAIT' AND owner_carried = 1 AND "
                   "process_id IS NOT NULL"),
            0);
}

TEST(SchemaDocs, EveryExampleQueryRunsOnASampleHistory) {
  const auto dir = test::scratch_dir("schema-docs");
  {
    auto db = store::open_for_write(dir / "d.db");
    // The busy part of the sample history: its newest capture holds CLOSE_WAIT and TIME_WAIT.
    write_sample_history(db, {"00", "01", "02"}, "web1");
  }
  auto db = store::open_read_only(dir / "d.db");
  const auto doc = test::read_text(std::filesystem::path(SOCKHIST_SAMPLES_DIR) / ".." / "schema" / "README.md");
  std::size_t queries = 0;
  std::size_t with_rows = 0;
  for (std::size_t start = doc.find("```sql\n"); start != std::string::npos; start = doc.find("```sql\n", start)) {
    start += 7;
    const auto end = doc.find("```", start);
    std::string sql = doc.substr(start, end - start);
    // Grafana's macros, as the dashboard would expand them.
    for (const auto& [macro, value] :
         {std::pair{"$__unixEpochFrom()", "0"}, std::pair{"$__unixEpochTo()", "99999999999"}}) {
      for (auto at = sql.find(macro); at != std::string::npos; at = sql.find(macro)) {
        sql.replace(at, std::string(macro).size(), value);
      }
    }
    ++queries;
    const bool expect_empty = sql.find("2026-11-20 03:12:00") != std::string::npos;
    try {
      SQLite::Statement q(db, sql);
      EXPECT_EQ(q.executeStep(), !expect_empty) << sql;
      with_rows += expect_empty ? 0 : 1;
    } catch (const SQLite::Exception& e) {
      ADD_FAILURE() << e.what() << "\n" << sql;
    }
  }
  EXPECT_GE(queries, 8U);
  // All but the 03:12 example (the samples were taken on another day) find something here.
  EXPECT_EQ(with_rows + 1, queries);
}

TEST(StoreMigration, AVersionOneDatabaseIsMigratedWithItsData) {
  const auto dir = test::scratch_dir("migrate-v1");
  const auto path = dir / "v1.db";
  {
    // A database as version 1 of sockhist left it, with one snapshot holding one socket.
    SQLite::Database v1(path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    v1.exec("PRAGMA journal_mode = WAL");
    v1.exec(std::string(store::migration_sql(1)));
    v1.exec(fmt::format("PRAGMA application_id = {}", store::k_application_id));
    v1.exec("PRAGMA user_version = 1");
    v1.exec("INSERT INTO hosts(name) VALUES ('old')");
    v1.exec("INSERT INTO netns(host_id, inode) VALUES (1, 4026531840)");
    v1.exec(
        "INSERT INTO snapshots(netns_id, time_ms, boot_id, user_hz, source, capture_ms, owners, socket_count, "
        "spans_opened, spans_closed, counter_rows, skipped_lines, collector_version) "
        "VALUES (1, 1000, 'b', 100, 'proc', 1, 'complete', 1, 1, 0, 0, 0, '0.1.0')");
    v1.exec(
        "INSERT INTO socket_spans(netns_id, first_snapshot_id, first_time_ms, proto, family, state, local_addr, "
        "local_port, remote_addr, remote_port, tx_queue, rx_queue, timer, timer_ms, retransmits, probes, uid, inode) "
        "VALUES (1, 1, 1000, 'tcp', 4, 'LISTEN', '0.0.0.0', 22, '0.0.0.0', 0, 0, 0, 0, 0, 0, 0, 0, 77)");
  }
  // The analyzer may not migrate: a read-only open says what to do.
  try {
    store::open_read_only(path);
    FAIL() << "an older database was opened read-only without migration";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("run sockhist-collect"), std::string::npos) << e.what();
  }
  {
    auto db = store::open_for_write(path);
    EXPECT_EQ(scalar(db, "PRAGMA user_version"), store::schema_version());
  }
  auto db = store::open_read_only(path);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM v_snapshot_sockets WHERE local_port = 22 AND inode = 77"), 1);
  EXPECT_EQ(scalar(db, "SELECT netns_initial FROM v_snapshots"), 1);
  EXPECT_EQ(db.execAndGet("SELECT netns_pid FROM v_snapshots").isNull(), true);
  // The span as version 4 stores it: open, its time from its snapshot, names through v_spans.
  EXPECT_EQ(scalar(db, "SELECT last_snapshot_id FROM socket_spans WHERE inode = 77"), store::k_span_open);
  EXPECT_TRUE(db.execAndGet("SELECT first_time_ms FROM socket_spans WHERE inode = 77").isNull());
  EXPECT_EQ(scalar(db,
                   "SELECT count(*) FROM v_spans WHERE last_snapshot_id IS NULL AND first_time_ms = 1000 AND "
                   "proto = 'tcp' AND state = 'LISTEN' AND local_addr = '0.0.0.0' AND local_port = 22"),
            1);
  EXPECT_EQ(db.execAndGet("PRAGMA integrity_check").getString(), "ok");
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
}

TEST(StoreHistory, ALoopingWriterAndSeparateRunsStoreTheSameSpans) {
  // A looping collector keeps its open spans in memory; separate runs read them back. Same result.
  const auto dump = [](SQLite::Database& db) {
    std::vector<std::string> rows;
    SQLite::Statement q(
        db,
        "SELECT span_id, first_snapshot_id, coalesce(last_snapshot_id, -1), coalesce(prev_span_id, -1), "
        "state, local_addr, coalesce(local_port, -1), inode, coalesce(process_id, -1), owner_carried, "
        "timer_ms, first_time_ms FROM v_spans ORDER BY span_id");
    while (q.executeStep()) {
      std::string row;
      for (int i = 0; i < q.getColumnCount(); ++i) {
        row += q.getColumn(i).getString() + "|";
      }
      rows.push_back(row);
    }
    return rows;
  };
  SQLite::Database looping(":memory:", SQLite::OPEN_READWRITE);
  SQLite::Database separate(":memory:", SQLite::OPEN_READWRITE);
  store::initialize(looping);
  store::initialize(separate);
  const std::vector<std::string> names = {"00", "01", "02", "01", "02"};  // 01 and 02 again: churn back and forth
  auto shifted = [&](SQLite::Database& db, Writers writers) {
    // The same captures, later in time when repeated, so that they stay in time order.
    auto writer = std::make_unique<store::SnapshotWriter>(db);
    std::int64_t offset = 0;
    for (const auto& name : names) {
      const auto sample = test::samples_dir() / "history-busy" / name;
      capture::CaptureOptions options;
      options.proc_root = sample / "proc";
      options.live = false;
      options.host = "h";
      options.at_ms = *model::parse_time_ms(test::read_text(sample / "captured_at").substr(0, 24)) + offset;
      offset += 10'000;
      if (writers == Writers::one_per_snapshot) {
        writer = std::make_unique<store::SnapshotWriter>(db, store::OpenSpans::forget);  // as cron runs would
      }
      writer->write(capture::take(options));
    }
  };
  shifted(looping, Writers::one);
  shifted(separate, Writers::one_per_snapshot);
  const auto a = dump(looping);
  EXPECT_GT(a.size(), 200U);
  EXPECT_EQ(a, dump(separate));
}
