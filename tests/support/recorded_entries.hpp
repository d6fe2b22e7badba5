// The TIME_WAIT entries the collector records as it writes (time_wait_entries, schema 11) against
// the same entries counted from the spans by time-wait's reader: the two must agree exactly, since
// the report reads the first and `time-wait` the second.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <SQLiteCpp/Database.h>
#include <fmt/format.h>

#include "sockhist/query.hpp"
#include "sockhist/query/lifecycle.hpp"

namespace sockhist::test {

struct EntriesCompared {
  std::int64_t entries = 0, exact = 0;  // over each namespace's whole history, summed
  std::int64_t ranges = 0;              // (namespace, range, bucket) triples compared
};

// Compares over each namespace's whole history and over the ranges that begin at every
// `stride`-th snapshot (up to 12 of them) and end `length` snapshots later, in buckets of each size
// given. Every difference is a test failure naming the namespace, range and bucket.
inline EntriesCompared compare_recorded_entries(const std::string& path, std::vector<std::int64_t> bucket_sizes,
                                                std::size_t length = 3) {
  EntriesCompared out;
  SQLite::Database db(path, SQLite::OPEN_READONLY);
  std::vector<query::Scope> scopes;
  for (const auto& host : query::list_hosts(db)) {
    for (auto& scope : query::namespace_scopes(db, host.name)) {
      scopes.push_back(std::move(scope));
    }
  }
  for (const auto& scope : scopes) {
    const auto snapshots = query::list_snapshots(db, scope, INT64_MIN, INT64_MAX);
    if (snapshots.empty()) {
      continue;
    }
    std::vector<std::pair<std::int64_t, std::int64_t>> ranges{{snapshots.front().time_ms, snapshots.back().time_ms}};
    const std::size_t stride = std::max<std::size_t>(1, snapshots.size() / 12);
    for (std::size_t i = 0; i + length < snapshots.size(); i += stride) {
      ranges.emplace_back(snapshots[i].time_ms, snapshots[i + length].time_ms);
    }
    for (const auto& [since, until] : ranges) {
      for (const auto bucket_ms : bucket_sizes) {
        const auto where = fmt::format("host {} namespace {}, {} to {}, buckets of {} ms", scope.host,
                                       scope.netns_inode, since, until, bucket_ms);
        query::TimeWaitAsk spans, recorded;
        spans.keep = recorded.keep = query::TimeWaitAsk::Keep::none;
        recorded.per_socket = false;
        const auto a = query::time_wait_report(db, scope, since, until, bucket_ms, spans);
        const auto b = query::time_wait_report(db, scope, since, until, bucket_ms, recorded);
        EXPECT_FALSE(a.recorded_entries) << where;
        EXPECT_TRUE(b.recorded_entries) << where;
        EXPECT_EQ(a.entries, b.entries) << where;
        EXPECT_EQ(a.exact_entries, b.exact_entries) << where;
        EXPECT_EQ(a.peak_entries, b.peak_entries) << where;
        EXPECT_EQ(a.peak_entries_ms, b.peak_entries_ms) << where;
        EXPECT_EQ(a.buckets.size(), b.buckets.size()) << where;
        for (std::size_t k = 0; k < a.buckets.size() && k < b.buckets.size(); ++k) {
          EXPECT_EQ(a.buckets[k].entries, b.buckets[k].entries) << where << ", bucket " << k;
        }
        if (since == ranges.front().first && until == ranges.front().second && bucket_ms == bucket_sizes.front()) {
          out.entries += a.entries;
          out.exact += a.exact_entries;
        }
        ++out.ranges;
      }
    }
  }
  return out;
}

}  // namespace sockhist::test
