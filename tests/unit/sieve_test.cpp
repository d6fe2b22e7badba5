// The writer's sieve (SnapshotWriter::sieve_for): a capture that leaves out, as it reads them, the
// sockets whose open spans hold them unchanged must store exactly what the whole capture stores,
// whatever changed between snapshots, in a looping writer and in a new one per snapshot.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>

#include "sockhist/error.hpp"
#include "store_history.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

SQLite::Database new_db() {
  SQLite::Database db(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  db.exec("PRAGMA foreign_keys = ON");
  store::initialize(db);
  return db;
}

// Every stored row that a snapshot writes or changes, in a comparable order.
std::vector<std::string> everything(SQLite::Database& db) {
  std::vector<std::string> rows;
  for (const char* sql :
       {"SELECT * FROM socket_spans ORDER BY span_id", "SELECT * FROM socket_values ORDER BY span_id, snapshot_id",
        "SELECT * FROM state_counts ORDER BY snapshot_id, proto, state",
        "SELECT snapshot_id, netns_id, time_ms, socket_count, spans_opened, spans_closed, counter_rows, value_rows "
        "FROM snapshots ORDER BY snapshot_id",
        "SELECT * FROM processes ORDER BY process_id", "SELECT * FROM addresses ORDER BY addr_id",
        "SELECT * FROM netns ORDER BY netns_id", "SELECT * FROM users ORDER BY host_id, uid"}) {
    rows.push_back(std::string("-- ") + sql);
    for (auto& row : dump_rows(db, sql)) {
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

// Sieves `cap` as a live capture does: sockets in batches of `batch`, a table at a time; with
// `withdraw_first`, the first table is sieved halfway, withdrawn (its dump failed) and read again.
Capture sieved(store::SnapshotWriter& writer, Capture cap, std::size_t batch, bool withdraw_first) {
  auto sieve = writer.sieve_for(cap);
  if (!sieve) {
    return cap;
  }
  sieve->know_owners(cap.processes);
  std::vector<Socket> kept;
  const std::size_t half = cap.sockets.size() / 2;
  if (withdraw_first) {
    sieve->begin_table();
    for (std::size_t i = 0; i < half; ++i) {
      (void)sieve->keep(cap.sockets[i]);
    }
    sieve->withdraw_table();
  }
  for (std::size_t first = 0; first < cap.sockets.size(); first += batch) {
    if (first == 0 || first >= half) {
      sieve->begin_table();  // two tables: the first half and the rest
    }
    for (std::size_t i = first; i < std::min(cap.sockets.size(), first + batch); ++i) {
      if (sieve->keep(cap.sockets[i])) {
        kept.push_back(cap.sockets[i]);
      }
    }
  }
  cap.sockets = std::move(kept);
  cap.sieve = std::move(sieve);
  return cap;
}

// A population of TCP sockets that changes between snapshots in every way matching knows.
class Churn {
 public:
  explicit Churn(unsigned seed) : m_random(seed) {
    for (int i = 0; i < 600; ++i) {
      add(SockState::established);
    }
    for (int i = 0; i < 60; ++i) {
      add(SockState::time_wait);
    }
    m_sockets.push_back(tcp(SockState::listen, 80, 0, next_inode(), 7));
  }

  std::vector<Socket> next() {
    std::vector<Socket> out;
    for (auto& s : m_sockets) {
      switch (pick(14)) {
        case 0:  // gone
          continue;
        case 1:  // its unread bytes grow: a values row
          s.rx_queue += 100;
          break;
        case 2:  // another owner (a process the database has not seen yet, or an old one)
          s.pid = pick(2) == 0 ? 1000 + static_cast<std::int32_t>(pick(50)) : 7;
          break;
        case 3:  // the peer closed: same inode, another state
          if (s.state == SockState::established) {
            s.state = SockState::close_wait;
          }
          break;
        case 4:  // orphaned into TIME_WAIT: inode 0, linked by connection
          if (s.state == SockState::established || s.state == SockState::close_wait) {
            s = tcp(SockState::time_wait, s.local_port, s.remote_port, 0);
          }
          break;
        case 5:  // a TIME_WAIT 4-tuple reused: its timer starts again
          if (s.state == SockState::time_wait) {
            s.timer_ms = 59'500;
          }
          break;
        default:  // unchanged; TIME_WAIT counts down with the clock
          if (s.state == SockState::time_wait) {
            s.timer_ms = s.timer_ms > 10'000 ? s.timer_ms - 10'000 : 0;
          }
          break;
      }
      out.push_back(s);
    }
    for (int i = 0; i < 30; ++i) {
      add(SockState::established);
      out.push_back(m_sockets.back());
    }
    if (pick(2) == 0 && !out.empty()) {
      out.push_back(out[pick(static_cast<unsigned>(out.size()))]);  // a dump that repeats a socket
    }
    m_sockets = out;
    std::shuffle(out.begin(), out.end(), m_random);  // the kernel's order is its own
    return out;
  }

 private:
  unsigned pick(unsigned n) { return std::uniform_int_distribution<unsigned>(0, n - 1)(m_random); }
  std::uint64_t next_inode() { return ++m_inode; }
  void add(SockState state) {
    const auto port = static_cast<std::uint16_t>(20000 + m_sockets.size() % 40000);
    Socket s =
        tcp(state, port, static_cast<std::uint16_t>(80 + pick(3)), state == SockState::time_wait ? 0 : next_inode(),
            state == SockState::time_wait ? 0 : 7 + static_cast<std::int32_t>(pick(3)));
    m_sockets.push_back(s);
  }

  std::mt19937 m_random;
  std::vector<Socket> m_sockets;
  std::uint64_t m_inode = 5000;
};

void expect_same_history(store::OpenSpans mode, std::size_t batch, bool withdraw) {
  for (const unsigned seed : {1U, 2U, 3U}) {
    auto whole = new_db();
    auto sieving = new_db();
    store::SnapshotWriter looping_whole(whole, mode);
    store::SnapshotWriter looping_sieving(sieving, mode);
    Churn churn(seed);
    std::size_t left_out = 0;
    for (int snapshot = 0; snapshot < 8; ++snapshot) {
      const auto cap = capture_at(1'000'000 + snapshot * 10'000, churn.next());
      // A collector started by cron is a new writer for every snapshot.
      std::optional<store::SnapshotWriter> new_whole, new_sieving;
      auto& writer_whole = mode == store::OpenSpans::forget ? new_whole.emplace(whole, mode) : looping_whole;
      auto& writer_sieving = mode == store::OpenSpans::forget ? new_sieving.emplace(sieving, mode) : looping_sieving;
      const auto plain = writer_whole.write(cap);
      const auto sieved_cap = sieved(writer_sieving, cap, batch, withdraw);
      EXPECT_EQ(snapshot == 0, sieved_cap.sieve == nullptr) << "a first snapshot has nothing to sieve against";
      if (sieved_cap.sieve) {
        left_out += sieved_cap.sieve->left_out();
        EXPECT_EQ(sieved_cap.sockets.size() + sieved_cap.sieve->left_out(), cap.sockets.size());
      }
      const auto stats = writer_sieving.write(sieved_cap);
      EXPECT_EQ(stats.sockets, plain.sockets);
      EXPECT_EQ(stats.spans_opened, plain.spans_opened);
      EXPECT_EQ(stats.spans_closed, plain.spans_closed);
      EXPECT_EQ(stats.value_rows, plain.value_rows);
    }
    EXPECT_GT(left_out, 2000U) << "the unchanged sockets (over half) are left out";
    const auto a = everything(whole);
    const auto b = everything(sieving);
    ASSERT_EQ(a.size(), b.size()) << "seed " << seed;
    for (std::size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i], b[i]) << "seed " << seed << ", row " << i;
    }
  }
}

}  // namespace

TEST(Sieve, ALoopingWriterStoresWhatTheWholeCaptureStores) {
  expect_same_history(store::OpenSpans::remember, 37, false);
}

TEST(Sieve, ANewWriterPerSnapshotStoresWhatTheWholeCaptureStores) {
  expect_same_history(store::OpenSpans::forget, 200, false);
}

TEST(Sieve, AWithdrawnTableIsSievedAgainAsIfNeverSeen) {
  expect_same_history(store::OpenSpans::remember, 64, true);
  expect_same_history(store::OpenSpans::forget, 64, true);
}

TEST(Sieve, NoneWithoutSpansOfThisBootOrWithoutANamespaceIdentity) {
  auto db = new_db();
  store::SnapshotWriter writer(db);
  const std::vector<Socket> sockets{tcp(SockState::established, 5000, 80, 11, 7)};
  auto first = capture_at(1'000'000, sockets);
  EXPECT_EQ(writer.sieve_for(first), nullptr) << "nothing stored yet";
  writer.write(first);
  EXPECT_NE(writer.sieve_for(capture_at(1'010'000, sockets)), nullptr);
  EXPECT_EQ(writer.sieve_for(capture_at(1'010'000, sockets, "boot-b")), nullptr) << "another boot";

  // A container's namespace with no cookie (a kernel before 5.14): only its counters can tell it
  // from a later namespace on the same inode, and the sieve does not read them.
  auto container = capture_at(1'020'000, sockets);
  container.netns_inode = 4026532999;
  container.netns_initial = false;
  writer.write(container);
  container.time_ms = 1'030'000;
  EXPECT_EQ(writer.sieve_for(container), nullptr);
  container.netns_cookie = 77;
  auto with_cookie = container;
  with_cookie.time_ms = 1'040'000;
  writer.write(with_cookie);
  with_cookie.time_ms = 1'050'000;
  EXPECT_NE(writer.sieve_for(with_cookie), nullptr) << "both snapshots carry the cookie";
  with_cookie.netns_cookie = 78;
  EXPECT_EQ(writer.sieve_for(with_cookie), nullptr) << "another namespace on the same inode";
}

TEST(Sieve, ACaptureSievedAgainstSpansThatMovedSinceIsRefused) {
  auto db = new_db();
  store::SnapshotWriter writer(db);
  const std::vector<Socket> sockets{tcp(SockState::established, 5000, 80, 11, 7),
                                    tcp(SockState::established, 5001, 80, 12, 7)};
  writer.write(capture_at(1'000'000, sockets));
  const auto late = sieved(writer, capture_at(1'020'000, sockets), 10, false);
  ASSERT_NE(late.sieve, nullptr);
  EXPECT_EQ(late.sockets.size(), 0U);
  writer.write(capture_at(1'010'000, sockets));  // another snapshot in between: the open spans moved
  const auto before = everything(db);
  try {
    writer.write(late);
    FAIL() << "a stale sieve was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::failure);
    EXPECT_NE(std::string(e.what()).find("nothing was written"), std::string::npos) << e.what();
  }
  EXPECT_EQ(everything(db), before) << "the refusal rolled back";
}
