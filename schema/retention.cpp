// Retention: removing the oldest snapshots of every namespace while keeping what the kept ones
// rely on (spans of sockets still alive, counter baselines).
#include <algorithm>
#include <map>
#include <vector>

#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include "sockhist/counters.hpp"
#include "sockhist/snapshot_writer.hpp"

namespace sockhist::store {

namespace {

// The newest expired snapshot of each namespace among the oldest `batch`; empty when none expired.
std::map<std::int64_t, std::int64_t> newest_expired(SQLite::Database& db, std::int64_t cutoff_ms, std::size_t batch) {
  std::map<std::int64_t, std::int64_t> newest_removed;  // netns_id -> newest snapshot removed
  SQLite::Statement select(db,
                           "SELECT snapshot_id, netns_id FROM snapshots WHERE time_ms < ? ORDER BY snapshot_id "
                           "LIMIT ?");
  select.bind(1, cutoff_ms);
  select.bind(2, static_cast<std::int64_t>(batch));
  while (select.executeStep()) {
    auto& newest = newest_removed[select.getColumn(1).getInt64()];
    newest = std::max(newest, select.getColumn(0).getInt64());
  }
  return newest_removed;
}

// Moves one namespace's history past its snapshot `newest`: the oldest kept snapshot receives
// every counter value it relies on, spans that ended go, spans still alive keep their first time.
void rebase_namespace(SQLite::Database& db, std::int64_t netns_id, std::int64_t newest) {
  SQLite::Statement next(db, "SELECT min(snapshot_id) FROM snapshots WHERE netns_id = ? AND snapshot_id > ?");
  next.bind(1, netns_id);
  next.bind(2, newest);
  next.executeStep();
  if (next.getColumn(0).isNull()) {
    // Nothing of this namespace remains: all its spans and counters go.
    for (const char* sql :
         {"DELETE FROM counter_values WHERE netns_id = ?",
          "DELETE FROM socket_values WHERE span_id IN (SELECT span_id FROM socket_spans WHERE netns_id = ?)",
          "DELETE FROM time_wait_entries WHERE netns_id = ?", "DELETE FROM socket_spans WHERE netns_id = ?"}) {
      SQLite::Statement del(db, sql);
      del.bind(1, netns_id);
      del.exec();
    }
    return;
  }
  const std::int64_t kept = next.getColumn(0).getInt64();
  SQLite::Statement rebase(db,
                           "INSERT OR IGNORE INTO counter_values(netns_id, counter_id, snapshot_id, value) "
                           "VALUES (?, ?, ?, ?)");
  for (const auto& [counter_id, value] : counters_as_of(db, netns_id, newest)) {
    rebase.reset();
    rebase.bind(1, netns_id);
    rebase.bind(2, counter_id);
    rebase.bind(3, kept);
    rebase.bind(4, value);
    rebase.exec();
  }
  SQLite::Statement del_values(db, "DELETE FROM counter_values WHERE netns_id = ? AND snapshot_id <= ?");
  del_values.bind(1, netns_id);
  del_values.bind(2, newest);
  del_values.exec();
  // Values no kept snapshot shows go: all of the spans that go, and of a span that stays, all but
  // its newest at or before the oldest kept snapshot (it still holds there; its timer keeps its
  // own time).
  for (const char* sql :
       {"DELETE FROM socket_values WHERE span_id IN (SELECT span_id FROM socket_spans WHERE netns_id = ?1 "
        "AND first_snapshot_id <= ?2 AND last_snapshot_id <= ?2)",
        "DELETE FROM socket_values WHERE span_id IN (SELECT span_id FROM socket_spans WHERE netns_id = ?1 "
        "AND first_snapshot_id <= ?2 AND last_snapshot_id > ?2) AND snapshot_id < (SELECT max(y.snapshot_id) "
        "FROM socket_values y WHERE y.span_id = socket_values.span_id AND y.snapshot_id <= ?2)"}) {
    SQLite::Statement del(db, sql);
    del.bind(1, netns_id);
    del.bind(2, newest);
    del.exec();
  }
  // Spans that ended before the oldest kept snapshot go; spans of sockets alive at or after it
  // stay, and keep the time of the first snapshot that saw them, which goes now.
  SQLite::Statement del_spans(
      db, "DELETE FROM socket_spans WHERE netns_id = ?1 AND first_snapshot_id <= ?2 AND last_snapshot_id <= ?2");
  del_spans.bind(1, netns_id);
  del_spans.bind(2, newest);
  del_spans.exec();
  // A TIME_WAIT entry goes with its span (a span that stays keeps its entry, as its first time).
  SQLite::Statement del_entries(
      db,
      "DELETE FROM time_wait_entries WHERE netns_id = ?1 AND snapshot_id <= ?2 AND NOT EXISTS "
      "(SELECT 1 FROM socket_spans sp WHERE sp.span_id = time_wait_entries.span_id)");
  del_entries.bind(1, netns_id);
  del_entries.bind(2, newest);
  del_entries.exec();
  SQLite::Statement keep_times(db,
                               "UPDATE socket_spans SET first_time_ms = (SELECT s.time_ms FROM snapshots s "
                               "WHERE s.snapshot_id = socket_spans.first_snapshot_id) "
                               "WHERE netns_id = ?1 AND first_snapshot_id <= ?2 AND first_time_ms IS NULL");
  keep_times.bind(1, netns_id);
  keep_times.bind(2, newest);
  keep_times.exec();
}

// Deletes the snapshot rows and what hangs off them.
void delete_snapshots(SQLite::Database& db, const std::vector<std::int64_t>& ids) {
  SQLite::Statement del_snapshot(db, "DELETE FROM snapshots WHERE snapshot_id = ?");
  SQLite::Statement del_counts(db, "DELETE FROM state_counts WHERE snapshot_id = ?");
  SQLite::Statement del_diag(db, "DELETE FROM diagnostics WHERE snapshot_id = ?");
  // The connection log heard with a snapshot goes with it.
  SQLite::Statement del_ends(db, "DELETE FROM connection_ends WHERE snapshot_id = ?");
  SQLite::Statement del_aggregates(db, "DELETE FROM connection_aggregates WHERE snapshot_id = ?");
  SQLite::Statement del_log(db, "DELETE FROM connection_logs WHERE snapshot_id = ?");
  for (const std::int64_t id : ids) {
    for (SQLite::Statement* stmt : {&del_counts, &del_diag, &del_ends, &del_aggregates, &del_log, &del_snapshot}) {
      stmt->reset();
      stmt->bind(1, id);
      stmt->exec();
    }
  }
}

}  // namespace

std::size_t apply_retention(SQLite::Database& db, std::int64_t cutoff_ms, std::size_t batch,
                            const std::function<void(std::size_t)>& progress) {
  std::size_t removed = 0;
  for (;;) {
    SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
    const auto newest_removed = newest_expired(db, cutoff_ms, batch);
    if (newest_removed.empty()) {
      break;
    }
    // Spans and counter baselines assume each namespace loses a prefix of its snapshots, so every
    // snapshot up to the newest expired one goes, even one a stepped-back clock dated later.
    std::vector<std::int64_t> ids;
    std::int64_t removed_max_ms = 0;  // the latest time among them, for the process clean-up below
    for (const auto& [netns_id, newest] : newest_removed) {
      SQLite::Statement prefix(db,
                               "SELECT snapshot_id, time_ms FROM snapshots WHERE netns_id = ? AND snapshot_id <= ?");
      prefix.bind(1, netns_id);
      prefix.bind(2, newest);
      while (prefix.executeStep()) {
        ids.push_back(prefix.getColumn(0).getInt64());
        removed_max_ms = std::max(removed_max_ms, prefix.getColumn(1).getInt64());
      }
    }
    for (const auto& [netns_id, newest] : newest_removed) {
      rebase_namespace(db, netns_id, newest);
    }
    delete_snapshots(db, ids);
    // Processes no span or connection end refers to any more go once the oldest kept snapshot enters a new hour:
    // finding them scans socket_spans (an index on process_id would slow every span insert).
    const auto oldest_kept = db.execAndGet("SELECT min(time_ms) FROM snapshots");
    constexpr std::int64_t k_hour_ms = 3'600'000;
    if (oldest_kept.isNull() || removed_max_ms / k_hour_ms != oldest_kept.getInt64() / k_hour_ms) {
      db.exec(
          "DELETE FROM processes WHERE process_id NOT IN (SELECT process_id FROM socket_spans WHERE process_id IS NOT "
          "NULL) AND process_id NOT IN (SELECT process_id FROM connection_ends WHERE process_id IS NOT NULL)");
      db.exec(
          "DELETE FROM addresses WHERE addr_id NOT IN (SELECT local_addr_id FROM socket_spans) AND addr_id NOT IN "
          "(SELECT local_addr_id FROM connection_ends)");
    }
    transaction.commit();
    removed += ids.size();
    if (progress) {
      progress(removed);
    }
  }
  return removed;
}

}  // namespace sockhist::store
