// Schema 9's socket_spans_by_length: the spans it finds for a moment or a range are exactly those
// the membership test finds by reading every span, for spans of every length class (one snapshot
// long to longer than the history, open ones included), and SQLite reads them through the index.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include "files.hpp"
#include "sockhist/store.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

class SpanLengths : public ::testing::Test {
 protected:
  void SetUp() override {
    store::initialize(db);
    db.exec(
        "INSERT INTO hosts(name) VALUES ('h1');"
        "INSERT INTO netns(host_id, inode) VALUES (1, 4026531840), (1, 4026532000);"
        "INSERT INTO socket_states(proto, state) VALUES ('tcp', 'ESTABLISHED'), ('tcp', 'TIME_WAIT'), "
        "('tcp', 'LISTEN');"
        "INSERT INTO addresses(addr) VALUES ('10.0.0.1');");
    // Lengths spread over the classes: mostly short, as on a busy host, some up to 2^14, some open.
    std::mt19937_64 rng(9);
    std::uniform_int_distribution<int> bits(0, 14), state(1, 3), netns(1, 2), open(0, 19);
    SQLite::Statement insert(db,
                             "INSERT INTO socket_spans(netns_id, first_snapshot_id, last_snapshot_id, state_id, "
                             "family, local_addr_id, local_port, tx_queue, rx_queue, timer, timer_ms, retransmits, "
                             "probes, uid, inode) VALUES (?, ?, ?, ?, 4, 1, 80, 0, 0, 0, 0, 0, 0, 0, 0)");
    for (int i = 0; i < 20'000; ++i) {
      const std::int64_t first = std::uniform_int_distribution<std::int64_t>(1, k_history)(rng);
      const std::int64_t length =
          std::uniform_int_distribution<std::int64_t>(0, (std::int64_t{1} << bits(rng)) - 1)(rng);
      insert.bind(1, netns(rng));
      insert.bind(2, first);
      insert.bind(3, open(rng) == 0 ? store::k_span_open : first + length);
      insert.bind(4, state(rng));
      insert.exec();
      insert.reset();
    }
  }

  // The span ids of netns 1 alive in [first_id, last_id], read by the query that reaches each
  // span's row (no index) and by socket_spans_by_length.
  std::vector<std::int64_t> alive(std::int64_t first_id, std::int64_t last_id, bool by_length) {
    constexpr const char* alive_in = "sp.first_snapshot_id <= ?2 AND sp.last_snapshot_id >= ?3";
    std::string sql = fmt::format(
        "SELECT sp.span_id FROM socket_spans sp {}WHERE sp.netns_id = ?1 "
        "AND sp.state_id IN (SELECT state_id FROM socket_states) AND {} ORDER BY sp.span_id",
        by_length ? "" : "NOT INDEXED ", alive_in);
    if (by_length) {
      sql = store::read_by_length(sql, alive_in, "?3");
    }
    SQLite::Statement q(db, sql);
    q.bind(1, 1);
    q.bind(2, last_id);
    q.bind(3, first_id);
    std::vector<std::int64_t> ids;
    while (q.executeStep()) {
      ids.push_back(q.getColumn(0).getInt64());
    }
    return ids;
  }

  static constexpr std::int64_t k_history = 20'000;
  SQLite::Database db{":memory:", SQLite::OPEN_READWRITE};
};

TEST_F(SpanLengths, AMomentsSpansAreThoseAliveInItAtEveryPlaceInTheHistory) {
  std::size_t seen = 0;
  for (std::int64_t m = 1; m <= k_history + 40; m += 97) {
    const auto want = alive(m, m, false);
    EXPECT_EQ(alive(m, m, true), want) << "at snapshot " << m;
    seen += want.size();
  }
  EXPECT_GT(seen, 100'000U) << "too few spans compared to test anything";
}

TEST_F(SpanLengths, ARangesSpansAreThoseAliveInIt) {
  for (const auto& [a, b] : std::vector<std::pair<std::int64_t, std::int64_t>>{
           {1, k_history}, {5'000, 5'060}, {9'000, 13'000}, {19'990, 30'000}, {1, 1}, {17, 18}}) {
    EXPECT_EQ(alive(a, b, true), alive(a, b, false)) << "range " << a << "-" << b;
  }
}

TEST_F(SpanLengths, TheIndexIsTheExpressionTheReadersWriteAndTheySeekIt) {
  // The index as migration 9 wrote it, with its whitespace folded: it holds the readers' expression.
  auto sql = db.execAndGet("SELECT sql FROM sqlite_schema WHERE name = 'socket_spans_by_length'").getString();
  std::string folded;
  for (const char c : sql) {
    if (!(c == ' ' || c == '\n') || (!folded.empty() && folded.back() != ' ')) {
      folded += c == '\n' ? ' ' : c;
    }
  }
  EXPECT_NE(folded.find("state_id, " + store::span_length_class("") + ", first_snapshot_id"), std::string::npos)
      << folded;
  // A moment of the public view, read through it: one seek per state and class, into a window of
  // first snapshots, never a scan.
  SQLite::Statement plan(db, "EXPLAIN QUERY PLAN SELECT * FROM (" +
                                 store::snapshot_sockets_select("socket_spans_by_length") + ") WHERE snapshot_id = 5");
  std::string steps;
  while (plan.executeStep()) {
    steps += plan.getColumn(3).getString() + "\n";
  }
  EXPECT_NE(steps.find("INDEX socket_spans_by_length (netns_id=? AND state_id=? AND <expr>=? AND "
                       "first_snapshot_id>? AND first_snapshot_id<?)"),
            std::string::npos)
      << steps;
  EXPECT_EQ(steps.find("SCAN sp"), std::string::npos) << steps;
}

}  // namespace
