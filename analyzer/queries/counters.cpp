// Counters over time: steps between consecutive snapshots, and deltas and rates over a range.
#include <algorithm>
#include <set>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "read.hpp"
#include "sockhist/error.hpp"

namespace sockhist::query {

using namespace detail;

std::optional<std::int64_t> monotonic_interval_ms(const SnapshotSummary& earlier, const SnapshotSummary& later) {
  if (earlier.boot_id != later.boot_id) {
    return std::nullopt;
  }
  std::int64_t d = 0;
  if (earlier.uptime_ms && later.uptime_ms) {
    d = *later.uptime_ms - *earlier.uptime_ms;
  } else {
    d = later.time_ms - earlier.time_ms;
  }
  if (d <= 0) {
    return std::nullopt;
  }
  return d;
}

std::vector<CounterStep> counter_steps(SQLite::Database& db, const Scope& scope,
                                       const std::vector<SnapshotSummary>& snapshots,
                                       const std::vector<std::string>& counters) {
  std::map<std::int64_t, std::string> wanted;  // counter_id -> "Section.Name"
  for (const auto& [id, name] : counter_names(db)) {
    const auto full = name.section + "." + name.name;
    if (std::find(counters.begin(), counters.end(), full) != counters.end()) {
      wanted[id] = full;
    }
  }
  std::vector<CounterStep> out;
  if (wanted.empty()) {
    return out;
  }
  std::vector<std::int64_t> only;
  for (const auto& [id, name] : wanted) {
    only.push_back(id);
  }
  std::map<std::int64_t, std::int64_t> previous;  // the previous snapshot's values of the wanted counters
  replay_counters(
      db, scope.netns_id, ids_of(snapshots),
      [&](std::size_t i, const auto& values) {
        const auto interval = i == 0 ? std::nullopt : monotonic_interval_ms(snapshots[i - 1], snapshots[i]);
        std::map<std::int64_t, std::int64_t> now;
        for (const auto& [id, name] : wanted) {
          const auto v = values.find(id);
          if (v == values.end()) {
            continue;
          }
          now[id] = v->second;
          const auto p = previous.find(id);
          if (interval && p != previous.end()) {
            const bool reset = v->second < p->second;
            out.push_back({name, i, reset ? 0 : v->second - p->second, *interval, reset});
          }
        }
        previous = std::move(now);
      },
      &only);
  return out;
}

RangeStats counter_range(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms) {
  RangeStats out;
  out.snapshots = list_snapshots(db, scope, since_ms, until_ms);
  if (out.snapshots.empty()) {
    return out;
  }
  const auto names = counter_names(db);
  std::map<std::int64_t, CounterChange> changes;
  std::unordered_map<std::int64_t, std::size_t> seen_at;  // counter_id -> index of the last snapshot holding it
  std::set<std::string> boots;
  replay_counters(db, scope.netns_id, ids_of(out.snapshots), [&](std::size_t i, const auto& values) {
    boots.insert(out.snapshots[i].boot_id);
    const auto interval = i == 0 ? std::nullopt : monotonic_interval_ms(out.snapshots[i - 1], out.snapshots[i]);
    if (interval) {
      out.covered_ms += *interval;
    }
    for (const auto& [id, value] : values) {
      const auto name = names.find(id);
      if (name == names.end()) {
        continue;
      }
      auto [it, fresh] = changes.try_emplace(id);
      auto& c = it->second;
      if (fresh) {
        c.section = name->second.section;
        c.name = name->second.name;
        c.is_gauge = name->second.is_gauge;
        c.first = value;
      }
      // c.last still holds the previous snapshot's value when that snapshot held the counter.
      auto [seen, first_seen] = seen_at.try_emplace(id, i);
      if (interval && !first_seen && seen->second + 1 == i && !c.is_gauge) {
        if (value >= *c.last) {
          c.delta += value - *c.last;
        } else {
          ++c.resets;
        }
      }
      seen->second = i;
      c.last = value;
      c.min = c.min ? std::min(*c.min, value) : value;
      c.max = c.max ? std::max(*c.max, value) : value;
    }
  });
  out.boots = static_cast<std::int64_t>(boots.size());
  for (auto& [id, c] : changes) {
    if (!c.is_gauge && out.covered_ms > 0) {
      c.rate_per_s = static_cast<double>(c.delta) * 1000.0 / static_cast<double>(out.covered_ms);
    }
    out.counters.push_back(std::move(c));
  }
  return out;
}

}  // namespace sockhist::query
