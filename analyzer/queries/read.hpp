// The queries' internal read layer: column helpers and the reading of snapshot rows shared by
// every query file. Private to analyzer/queries.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include "sockhist/query.hpp"
#include "sockhist/raw_statement.hpp"

namespace sockhist::query::detail {

using store::RawStatement;

inline std::optional<std::string> opt_text(const SQLite::Column& c) {
  return c.isNull() ? std::nullopt : std::optional(c.getString());
}
inline std::optional<std::int64_t> opt_int(const SQLite::Column& c) {
  return c.isNull() ? std::nullopt : std::optional(c.getInt64());
}

// The items joined with `sep` between them.
std::string join(const std::vector<std::string>& items, std::string_view sep);

// The scope of one network namespace, by id; throws Error(usage) for an unknown id.
Scope scope_from_netns(SQLite::Database& db, std::int64_t netns_id);

// The columns read_summary reads, to be followed by a WHERE clause.
inline constexpr const char* k_snapshot_columns =
    "SELECT snapshot_id, time_ms, coalesce(boot_id, ''), uptime_ms, source, owners, socket_count, capture_ms, kernel, "
    "port_range_low, port_range_high FROM snapshots ";

// The snapshot the statement's current row (k_snapshot_columns) describes, without its counts.
SnapshotSummary read_summary(SQLite::Statement& q);

// Fills the per-state counts of snapshots sorted by id, in one range scan of state_counts.
void fill_counts(SQLite::Database& db, std::vector<SnapshotSummary>& snapshots);

// The position in `ids` (ascending) of the newest snapshot at or before `id`; -1 when none.
inline std::ptrdiff_t at_or_before(const std::vector<std::int64_t>& ids, std::int64_t id) {
  return std::upper_bound(ids.begin(), ids.end(), id) - ids.begin() - 1;
}

// The position in `times` (ascending) of the first snapshot at or after `time_ms`.
inline std::size_t position_of(const std::vector<std::int64_t>& times, std::int64_t time_ms) {
  return static_cast<std::size_t>(std::lower_bound(times.begin(), times.end(), time_ms) - times.begin());
}

// position_of and at_or_before for a reader that looks positions up in the order of its rows,
// each near the one before (a week's TIME_WAIT spans, by first snapshot, each a snapshot or two
// long): searched outwards from the previous answer, a few steps rather than a binary search of
// every snapshot.
class NearSearch {
 public:
  explicit NearSearch(const std::vector<std::int64_t>& sorted) : v_(sorted) {}
  // std::lower_bound's position: the first value >= x.
  std::size_t lower(std::int64_t x) {
    const auto n = v_.size();
    const auto h = std::min(hint_, n);
    std::size_t lo = 0, hi = 0;  // the answer is in [lo, hi]
    std::size_t step = 1;
    if (h < n && v_[h] < x) {
      while (h + step < n && v_[h + step] < x) {
        step *= 2;
      }
      lo = h + step / 2 + 1;
      hi = std::min(h + step, n);
    } else {
      while (step <= h && v_[h - step] >= x) {
        step *= 2;
      }
      lo = step > h ? 0 : h - step + 1;
      hi = step == 1 ? h : h - step / 2;
    }
    hint_ = static_cast<std::size_t>(std::lower_bound(v_.begin() + static_cast<std::ptrdiff_t>(lo),
                                                      v_.begin() + static_cast<std::ptrdiff_t>(hi), x) -
                                     v_.begin());
    return hint_;
  }
  // at_or_before's position: the last value <= id, -1 when none (ids are below INT64_MAX).
  std::ptrdiff_t at_or_before(std::int64_t id) { return static_cast<std::ptrdiff_t>(lower(id + 1)) - 1; }

 private:
  const std::vector<std::int64_t>& v_;
  std::size_t hint_ = 0;
};

// The snapshots' ids in order.
std::vector<std::int64_t> ids_of(const std::vector<SnapshotSummary>& snapshots);

// Span readers (spans.cpp): each returns a statement prepared and bound, to be stepped; the
// columns are listed in order. "Alive in [first_id, last_id]" means seen in some snapshot of the
// namespace between those two.

// Spans in one state alive in the range, by span_id: span_id, first_snapshot_id, last_snapshot_id,
// first_time_ms, prev_span_id, the previous span's state, process_id, pid, comm, cmdline, user,
// family, local_addr, local_port, remote_addr, remote_port, rx_queue at the span's first snapshot,
// rx_queue at its last snapshot in the range.
// The index that finds a namespace's spans alive in [first_id, last_id] reading the fewest:
// socket_spans_by_length (schema 9: about twice the spans alive in the range, anywhere in the
// history, in no useful order), else socket_spans_by_first (in order of first snapshot) for a range
// that reaches back over most of the history before its end. In older files: socket_spans_by_first
// near the start of the history, near the end socket_spans_by_state (schema 8) or
// socket_spans_by_last (schema 7); a version 6 file has only the first. Every reader names the
// states it reads (the state-led indexes' second column).
// `unordered`: the reader needs its spans in no order, so that the state-led index serves it
// anywhere (socket_spans_by_state from the middle of the history on).
std::string_view spans_index(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id,
                             bool unordered = false);

SQLite::Statement spans_in_state(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id,
                                 std::int64_t state_id);
// One span by id (bind 1): prev_span_id, the previous span's state, first_snapshot_id, first_time_ms.
SQLite::Statement span_by_id(SQLite::Database& db);
// Whether a reader whose spans are most of the table reads fewer pages by scanning it whole than
// through any index: the range holds at least three quarters of the file's snapshots. An index
// visits its rows in its own order, a seek each; the scan reads each page once (on a week of a
// 10,000-socket host, 0.5 s against 1.0 s for every TCP connection).
bool scan_whole_table(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id);
// TIME_WAIT and FIN_WAIT2 spans alive in the range by first snapshot (in the order the index
// holds them within one), read raw (a week holds a million): span_id, first_snapshot_id, last_snapshot_id,
// first_time_ms (NULL while its snapshot is kept), state_id, timer, timer_ms, prev_span_id, process_id, family,
// local_addr_id, local_port, remote_addr, remote_port, cookie.
// `table_order`: scanned whole, by span_id. The writer adds spans as snapshots first see them, so
// that is the order of first snapshot too in a file it wrote; the reader checks.
RawStatement time_wait_spans(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id,
                             std::int64_t time_wait_id, std::int64_t fin_wait2_id, bool table_order = false);
// Spans that began after first_id (up to last_id) continuing an earlier span: prev_span_id, state.
SQLite::Statement successors(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id);
// TCP connections (not LISTEN or CLOSE) from local ports in [low, high] to a remote port, alive in
// the range, read raw (a week holds half a million; the table is scanned where scan_whole_table
// says): first_snapshot_id, last_snapshot_id, state_id,
// family, local_addr_id, local_port, remote_addr, remote_port.
RawStatement connections_from_ports(SQLite::Database& db, const Scope& scope, std::int64_t first_id,
                                    std::int64_t last_id, std::int64_t low, std::int64_t high);
// Spans in one state alive in the range, for grouping, in no particular order, read raw (a week
// of TIME_WAIT is a million): first_snapshot_id, last_snapshot_id, process_id, local_port,
// local_addr_id, remote_addr.
RawStatement grouping_spans(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id,
                            std::int64_t state_id);
// "pid/comm" of a process_id (bind 1); the text of an addr_id (bind 1).
SQLite::Statement process_label_by_id(SQLite::Database& db);
SQLite::Statement address_by_id(SQLite::Database& db);

// A listening socket's span: from which snapshot, and its owner.
struct Listener {
  std::int64_t first_id = 0;
  std::int32_t pid = 0;
  std::string comm;
  std::optional<std::string> cmdline;
};
// Listening TCP ports of a namespace between two snapshots, each with its listeners' spans and
// owners, oldest first.
using Listeners = std::map<std::int64_t, std::vector<Listener>>;
Listeners listeners(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id);

// The owner of the listener that was there when snapshot `id` was taken (else the first one).
const Listener* listener_at(const std::vector<Listener>& list, std::int64_t id);

}  // namespace sockhist::query::detail
