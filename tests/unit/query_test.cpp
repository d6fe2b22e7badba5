// The query library without the command line: diff and check over the sample history written
// through the real store into ":memory:", and over sides made in code.
#include <gtest/gtest.h>

#include <algorithm>

#include "sockhist/error.hpp"
#include "sockhist/query/check.hpp"
#include "sockhist/query/diff.hpp"
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
  const auto it = std::find_if(rows.begin(), rows.end(),
                               [&](const auto& r) { return r.section == section && r.key == key; });
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

}  // namespace
