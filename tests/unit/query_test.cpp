// The query library without the command line: diff and check over the sample history written
// through the real store into ":memory:", and over sides made in code.
#include <gtest/gtest.h>

#include <algorithm>

#include <fmt/format.h>

#include "files.hpp"
#include "sockhist/error.hpp"
#include "sockhist/query/check.hpp"
#include "sockhist/query/diff.hpp"
#include "sockhist/query/lifecycle.hpp"
#include "sockhist/store.hpp"
#include "store_history.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

class Queries : public Store {
 protected:
  void SetUp() override {
    Store::SetUp();
    write_sample_history(db, {"00", "01", "02", "03"}, "web1");
    scope = query::resolve_scope(db, std::nullopt, std::nullopt);
    snapshots = query::list_snapshots(db, scope, INT64_MIN, INT64_MAX);
    ASSERT_EQ(snapshots.size(), 4U);
  }
  query::Scope scope;
  std::vector<query::SnapshotSummary> snapshots;
};

const query::Difference* find(const std::vector<query::Difference>& rows, const std::string& section,
                              const std::string& key) {
  const auto it =
      std::find_if(rows.begin(), rows.end(), [&](const auto& r) { return r.section == section && r.key == key; });
  return it == rows.end() ? nullptr : &*it;
}

TEST_F(Queries, ASnapshotComparedWithItselfHasNoDifference) {
  const auto side = query::load_side(db, scope, snapshots[1]);
  EXPECT_TRUE(query::diff_sides(side, side, 25.0).empty());
}

TEST_F(Queries, StateCountsThatDifferAreTheStoredCountsAndCounterChangesDoNotCount) {
  const auto a = query::load_side(db, scope, snapshots[0]);
  const auto b = query::load_side(db, scope, snapshots[1]);
  const auto rows = query::diff_sides(a, b, 25.0);
  // Every state row is the difference of the two snapshots' state_counts, and every differing
  // count has a row.
  std::size_t differing = 0;
  for (const auto& [key, n] : b.snapshot.counts) {
    const auto it = a.snapshot.counts.find(key);
    const std::int64_t before = it == a.snapshot.counts.end() ? 0 : it->second;
    if (before != n) {
      ++differing;
      const auto* row = find(rows, "state", key);
      ASSERT_NE(row, nullptr) << key;
      EXPECT_EQ(row->a, static_cast<double>(before)) << key;
      EXPECT_EQ(row->b, static_cast<double>(n)) << key;
      EXPECT_TRUE(row->counts);
    }
  }
  EXPECT_GT(differing, 0U) << "the sample history changes between its first two captures";
  // One host at two moments: counters are information, not differences.
  for (const auto& r : rows) {
    if (r.section == "counter change" || r.section == "gauge") {
      EXPECT_FALSE(r.counts) << r.key;
    }
  }
  // The differences come first, sorted by section.
  const auto first_info = std::find_if(rows.begin(), rows.end(), [](const auto& r) { return !r.counts; });
  EXPECT_TRUE(std::all_of(first_info, rows.end(), [](const auto& r) { return !r.counts; }));
}

// Owners across two records of one moment: ss names a process by its comm (cut at 15), netstat by
// its command line's first word (cut so that pid/name fits 19). A cut name matches the one longer
// name it begins; a short name that cannot be a cut ("java" against "javac") never does; by pid,
// names do not matter.
TEST(DiffSides, OwnersMatchAcrossCutNamesOrByPid) {
  query::DiffSide a, b;
  a.scope.host_id = 1;
  b.scope.host_id = 2;
  const auto socket = [](std::int64_t pid, const std::string& comm, std::int64_t port) {
    query::SocketRow r;
    r.proto = model::Proto::tcp;
    r.state = model::SockState::established;
    r.local_addr = "10.0.0.1";
    r.local_port = port;
    r.remote_addr = "10.0.0.2";
    r.remote_port = 443;
    r.pid = pid;
    r.comm = comm;
    return r;
  };
  a.sockets = {socket(5220, "import_live_tes", 1), socket(5220, "import_live_tes", 2), socket(700, "java", 3),
               socket(3002, "sshd", 4)};
  b.sockets = {socket(5220, "import_live_te", 1), socket(5220, "import_live_te", 2), socket(700, "javac", 3),
               socket(3002, "sshd: core [pr", 4)};
  auto rows = query::diff_sides(a, b, 25.0);
  EXPECT_EQ(find(rows, "process only on one side", "import_live_tes"), nullptr);
  EXPECT_EQ(find(rows, "process only on one side", "import_live_te"), nullptr);
  EXPECT_NE(find(rows, "process only on one side", "java"), nullptr);
  EXPECT_NE(find(rows, "process only on one side", "javac"), nullptr);
  EXPECT_NE(find(rows, "process only on one side", "sshd"), nullptr) << "a comm and a process title";
  rows = query::diff_sides(a, b, 25.0, query::OwnerMatch::pid);
  EXPECT_TRUE(rows.empty()) << rows.front().section << " " << rows.front().key;
  b.sockets[3].pid = 3003;  // another process: a difference by pid
  rows = query::diff_sides(a, b, 25.0, query::OwnerMatch::pid);
  const auto* moved = find(rows, "process only on one side", "pid 3002");
  ASSERT_NE(moved, nullptr);
  EXPECT_EQ(moved->a, 1);
  EXPECT_EQ(moved->b, 0);
}

// Read through any span index, every moment's sockets are the view's: the analyzer reads a moment
// through socket_spans_by_length (schema 9; an older file's socket_spans_by_state or
// socket_spans_by_last late in the history, socket_spans_by_first early), and snapshot_sockets
// gives the same rows in the same order whichever it is.
TEST_F(Queries, EitherSpanIndexGivesTheViewsSocketsAtEveryMoment) {
  const auto rows = [&](const std::string& from, std::int64_t id) {
    return dump_rows(db,
                     "SELECT span_id, proto, state, local_addr, local_port, remote_addr, remote_port, tx_queue, "
                     "rx_queue, timer, timer_ms, retransmits, pid, process, inode FROM " +
                         from + " WHERE snapshot_id = " + std::to_string(id) + " ORDER BY span_id");
  };
  // socket_spans_by_last and socket_spans_by_state are version 7's and 8's: made here beside the
  // others, as such files hold them.
  db.exec("CREATE INDEX socket_spans_by_last ON socket_spans(netns_id, last_snapshot_id, first_snapshot_id, state_id)");
  db.exec(
      "CREATE INDEX socket_spans_by_state ON socket_spans(netns_id, state_id, last_snapshot_id, first_snapshot_id)");
  for (const auto& snapshot : snapshots) {
    const auto view = rows("v_snapshot_sockets", snapshot.id);
    ASSERT_FALSE(view.empty());
    for (const char* index :
         {"socket_spans_by_length", "socket_spans_by_first", "socket_spans_by_state", "socket_spans_by_last"}) {
      EXPECT_EQ(rows("(" + store::snapshot_sockets_select(index) + ")", snapshot.id), view)
          << index << " at snapshot " << snapshot.id;
    }
    std::vector<std::int64_t> spans;
    for (const auto& r : query::snapshot_sockets(db, snapshot.id)) {
      spans.push_back(r.span_id);
    }
    EXPECT_EQ(spans.size(), view.size());
    EXPECT_TRUE(std::is_sorted(spans.begin(), spans.end()));
  }
}

// What the range readers answer over a file: every moment's sockets, the TIME_WAIT and
// CLOSE_WAIT sockets, a grouped trend and the port pressure, as text to compare.
std::vector<std::string> range_answers(SQLite::Database& db) {
  std::vector<std::string> out;
  const auto scope = query::resolve_scope(db, std::nullopt, std::nullopt);
  const auto snapshots = query::list_snapshots(db, scope, INT64_MIN, INT64_MAX);
  for (const auto& snap : snapshots) {
    for (const auto& r : query::snapshot_sockets(db, snap.id)) {
      out.push_back(
          fmt::format("at {}: {} {} {} {}", snap.id, r.span_id, model::name(r.state), r.local_port, r.pid.value_or(0)));
    }
  }
  query::TimeWaitAsk all;
  all.keep = query::TimeWaitAsk::Keep::all;
  const auto tw = query::time_wait_report(db, scope, snapshots.front().time_ms, snapshots.back().time_ms, 0, all);
  for (const auto& t : tw.sockets) {
    out.push_back(fmt::format("tw {} {}:{} {}:{} {} {} {} {}", t.span_id, t.local_addr, t.local_port, t.remote_addr,
                              t.remote_port, query::name(t.closer), t.pid, query::describe(t.came_from),
                              query::describe(t.next_state)));
  }
  for (const auto& c : query::close_wait_sockets(db, scope, snapshots)) {
    out.push_back(fmt::format("cw {} {} {}", c.span_id, c.pid, c.entered_by_ms));
  }
  const auto trend = query::trend_grouped(db, scope, snapshots.front().time_ms, snapshots.back().time_ms, 60'000,
                                          "ESTABLISHED", query::GroupBy::remote_addr, 5);
  out.push_back(fmt::format("trend {}", fmt::join(trend.series, ",")));
  for (const auto& b : trend.buckets) {
    for (const auto& v : b.values) {
      out.push_back(fmt::format("trend {} {}", b.start_ms, v ? *v : -1.0));
    }
  }
  for (const auto& p : query::port_pressure(db, scope, snapshots)) {
    out.push_back(fmt::format("ports {}:{} {} {}", p.remote_addr, p.remote_port, p.time_wait, p.open));
  }
  return out;
}

// A version 6, 7 or 8 file (schemas 7 to 9 changed indexes only) is read as it is, through the
// indexes it has, with the same answers; a version 5 file is refused, asking for a collector run.
TEST(StoreVersions, VersionSixToEightFilesAreReadAsTheyAre) {
  std::filesystem::path version_six;
  for (const int version : {6, 7, 8}) {
    SCOPED_TRACE(fmt::format("version {}", version));
    const auto path = scratch_dir(fmt::format("version-{}", version)) / "old.db";
    if (version == 6) {
      version_six = path;
    }
    std::vector<std::string> answers;
    {
      auto db = store::open_for_write(path);
      write_sample_history(db, {"00", "01", "02", "03"}, "web1");
      answers = range_answers(db);
      db.exec("DROP INDEX socket_spans_by_length");
      if (version == 6) {
        db.exec("DROP INDEX snapshots_by_netns_time");
      } else if (version == 7) {
        db.exec(
            "CREATE INDEX socket_spans_by_last ON socket_spans(netns_id, last_snapshot_id, first_snapshot_id, "
            "state_id)");
      } else {
        db.exec(
            "CREATE INDEX socket_spans_by_state ON socket_spans(netns_id, state_id, last_snapshot_id, "
            "first_snapshot_id)");
      }
      db.exec(fmt::format("PRAGMA user_version = {}", version));
    }
    ASSERT_GT(answers.size(), 100U);
    for (const char* kind : {"at ", "tw ", "trend ", "ports "}) {
      EXPECT_TRUE(std::any_of(answers.begin(), answers.end(), [&](const auto& a) { return a.rfind(kind, 0) == 0; }))
          << "no " << kind << "answer to compare";
    }
    auto db = store::open_read_only(path);
    EXPECT_EQ(range_answers(db), answers);
  }
  {
    SQLite::Database w(version_six.string(), SQLite::OPEN_READWRITE);
    w.exec("PRAGMA user_version = 5");
  }
  try {
    store::open_read_only(version_six);
    FAIL() << "a version 5 file was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("run sockhist-collect"), std::string::npos) << e.what();
  }
}

TEST(DiffSides, ListenersAndCountersBetweenTwoHostsMadeInCode) {
  query::DiffSide a, b;
  a.scope.host_id = 1;
  b.scope.host_id = 2;
  a.snapshot.uptime_ms = 1'000'000;  // 1000 s
  b.snapshot.uptime_ms = 2'000'000;
  query::SocketRow listener;
  listener.proto = model::Proto::tcp;
  listener.state = model::SockState::listen;
  listener.local_addr = "0.0.0.0";
  listener.local_port = 8080;
  listener.comm = "api";
  a.sockets.push_back(listener);
  // 100/s on both hosts: no difference; 10/s against 1/s: one.
  a.counters = {{"Tcp", "ActiveOpens", 100'000, false}, {"Tcp", "RetransSegs", 10'000, false}};
  b.counters = {{"Tcp", "ActiveOpens", 200'000, false}, {"Tcp", "RetransSegs", 2'000, false}};
  const auto rows = query::diff_sides(a, b, 25.0);
  const auto* only_a = find(rows, "listening", "tcp 0.0.0.0:8080");
  ASSERT_NE(only_a, nullptr);
  EXPECT_EQ(only_a->a, 1);
  EXPECT_EQ(only_a->b, 0);
  EXPECT_EQ(only_a->detail, "api");
  EXPECT_EQ(find(rows, "counter per second of uptime", "Tcp.ActiveOpens"), nullptr);
  const auto* retrans = find(rows, "counter per second of uptime", "Tcp.RetransSegs");
  ASSERT_NE(retrans, nullptr);
  EXPECT_DOUBLE_EQ(retrans->a, 10.0);
  EXPECT_DOUBLE_EQ(retrans->b, 1.0);
  EXPECT_EQ(rows.front().section, "listening");
}

TEST_F(Queries, CountThresholdsFindTheNewestSnapshotsCountAndNothingAtTheLimit) {
  const auto range = query::newest_range(db, scope);
  ASSERT_EQ(range.snapshots.size(), 1U);
  EXPECT_EQ(range.snapshots.back().id, snapshots.back().id);
  ASSERT_EQ(range.pair.size(), 2U);
  const auto established = snapshots.back().count(model::Proto::tcp, model::SockState::established);
  const auto time_wait = snapshots.back().count(model::Proto::tcp, model::SockState::time_wait);
  ASSERT_GT(time_wait, 0);

  query::Thresholds below;
  below.time_wait_max = time_wait - 1;
  const auto found = query::evaluate_checks(db, scope, range, below);
  ASSERT_EQ(found.size(), 1U);
  EXPECT_TRUE(found[0].found);
  EXPECT_EQ(found[0].sockets, time_wait);
  EXPECT_EQ(found[0].at_ms, snapshots.back().time_ms);

  query::Thresholds at_limit;
  at_limit.time_wait_max = time_wait;
  EXPECT_FALSE(query::evaluate_checks(db, scope, range, at_limit)[0].found);
  EXPECT_NE(established, time_wait);  // the check reads TIME_WAIT, not another state
}

TEST_F(Queries, CounterIncreasesNeedTwoSnapshotsOfOneBoot) {
  query::Thresholds limits;
  limits.listen_overflows = 0;
  // The sample's fourth capture follows a reboot: the two newest cannot be compared.
  const auto newest = query::evaluate_checks(db, scope, query::newest_range(db, scope), limits);
  ASSERT_EQ(newest.size(), 1U);
  EXPECT_EQ(newest[0].covered_ms, 0);
  EXPECT_FALSE(newest[0].found);
  // Over the window, the first three captures are one boot.
  const auto window = query::window_range(db, scope, INT64_MIN, INT64_MAX, "the start");
  const auto over = query::evaluate_checks(db, scope, window, limits);
  ASSERT_EQ(over.size(), 1U);
  EXPECT_GT(over[0].covered_ms, 0);
  EXPECT_EQ(over[0].counter, "TcpExt.ListenOverflows");
}

TEST_F(Queries, AnEmptyWindowIsAUsageError) {
  EXPECT_THROW(query::window_range(db, scope, 0, 1, "1970"), Error);
  EXPECT_FALSE(query::Thresholds{}.any());
}

// One 4-tuple in TIME_WAIT in two snapshots 10 s apart, the second time with a fresh timer: a
// takeover (an anomaly) only when the second entry came while the first still had time to run.
// `recycled`: TcpExt.TWRecycled in the two snapshots, when recorded.
std::vector<query::TimeWaitSocket> tuple_seen_twice(std::uint32_t first_left_ms, std::uint32_t second_left_ms,
                                                    std::optional<std::pair<int, int>> recycled = std::nullopt) {
  SQLite::Database db(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  store::initialize(db);
  store::SnapshotWriter writer(db);
  constexpr std::int64_t t0 = 1'795'000'000'000;
  auto first = tcp(SockState::time_wait, 40090, 443, 0);
  first.timer_ms = first_left_ms;
  auto second = first;
  second.timer_ms = second_left_ms;
  auto earlier = capture_at(t0, {first}), later = capture_at(t0 + 10'000, {second});
  if (recycled) {
    earlier.counters.push_back({"TcpExt", "TWRecycled", recycled->first, false});
    later.counters.push_back({"TcpExt", "TWRecycled", recycled->second, false});
  }
  writer.write(earlier);
  writer.write(later);
  const auto scope = query::resolve_scope(db, std::nullopt, std::nullopt);
  query::TimeWaitAsk all;
  all.keep = query::TimeWaitAsk::Keep::all;
  return query::time_wait_report(db, scope, t0 - 1000, t0 + 20'000, 0, all).sockets;
}

TEST(TimeWaitReuse, ATupleReusedAfterItsTimeWaitExpiredIsNoAnomaly) {
  // Entered 55 s before the first snapshot: it expired 5 s later. The second entered 2 s before the
  // second snapshot, 3 s after that expiry: a client reusing its port, as it may.
  const auto sockets = tuple_seen_twice(5'000, 58'000);
  ASSERT_EQ(sockets.size(), 2U);
  EXPECT_FALSE(sockets[0].reused_tuple);
  EXPECT_FALSE(sockets[1].reused_tuple);
  EXPECT_FALSE(sockets[0].vanished_early);
  EXPECT_EQ(query::describe(sockets[0].next_state), "TIME_WAIT");
}

TEST(TimeWaitReuse, ATupleAgainInItsTimeWaitsOvertimeIsADoubtUnlessTWRecycledStayedStill) {
  // The earlier entry was due 5 s after the first snapshot; the second entered 3 s after that,
  // when the kernel's late timer may not have reaped the first yet. TWRecycled decides: it stayed
  // at 7, so no takeover happened; it rose, or was not recorded, so one may have.
  EXPECT_FALSE(tuple_seen_twice(5'000, 58'000, std::pair{7, 7})[1].maybe_reused);
  EXPECT_TRUE(tuple_seen_twice(5'000, 58'000, std::pair{7, 8})[1].maybe_reused);
  EXPECT_TRUE(tuple_seen_twice(5'000, 58'000)[1].maybe_reused);
  EXPECT_FALSE(tuple_seen_twice(5'000, 58'000, std::pair{7, 8})[1].reused_tuple) << "a doubt is no anomaly";
  // Entered 8 s after the earlier was due: past any timer's lateness, a port reused as it may be.
  const auto past = tuple_seen_twice(1'000, 59'000, std::pair{7, 8});
  EXPECT_FALSE(past[1].maybe_reused);
  EXPECT_FALSE(past[1].reused_tuple);
  // Taken over while its 60 s were running: an anomaly, not a doubt.
  const auto taken = tuple_seen_twice(55'000, 59'500, std::pair{7, 8});
  EXPECT_TRUE(taken[1].reused_tuple);
  EXPECT_FALSE(taken[1].maybe_reused);
}

TEST(TimeWaitReuse, ATupleTakenOverWhileStillInTimeWaitIsOne) {
  // Entered 5 s before the first snapshot, so due to expire 55 s after it; the second entered
  // 0.5 s before the second snapshot, 45 s early: the tuple was taken over (tcp_tw_reuse).
  const auto sockets = tuple_seen_twice(55'000, 59'500);
  ASSERT_EQ(sockets.size(), 2U);
  EXPECT_FALSE(sockets[0].reused_tuple);
  EXPECT_TRUE(sockets[1].reused_tuple);
  EXPECT_FALSE(sockets[0].vanished_early) << "taken over is not the same as vanished";
}

// What followed each TIME_WAIT socket reads the same looked up one by one (a report that prints
// few sockets) or matched in one scan of the range's successors (one that prints many).
TEST_F(Queries, TimeWaitSuccessorsReadAlikeOneByOneAndInOneScan) {
  const auto report = [&](std::size_t lookups_max) {
    query::TimeWaitAsk ask;
    ask.keep = query::TimeWaitAsk::Keep::all;
    ask.successor_lookups_max = lookups_max;
    std::vector<std::string> out;
    for (const auto& t :
         query::time_wait_report(db, scope, snapshots.front().time_ms, snapshots.back().time_ms, 0, ask).sockets) {
      out.push_back(fmt::format("{} {} {}", t.span_id, query::describe(t.came_from), query::describe(t.next_state)));
    }
    return out;
  };
  const auto one_by_one = report(SIZE_MAX);
  const auto one_scan = report(0);
  ASSERT_GT(one_by_one.size(), 50U);
  EXPECT_EQ(one_by_one, one_scan);
  EXPECT_TRUE(std::any_of(one_scan.begin(), one_scan.end(), [](const auto& line) {
    return line.size() > 0 && line.back() != ' ';
  })) << "no TIME_WAIT socket with a successor to compare";
}

// A storm shows in the peak entry rate, not in the mean: ten entries in one 10 s bucket, two in
// the next.
TEST(TimeWaitPeak, TheBusiestBucketIsReportedBesideTheMean) {
  SQLite::Database db(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  store::initialize(db);
  store::SnapshotWriter writer(db);
  constexpr std::int64_t t0 = 1'795'000'000'000;  // a multiple of 10 s: buckets start at t0
  std::vector<Socket> storm, later;
  for (std::uint16_t i = 0; i < 10; ++i) {
    auto s = tcp(SockState::time_wait, static_cast<std::uint16_t>(41000 + i), 443, 0);
    s.timer_ms = 59'000;  // entered 1 s before the snapshot at t0 + 10 s
    storm.push_back(s);
  }
  later = storm;
  for (auto& s : later) {
    s.timer_ms -= 10'000;  // the same sockets, 10 s on
  }
  for (std::uint16_t i = 0; i < 2; ++i) {
    auto s = tcp(SockState::time_wait, static_cast<std::uint16_t>(42000 + i), 443, 0);
    s.timer_ms = 59'000;
    later.push_back(s);
  }
  writer.write(capture_at(t0, {}));
  writer.write(capture_at(t0 + 10'000, storm));
  writer.write(capture_at(t0 + 20'000, later));
  const auto scope = query::resolve_scope(db, std::nullopt, std::nullopt);
  const auto r = query::time_wait_report(db, scope, t0, t0 + 20'000, 10'000);
  EXPECT_EQ(r.entries, 12);
  ASSERT_TRUE(r.entries_per_s);
  EXPECT_DOUBLE_EQ(*r.entries_per_s, 0.6);
  ASSERT_TRUE(r.peak_entries_per_s);
  EXPECT_DOUBLE_EQ(*r.peak_entries_per_s, 1.0);
  EXPECT_EQ(r.peak_entries_ms, t0);
}

}  // namespace
