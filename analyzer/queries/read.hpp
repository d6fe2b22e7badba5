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

namespace sockhist::query::detail {

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

// The snapshots' ids in order.
std::vector<std::int64_t> ids_of(const std::vector<SnapshotSummary>& snapshots);

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
