// The store over the sample history: every snapshot reconstructed exactly, the schema's example
// queries, migration from version 1, and a looping writer against separate runs.
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
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"
#include "store_history.hpp"

using namespace sockhist;
using namespace sockhist::test;

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
    // A looping collector's two snapshots with a connection log, for its examples: a connection
    // of well under a second, and a stretch whose receive buffer overflowed.
    store::SnapshotWriter writer(db);
    const auto now = model::now_ms();
    const std::vector<model::Socket> sockets{tcp(SockState::established, 40000, 80, 11, 5),
                                             tcp(SockState::time_wait, 41001, 443, 0)};
    auto first = capture_at(now - 2000, sockets);
    first.connections = model::HeardEnds{};
    first.connections->listening = true;
    writer.write(first);
    auto second = capture_at(now - 1000, sockets);
    model::SocketEnd end;
    end.local_addr = "10.0.0.1";
    end.remote_addr = "10.0.0.9";
    end.local_port = 41000;
    end.remote_port = 443;
    end.family = 4;
    end.cookie = 7;
    end.time_ms = now - 1500;
    end.tcp = model::TcpTotals{};
    end.tcp->bytes_sent = 100;
    second.connections = model::HeardEnds{{end}, {}, now - 2000, now - 1000, 100, 1, 1, 0, 0, true};
    writer.write(second);
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
    return dump_rows(db,
                     "SELECT span_id, first_snapshot_id, coalesce(last_snapshot_id, -1), coalesce(prev_span_id, -1), "
                     "state, local_addr, coalesce(local_port, -1), inode, coalesce(process_id, -1), owner_carried, "
                     "timer_ms, first_time_ms FROM v_spans ORDER BY span_id");
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
