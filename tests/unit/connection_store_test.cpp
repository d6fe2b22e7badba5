// The connection log in the store: what the writer joins each socket end to (the spans of the same
// socket, by endpoints and cookie), the owner it gives and on what grounds, the birth bounds, the
// TIME_WAIT an end began, the aggregates and counts, retention, and merge carrying it all.
#include <gtest/gtest.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include "sockhist/error.hpp"
#include "sockhist/merge.hpp"
#include "store_history.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

constexpr std::int64_t k_t0 = 1'790'000'000'000;

model::SocketEnd end_of(std::uint16_t local_port, std::uint16_t remote_port, std::uint64_t cookie, std::int64_t time_ms,
                        std::uint64_t sent = 10, std::uint64_t received = 21) {
  model::SocketEnd e;
  e.local_addr = "127.0.0.1";
  e.remote_addr = "127.0.0.1";
  e.local_port = local_port;
  e.remote_port = remote_port;
  e.cookie = cookie;
  e.family = 4;
  e.time_ms = time_ms;
  model::TcpTotals t;
  t.bytes_sent = sent;
  t.bytes_received = received;
  t.bytes_acked = sent + 2;
  e.tcp = t;
  return e;
}

Socket with_cookie(Socket s, std::uint64_t cookie) {
  s.cookie = cookie;
  return s;
}

model::HeardEnds heard(std::int64_t since, std::int64_t until, std::vector<model::SocketEnd> ends) {
  model::HeardEnds h;
  h.since_ms = since;
  h.until_ms = until;
  h.listening = true;
  h.heard = ends.size();
  h.budget = 100;
  h.ends = std::move(ends);
  return h;
}

// One row of v_connections, the columns these tests look at.
struct EndRow {
  std::string basis;
  std::int64_t pid = 0;
  std::string seen_state;
  bool time_wait = false;
  std::optional<std::int64_t> born_after, born_by;
  std::string reason;
};

EndRow row_of(SQLite::Database& db, int local_port, int remote_port) {
  SQLite::Statement q(db,
                      "SELECT owner_basis, coalesce(pid, 0), coalesce(seen_state, ''), entered_time_wait, "
                      "born_after_ms, born_by_ms, coalesce(owner_reason, '') FROM v_connections "
                      "WHERE local_port = ? AND remote_port = ?");
  q.bind(1, local_port);
  q.bind(2, remote_port);
  EXPECT_TRUE(q.executeStep()) << local_port << " -> " << remote_port;
  EndRow r;
  r.basis = q.getColumn(0).getString();
  r.pid = q.getColumn(1).getInt64();
  r.seen_state = q.getColumn(2).getString();
  r.time_wait = q.getColumn(3).getInt() != 0;
  if (!q.getColumn(4).isNull()) {
    r.born_after = q.getColumn(4).getInt64();
  }
  if (!q.getColumn(5).isNull()) {
    r.born_by = q.getColumn(5).getInt64();
  }
  r.reason = q.getColumn(6).getString();
  EXPECT_FALSE(q.executeStep()) << "one end per socket";
  return r;
}

// Three snapshots a second apart: a listener on 80 owned by 7; a connection 40000 -> 80 seen
// alive (owned by 9) that ends into TIME_WAIT; a client 5555 -> 443 of process 8 at t0 and t1.
class ConnectionStore : public testing::Test {
 protected:
  void SetUp() override {
    store::initialize(m_db);
    store::SnapshotWriter writer(m_db);
    const auto listener = with_cookie(tcp(SockState::listen, 80, 0, 100, 7), 1);
    const auto seen = with_cookie(tcp(SockState::established, 40000, 80, 101, 9), 2);
    auto client = with_cookie(tcp(SockState::established, 5555, 443, 102, 8), 3);
    auto c0 = capture_at(k_t0, {listener, seen, client});
    c0.connections = heard(k_t0 - 500, k_t0, {});
    writer.write(c0);
    // t1: 40000 -> 80 ended at t0 + 400 and is in TIME_WAIT under its cookie; an inbound
    // connection 41000 -> 80 and an outbound one from 5555 came and went unseen; 42000 -> 80 is new.
    auto tw = with_cookie(tcp(SockState::time_wait, 40000, 80, 0), 2);
    auto fresh = with_cookie(tcp(SockState::established, 42000, 80, 103, 9), 5);
    auto c1 = capture_at(k_t0 + 1000, {listener, tw, client, fresh});
    auto outbound = end_of(5555, 8443, 21, k_t0 + 600);
    auto server_side = end_of(80, 41000, 22, k_t0 + 700);
    auto unknown = end_of(6000, 9999, 23, k_t0 + 800);
    c1.connections = heard(k_t0, k_t0 + 1000, {end_of(40000, 80, 2, k_t0 + 400), server_side, outbound, unknown});
    writer.write(c1);
    // t2: 42000 -> 80 ended (seen at t1 only); its TIME_WAIT has another cookie (the kernel gave
    // the socket one only as it was freed); 43000 -> 80 ended twice on one 4-tuple, unseen.
    auto tw2 = with_cookie(tcp(SockState::time_wait, 42000, 80, 0), 99);
    auto c2 = capture_at(k_t0 + 2000, {listener, tw, tw2});
    c2.connections = heard(k_t0 + 1000, k_t0 + 2000,
                           {end_of(42000, 80, 5, k_t0 + 1500), end_of(5555, 443, 3, k_t0 + 1600),
                            end_of(43000, 81, 31, k_t0 + 1700), end_of(43000, 81, 32, k_t0 + 1800)});
    auto summed = model::EndAggregate{};
    summed.remote_addr = "127.0.0.1";
    summed.second_ms = k_t0 + 1000;
    summed.count = 5;
    summed.bytes_sent = 50;
    summed.local_port = 7000;
    summed.family = 4;
    c2.connections->aggregates.push_back(summed);
    c2.connections->heard += 5 + 2;
    c2.connections->over_bound = 2;
    c2.connections->overruns = 1;
    writer.write(c2);
  }
  SQLite::Database m_db{":memory:", SQLite::OPEN_READWRITE};
};

}  // namespace

TEST_F(ConnectionStore, AnEndSeenAliveGetsItsSpanOwnerBoundsAndTimeWait) {
  const auto r = row_of(m_db, 40000, 80);
  EXPECT_EQ(r.basis, "span");
  EXPECT_EQ(r.pid, 9);
  EXPECT_EQ(r.seen_state, "ESTABLISHED");
  EXPECT_TRUE(r.time_wait);
  EXPECT_EQ(r.born_after, std::nullopt) << "alive at the first snapshot: born when, unknown";
  EXPECT_EQ(r.born_by, k_t0);
  // Seen at t1 only: born after t0, by t1; its TIME_WAIT found by endpoints despite the cookie.
  const auto fresh = row_of(m_db, 42000, 80);
  EXPECT_EQ(fresh.basis, "span");
  EXPECT_EQ(fresh.born_after, k_t0);
  EXPECT_EQ(fresh.born_by, k_t0 + 1000);
  EXPECT_TRUE(fresh.time_wait);
}

TEST_F(ConnectionStore, AnUnseenInboundEndIsTheListenersAndBornAfterThePreviousSnapshot) {
  const auto r = row_of(m_db, 80, 41000);
  EXPECT_EQ(r.basis, "listener");
  EXPECT_EQ(r.pid, 7);
  EXPECT_EQ(r.seen_state, "");
  EXPECT_EQ(r.born_after, k_t0);
  EXPECT_EQ(r.born_by, std::nullopt);
}

TEST_F(ConnectionStore, AnUnseenOutboundEndIsInferredFromItsPortOrHasNoneWithTheReason) {
  const auto inferred = row_of(m_db, 5555, 8443);
  EXPECT_EQ(inferred.basis, "inferred");
  EXPECT_EQ(inferred.pid, 8);
  EXPECT_NE(inferred.reason.find("5555"), std::string::npos);
  const auto none = row_of(m_db, 6000, 9999);
  EXPECT_EQ(none.basis, "none");
  EXPECT_EQ(none.pid, 0);
  EXPECT_NE(none.reason.find("no snapshot saw it alive"), std::string::npos) << none.reason;
  EXPECT_NE(none.reason.find("6000"), std::string::npos) << none.reason;
}

TEST_F(ConnectionStore, TwoEndsOnOneTupleClaimNoTimeWaitByEndpoints) {
  SQLite::Statement q(m_db, "SELECT count(*), sum(entered_time_wait) FROM v_connections WHERE local_port = 43000");
  ASSERT_TRUE(q.executeStep());
  EXPECT_EQ(q.getColumn(0).getInt(), 2);
  EXPECT_EQ(q.getColumn(1).getInt(), 0);
}

TEST_F(ConnectionStore, EachSnapshotSaysWhatWasHeardKeptSummedAndMissed) {
  SQLite::Statement q(m_db,
                      "SELECT heard, stored, aggregated, over_bound, overruns, complete FROM v_connection_logs "
                      "ORDER BY snapshot_id");
  std::vector<std::vector<int>> rows;
  while (q.executeStep()) {
    rows.push_back({q.getColumn(0).getInt(), q.getColumn(1).getInt(), q.getColumn(2).getInt(), q.getColumn(3).getInt(),
                    q.getColumn(4).getInt(), q.getColumn(5).getInt()});
  }
  const std::vector<std::vector<int>> expected{{0, 0, 0, 0, 0, 1}, {4, 4, 0, 0, 0, 1}, {11, 4, 5, 2, 1, 0}};
  EXPECT_EQ(rows, expected);
  EXPECT_EQ(scalar(m_db, "SELECT sum(count) FROM v_connection_aggregates WHERE local_port = 7000"), 5);
}

TEST_F(ConnectionStore, RetentionTakesTheLogWithItsSnapshotAndKeepsOwnersEndsNeed) {
  store::apply_retention(m_db, k_t0 + 1500);  // the first two snapshots go
  EXPECT_EQ(scalar(m_db, "SELECT count(*) FROM connection_logs"), 1);
  EXPECT_EQ(scalar(m_db, "SELECT count(*) FROM connection_ends"), 4);
  EXPECT_EQ(scalar(m_db,
                   "SELECT count(*) FROM connection_ends WHERE process_id NOT IN "
                   "(SELECT process_id FROM processes)"),
            0);
  EXPECT_EQ(scalar(m_db,
                   "SELECT count(*) FROM connection_ends WHERE local_addr_id NOT IN "
                   "(SELECT addr_id FROM addresses)"),
            0);
}

TEST_F(ConnectionStore, MergeCarriesEveryEndWithTheSameJoinAndOwner) {
  SQLite::Database out(":memory:", SQLite::OPEN_READWRITE);
  store::initialize(out);
  store::merge_into(out, m_db, "input.db", {});
  const char* sql =
      "SELECT end_ms, proto, local_addr, local_port, remote_addr, remote_port, end_state, coalesce(seen_state, ''), "
      "entered_time_wait, coalesce(bytes_sent, -1), bytes_received, coalesce(born_after_ms, -1), "
      "coalesce(born_by_ms, -1), owner_basis, coalesce(pid, 0), coalesce(owner_reason, ''), cookie "
      "FROM v_connections ORDER BY end_ms, local_port";
  const auto rows = [&](SQLite::Database& db, const char* query = nullptr) {
    std::vector<std::string> all;
    SQLite::Statement q(db, query != nullptr ? query : sql);
    while (q.executeStep()) {
      std::string line;
      for (int i = 0; i < q.getColumnCount(); ++i) {
        line += q.getColumn(i).getString() + "|";
      }
      all.push_back(line);
    }
    return all;
  };
  const auto before = rows(m_db);
  EXPECT_EQ(before.size(), 8u);
  EXPECT_EQ(rows(out), before);
  const char* logs =
      "SELECT since_ms, until_ms, listening, heard, stored, aggregated, over_bound, overruns, malformed, budget "
      "FROM v_connection_logs ORDER BY until_ms";
  EXPECT_EQ(rows(out, logs), rows(m_db, logs));
  EXPECT_EQ(scalar(out, "SELECT sum(count) FROM connection_aggregates"), 5);
  EXPECT_EQ(scalar(out, "SELECT sum(heard) FROM connection_logs"), 15);
}

// A socket freed as a snapshot was taken: its end is in that snapshot, its TIME_WAIT only in the
// next, where the writer links them (by cookie, else by endpoints when nothing else could have).
TEST(ConnectionStoreLate, ATimeWaitSeenOneSnapshotLaterIsLinkedToTheEndItBegan) {
  SQLite::Database db(":memory:", SQLite::OPEN_READWRITE);
  store::initialize(db);
  store::SnapshotWriter writer(db);
  auto c0 = capture_at(k_t0, {});
  c0.connections =
      heard(k_t0 - 500, k_t0,
            {end_of(44000, 80, 41, k_t0 - 10), end_of(45000, 80, 51, k_t0 - 5), end_of(46000, 80, 61, k_t0 - 4)});
  writer.write(c0);
  auto c1 = capture_at(k_t0 + 1000, {with_cookie(tcp(SockState::time_wait, 44000, 80, 0), 77),
                                     with_cookie(tcp(SockState::time_wait, 45000, 80, 0), 51),
                                     with_cookie(tcp(SockState::time_wait, 46000, 80, 0), 78)});
  // 46000 -> 80 ended again in this snapshot: its TIME_WAIT could be either's.
  c1.connections = heard(k_t0, k_t0 + 1000, {end_of(46000, 80, 62, k_t0 + 500)});
  writer.write(c1);
  EXPECT_TRUE(row_of(db, 44000, 80).time_wait);
  EXPECT_TRUE(row_of(db, 45000, 80).time_wait);
  EXPECT_EQ(scalar(db,
                   "SELECT count(*) FROM connection_ends WHERE local_port = 46000 AND time_wait_span_id IS NOT "
                   "NULL"),
            0);
}

// An end is a TIME_WAIT's start only when that TIME_WAIT's timer agrees, and never when the socket
// was orphaned into a FIN_WAIT2 minisocket first (its TIME_WAIT began at the peer's later FIN).
TEST(ConnectionStoreLate, ATimeWaitThatBeganLaterThanTheEndIsNotItsStart) {
  SQLite::Database db(":memory:", SQLite::OPEN_READWRITE);
  store::initialize(db);
  store::SnapshotWriter writer(db);
  auto c0 = capture_at(k_t0, {});
  c0.connections = heard(k_t0 - 500, k_t0, {});
  writer.write(c0);
  auto minisocket = with_cookie(tcp(SockState::fin_wait2, 47000, 80, 0), 71);
  minisocket.timer = model::TimerKind::timewait;
  minisocket.timer_ms = 55'000;
  auto late = with_cookie(tcp(SockState::time_wait, 48000, 80, 0), 81);
  late.timer_ms = 58'000;  // seen at t0 + 5000: it began at t0 + 3000, 2.5 s after the end
  auto c1 = capture_at(k_t0 + 5000, {minisocket, late});
  c1.connections = heard(k_t0, k_t0 + 5000, {end_of(47000, 80, 71, k_t0 + 400), end_of(48000, 80, 81, k_t0 + 500)});
  writer.write(c1);
  auto c2 = capture_at(k_t0 + 6000, {with_cookie(tcp(SockState::time_wait, 47000, 80, 0), 71), late});
  c2.connections = heard(k_t0 + 5000, k_t0 + 6000, {});
  writer.write(c2);
  EXPECT_FALSE(row_of(db, 47000, 80).time_wait);
  EXPECT_FALSE(row_of(db, 48000, 80).time_wait);
  EXPECT_EQ(row_of(db, 47000, 80).seen_state, "") << "a minisocket is not the socket seen alive";
}

// A connection log holding what no kernel gives is refused before anything is merged.
TEST_F(ConnectionStore, MergeRefusesAPortNoKernelGivesAndWritesNothing) {
  m_db.exec("UPDATE connection_ends SET remote_port = 70000 WHERE local_port = 6000");
  SQLite::Database out(":memory:", SQLite::OPEN_READWRITE);
  store::initialize(out);
  try {
    store::merge_into(out, m_db, "hostile.db", {});
    FAIL() << "merged";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::db_refused);
    EXPECT_NE(std::string(e.what()).find("hostile.db: connection_ends holds remote_port 70000"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(scalar(out, "SELECT count(*) FROM snapshots"), 0);
}
