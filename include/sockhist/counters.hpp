// Reading stored counters (library sockhist_store). counter_values holds a row only when a counter
// changed (NULL when it disappeared), so a counter's value at a snapshot is its newest row at or
// before that snapshot. This is the one place that computes it for C++; views.sql's v_counters
// states the same rule for SQL users.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <SQLiteCpp/Database.h>

namespace sockhist::store {

// A counter's identity, by counter_id.
struct CounterName {
  std::string section, name;
  bool is_gauge = false;
};
// Every counter name the database knows, by counter_id.
std::map<std::int64_t, CounterName> counter_names(SQLite::Database& db);

// Every counter's value in one snapshot: counter_id -> value.
using CounterValues = std::unordered_map<std::int64_t, std::int64_t>;

// The value of every counter of a namespace as of one snapshot (of that namespace or later): one
// index seek per counter name, never a scan of the history. Disappeared counters are absent.
// `only`: these counter ids alone.
CounterValues counters_as_of(SQLite::Database& db, std::int64_t netns_id, std::int64_t snapshot_id,
                             const std::vector<std::int64_t>* only = nullptr);

// Replays the stored counter values of one namespace at each snapshot of `ids` (ascending): the
// first one's full values, then the stored changes (those of snapshots between the ids too).
// `visit(index, values)` sees each snapshot's values in order. `only`: these counter ids alone
// (a week's replay of four counters reads their changes, not every counter's).
void replay_counters(SQLite::Database& db, std::int64_t netns_id, const std::vector<std::int64_t>& ids,
                     const std::function<void(std::size_t, const CounterValues&)>& visit,
                     const std::vector<std::int64_t>* only = nullptr);

}  // namespace sockhist::store
