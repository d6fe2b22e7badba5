// The store's per-snapshot values (queues, timers, retransmits: each snapshot's own, whoever wrote
// it, kept by retention and merge) and network namespaces told apart on a reused inode.
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

namespace {

// One socket's values in one snapshot as the public view gives them.
std::string values_at(SQLite::Database& db, std::int64_t snapshot_id, int local_port, int remote_port) {
  SQLite::Statement q(db,
                      "SELECT rx_queue, tx_queue, timer, timer_ms, retransmits, probes, coalesce(backlog, -1) "
                      "FROM v_snapshot_sockets WHERE snapshot_id = ? AND local_port = ? AND remote_port = ?");
  q.bind(1, snapshot_id);
  q.bind(2, local_port);
  q.bind(3, remote_port);
  if (!q.executeStep()) {
    return "(absent)";
  }
  return fmt::format("rx {} tx {} {} {} ms retrans {} probes {} backlog {}", q.getColumn(0).getInt64(),
                     q.getColumn(1).getInt64(), q.getColumn(2).getString(), q.getColumn(3).getInt64(),
                     q.getColumn(4).getInt64(), q.getColumn(5).getInt64(), q.getColumn(6).getInt64());
}

// A listener whose accept queue fills and a keepalive connection whose reader stalls, its timer
// counting down, being reset, then retransmitting: the captures of six snapshots 10 s apart.
std::vector<Capture> changing_values() {
  std::vector<Capture> out;
  for (int i = 0; i < 6; ++i) {
    Socket listener = tcp(SockState::listen, 80, 0, 11, 7);
    listener.backlog = 128;
    listener.rx_queue = i < 2 ? 0 : 2;  // accept queue
    Socket conn = tcp(SockState::established, 80, 40000, 12, 7);
    conn.timer = model::TimerKind::keepalive;
    // Counting down exactly, then (snapshot 4) reset by the keepalive, with 120 ms of jitter on 3.
    conn.timer_ms = i < 4 ? static_cast<std::uint32_t>(7'200'000 - i * 10'000 + (i == 3 ? 120 : 0)) : 7'199'000;
    conn.rx_queue = i == 3 ? 2000 : 1000 * i;  // unread bytes grow 0 -> 1000 -> 2000 -> 2000 -> 4000 -> 5000
    conn.tx_queue = i == 5 ? 300 : 0;
    if (i == 5) {
      conn.timer = model::TimerKind::on;
      conn.timer_ms = 200;
      conn.retransmits = 3;
    }
    out.push_back(capture_at(1'000'000 + i * 10'000, {listener, conn}));
  }
  return out;
}

}  // namespace

TEST_F(Store, EachSnapshotKeepsItsOwnQueuesTimerAndRetransmits) {
  const auto captures = changing_values();
  std::vector<std::int64_t> ids;
  std::vector<std::size_t> value_rows;
  {
    store::SnapshotWriter writer(db);
    for (const auto& c : captures) {
      const auto stats = writer.write(c);
      ids.push_back(stats.snapshot_id);
      value_rows.push_back(stats.value_rows);
      EXPECT_EQ(stats.spans_opened, c.time_ms == captures[0].time_ms ? 2U : 0U) << "values never split a span";
    }
  }
  // A row only where something changed: rx (1, 2, 4), the listener's queue (2), the reset (4),
  // rx, tx, timer and retransmits (5); the exact countdown and 120 ms of jitter (3) cost nothing.
  EXPECT_EQ(value_rows, (std::vector<std::size_t>{0, 1, 2, 0, 1, 1}));
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM socket_spans"), 2);
  const std::vector<std::string> expected = {
      "rx 0 tx 0 keepalive 7200000 ms retrans 0 probes 0 backlog -1",
      "rx 1000 tx 0 keepalive 7190000 ms retrans 0 probes 0 backlog -1",
      "rx 2000 tx 0 keepalive 7180000 ms retrans 0 probes 0 backlog -1",
      "rx 2000 tx 0 keepalive 7170000 ms retrans 0 probes 0 backlog -1",  // projected; the kernel said 7170120
      "rx 4000 tx 0 keepalive 7199000 ms retrans 0 probes 0 backlog -1",
      "rx 5000 tx 300 on 200 ms retrans 3 probes 0 backlog -1",
  };
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(values_at(db, ids[i], 80, 40000), expected[i]) << "snapshot " << i;
    EXPECT_EQ(values_at(db, ids[i], 80, 0),
              fmt::format("rx {} tx 0 off 0 ms retrans 0 probes 0 backlog 128", i < 2 ? 0 : 2))
        << "snapshot " << i;
  }
}

TEST_F(Store, SeparateRunsStoreTheSameValuesAsALoopingWriter) {
  const auto dump = [](SQLite::Database& d) {
    return dump_rows(d, "SELECT * FROM socket_values ORDER BY span_id, snapshot_id");
  };
  {
    store::SnapshotWriter writer(db);
    for (const auto& c : changing_values()) {
      writer.write(c);
    }
  }
  SQLite::Database separate(":memory:", SQLite::OPEN_READWRITE);
  store::initialize(separate);
  for (const auto& c : changing_values()) {
    store::SnapshotWriter(separate, store::OpenSpans::forget).write(c);  // as cron runs would
  }
  EXPECT_EQ(dump(db).size(), 5U);
  EXPECT_EQ(dump(db), dump(separate));
}

TEST_F(Store, RetentionKeepsTheValuesTheKeptSnapshotsShow) {
  std::vector<std::int64_t> ids;
  {
    store::SnapshotWriter writer(db);
    for (const auto& c : changing_values()) {
      ids.push_back(writer.write(c).snapshot_id);
    }
  }
  std::vector<std::string> before;
  for (const auto id : ids) {
    before.push_back(values_at(db, id, 80, 40000) + " / " + values_at(db, id, 80, 0));
  }
  // Snapshots 0 to 2 go: of the rows before, only the newest of each span (rx 2000, accept queue 2)
  // still holds at snapshot 3.
  EXPECT_EQ(store::apply_retention(db, 1'000'000 + 3 * 10'000, 100, {}), 3U);
  for (std::size_t i = 3; i < ids.size(); ++i) {
    EXPECT_EQ(values_at(db, ids[i], 80, 40000) + " / " + values_at(db, ids[i], 80, 0), before[i]) << "snapshot " << i;
  }
  EXPECT_EQ(scalar(db, fmt::format("SELECT count(*) FROM socket_values WHERE snapshot_id < {}", ids[3])), 2);
  // Once the sockets are gone and their snapshots expire, their values go with them.
  {
    store::SnapshotWriter writer(db);
    writer.write(capture_at(2'000'000, {}));
  }
  store::apply_retention(db, 1'500'000, 100, {});
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM socket_values"), 0);
}

TEST_F(Store, MergeCopiesEachSnapshotsOwnValues) {
  {
    store::SnapshotWriter writer(db);
    for (const auto& c : changing_values()) {
      writer.write(c);
    }
  }
  SQLite::Database merged(":memory:", SQLite::OPEN_READWRITE);
  store::initialize(merged);
  // In two parts, so that the second starts with spans whose values changed before it.
  store::CopyFilter first_part;
  first_part.until_ms = 1'000'000 + 2 * 10'000;
  EXPECT_EQ(store::merge_into(merged, db, "in.db", first_part).added, 3);
  EXPECT_EQ(store::merge_into(merged, db, "in.db").added, 3);
  const auto ids = [](SQLite::Database& d) {
    std::vector<std::int64_t> out;
    SQLite::Statement q(d, "SELECT snapshot_id FROM snapshots ORDER BY time_ms");
    while (q.executeStep()) {
      out.push_back(q.getColumn(0).getInt64());
    }
    return out;
  };
  const auto in = ids(db), out = ids(merged);
  ASSERT_EQ(in.size(), out.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(values_at(merged, out[i], 80, 40000), values_at(db, in[i], 80, 40000)) << "snapshot " << i;
    EXPECT_EQ(values_at(merged, out[i], 80, 0), values_at(db, in[i], 80, 0)) << "snapshot " << i;
  }
  EXPECT_EQ(scalar(merged, "SELECT count(*) FROM socket_values"), scalar(db, "SELECT count(*) FROM socket_values"));
}

namespace {

// A capture of a container's namespace (not the host's own) on inode 4026532300.
Capture container_capture(std::int64_t time_ms, std::int64_t in_segs, std::optional<std::uint64_t> cookie,
                          std::string boot = "boot-a") {
  auto c = capture_at(time_ms, {tcp(SockState::listen, 8080, 0, 21, 7)}, std::move(boot));
  c.netns_inode = 4026532300;
  c.netns_initial = false;
  c.netns_name = "ctr";
  c.netns_cookie = cookie;
  c.counters[0].value = in_segs;  // Tcp.InSegs
  return c;
}

std::int64_t namespaces_on_inode(SQLite::Database& db) {
  return scalar(db, "SELECT count(*) FROM netns WHERE inode = 4026532300");
}

}  // namespace

TEST_F(Store, ANamespaceCookieTellsANewNamespaceOnAReusedInode) {
  store::SnapshotWriter writer(db);
  writer.write(container_capture(1'000'000, 100, 7));
  writer.write(container_capture(1'010'000, 150, 7));
  EXPECT_EQ(namespaces_on_inode(db), 1);
  // Another cookie: another namespace, even with counters that only grew.
  const auto stats = writer.write(container_capture(1'020'000, 900, 8));
  EXPECT_EQ(namespaces_on_inode(db), 2);
  EXPECT_EQ(stats.spans_closed, 0U) << "the first namespace's sockets are not closed by another's snapshot";
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM socket_spans WHERE last_snapshot_id = 2147483647"), 2);
  // The second namespace goes on in its own row.
  writer.write(container_capture(1'030'000, 950, 8));
  EXPECT_EQ(namespaces_on_inode(db), 2);
}

TEST_F(Store, WithoutCookiesCountersThatGoBackTellANewNamespace) {
  // As separate cron runs on a kernel before 5.14: no cookie, no writer memory.
  const auto write = [&](const Capture& c) { return store::SnapshotWriter(db, store::OpenSpans::forget).write(c); };
  write(container_capture(1'000'000, 100, std::nullopt));
  write(container_capture(1'010'000, 150, std::nullopt));
  EXPECT_EQ(namespaces_on_inode(db), 1) << "counters that grew: the same namespace";
  write(container_capture(1'020'000, 3, std::nullopt));
  EXPECT_EQ(namespaces_on_inode(db), 2) << "a counter went back within one boot: a namespace made anew";
  write(container_capture(1'030'000, 10, std::nullopt));
  EXPECT_EQ(namespaces_on_inode(db), 2);
  // After a reboot a container's namespace is a new one whatever its inode; the host's own is the host.
  write(container_capture(1'040'000, 50, std::nullopt, "boot-b"));
  EXPECT_EQ(namespaces_on_inode(db), 3);
  write(capture_at(1'000'000, {}));
  write(capture_at(1'040'000, {}, "boot-b"));
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM netns WHERE is_initial = 1"), 1);
  // Nothing recorded moved: each row keeps the snapshots it was given.
  EXPECT_EQ(dump_rows(db, "SELECT netns_id, count(*) FROM snapshots GROUP BY netns_id ORDER BY netns_id"),
            (std::vector<std::string>{"1|2|", "2|2|", "3|1|", "4|2|"}));
}
