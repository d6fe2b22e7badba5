// Stored counters read back: names, values as of a snapshot, and a replay over many snapshots.
#include "sockhist/counters.hpp"

#include <fmt/format.h>

namespace sockhist::store {

std::map<std::int64_t, CounterName> counter_names(SQLite::Database& db) {
  std::map<std::int64_t, CounterName> names;
  SQLite::Statement q(db, "SELECT counter_id, section, name, is_gauge FROM counter_names");
  while (q.executeStep()) {
    names[q.getColumn(0).getInt64()] = {q.getColumn(1).getString(), q.getColumn(2).getString(),
                                        q.getColumn(3).getInt() != 0};
  }
  return names;
}

namespace {

// " AND cn.counter_id IN (...)" for a subset of the counters (none: IN (NULL), which holds for no
// row); nothing for all of them.
std::string only_counters(const std::vector<std::int64_t>* only) {
  if (only == nullptr) {
    return {};
  }
  return only->empty() ? std::string(" AND cn.counter_id IN (NULL)")
                       : fmt::format(" AND cn.counter_id IN ({})", fmt::join(*only, ", "));
}

}  // namespace

CounterValues counters_as_of(SQLite::Database& db, std::int64_t netns_id, std::int64_t snapshot_id,
                             const std::vector<std::int64_t>* only) {
  // CROSS JOIN fixes the join order: each counter name is one primary-key seek (as in v_counters).
  SQLite::Statement q(db,
                      "SELECT cn.counter_id, cv.value FROM counter_names cn "
                      "CROSS JOIN counter_values cv ON cv.netns_id = ?1 AND cv.counter_id = cn.counter_id "
                      "AND cv.snapshot_id = (SELECT max(x.snapshot_id) FROM counter_values x WHERE x.netns_id = ?1 "
                      "AND x.counter_id = cn.counter_id AND x.snapshot_id <= ?2) WHERE cv.value IS NOT NULL" +
                          only_counters(only));
  q.bind(1, netns_id);
  q.bind(2, snapshot_id);
  CounterValues values;
  while (q.executeStep()) {
    values[q.getColumn(0).getInt64()] = q.getColumn(1).getInt64();
  }
  return values;
}

void replay_counters(SQLite::Database& db, std::int64_t netns_id, const std::vector<std::int64_t>& ids,
                     const std::function<void(std::size_t, const CounterValues&)>& visit,
                     const std::vector<std::int64_t>* only) {
  if (ids.empty()) {
    return;
  }
  auto values = counters_as_of(db, netns_id, ids.front(), only);
  visit(std::size_t{0}, values);
  // One seek per counter name (the key leads with the counter), not the namespace's every row.
  SQLite::Statement q(db,
                      "SELECT cv.snapshot_id, cv.counter_id, cv.value FROM counter_names cn "
                      "CROSS JOIN counter_values cv ON cv.netns_id = ?1 AND cv.counter_id = cn.counter_id "
                      "AND cv.snapshot_id > ?2 AND cv.snapshot_id <= ?3 WHERE 1" +
                          only_counters(only) + " ORDER BY cv.snapshot_id");
  q.bind(1, netns_id);
  q.bind(2, ids.front());
  q.bind(3, ids.back());
  bool have = q.executeStep();
  for (std::size_t i = 1; i < ids.size(); ++i) {
    while (have && q.getColumn(0).getInt64() <= ids[i]) {
      const auto id = q.getColumn(1).getInt64();
      if (q.getColumn(2).isNull()) {
        values.erase(id);
      } else {
        values[id] = q.getColumn(2).getInt64();
      }
      have = q.executeStep();
    }
    visit(i, values);
  }
}

}  // namespace sockhist::store
