// The report's contents, computed from the queries: the summary and every chart, as values the
// chart renderer draws (sockhist/chart.hpp). cmd_report.cpp reads the options and writes the file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <SQLiteCpp/Database.h>

#include "common.hpp"
#include "sockhist/chart.hpp"

namespace sockhist::analyzer {

struct ReportAsk {
  Common common;
  std::int64_t since_ms = 0, until_ms = 0;  // the window as resolved
  ThresholdOptions thresholds;
};

// The time a chart's buckets cover, shared by every chart of a report: the window widened to
// whole buckets, with the snapshots in it.
struct ReportFrame {
  query::Scope scope;
  std::vector<query::SnapshotSummary> snapshots;  // oldest first; none only in another namespace's frame
  std::int64_t since_ms = 0, until_ms = 0;        // the first bucket's start, the newest snapshot
  std::int64_t bucket_ms = 0;
  std::int64_t usual_interval_ms = 0;  // the median time between consecutive snapshots (0: one snapshot)
  // Stretches with no snapshot for more than k_gap_intervals usual intervals: the collector did not run.
  std::vector<std::pair<std::int64_t, std::int64_t>> gaps;
  model::Zone zone = model::Zone::local;  // how the charts' own tables print times
};
// A gap is a time between two snapshots longer than this many usual intervals.
constexpr std::int64_t k_gap_intervals = 3;

// The bucket size for a range: the shortest on a fixed ladder (1s to 1d) that is no shorter than the
// usual interval and gives at most 240 buckets.
std::int64_t report_bucket_ms(std::int64_t range_ms, std::int64_t usual_interval_ms);

// Throws Error(usage) when the scope has no snapshot in the window.
ReportFrame report_frame(SQLite::Database& db, const query::Scope& scope, const ReportAsk& ask);
// The frame of another scope over the same buckets (it may hold no snapshot).
ReportFrame frame_over(SQLite::Database& db, const query::Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                       std::int64_t bucket_ms);

// The whole page. `only`: build just that chart (for --format svg --chart).
chart::Page build_report(SQLite::Database& db, const ReportAsk& ask, const std::optional<std::string>& only);

}  // namespace sockhist::analyzer
