// The read layer's span readers: every query of the physical span tables (socket_spans,
// addresses, socket_states, processes, users) the questions need beyond the public views, each
// prepared and bound here so that the joins live in one place. read.hpp lists their columns.
#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "read.hpp"
#include "sockhist/store.hpp"

namespace sockhist::query::detail {

namespace {

// hinted's name for reading the table itself, in the order its rows were written.
constexpr std::string_view k_table_scan = "table";

// Spans of a namespace alive at some snapshot of [first_id, last_id]: the condition every range
// reader shares, bound as ?1 netns, ?2 last_id, ?3 first_id.
constexpr const char* k_alive_in_range =
    "sp.netns_id = ?1 AND sp.first_snapshot_id <= ?2 AND sp.last_snapshot_id >= ?3";

// Each reader's SQL names its spans "FROM socket_spans sp "; the index they are read through is
// put there: the one spans_index picks, or `index` where the reader knows better.
std::string hinted(SQLite::Database& db, std::string sql, const Scope& scope, std::int64_t first_id,
                   std::int64_t last_id, std::string_view index = {}) {
  const auto use = index.empty() ? spans_index(db, scope, first_id, last_id) : index;
  if (use == "socket_spans_by_length") {
    return store::read_by_length(std::move(sql), k_alive_in_range, "?3");
  }
  constexpr std::string_view spans = "FROM socket_spans sp ";
  const auto at = sql.find(spans);
  if (at != std::string::npos) {
    sql.insert(at + spans.size(),
               use == k_table_scan ? std::string("NOT INDEXED ") : fmt::format("INDEXED BY {} ", use));
  }
  return sql;
}

SQLite::Statement in_range(SQLite::Database& db, std::string sql, const Scope& scope, std::int64_t first_id,
                           std::int64_t last_id, std::string_view index = {}) {
  SQLite::Statement q(db, hinted(db, std::move(sql), scope, first_id, last_id, index));
  q.bind(1, scope.netns_id);
  q.bind(2, last_id);
  q.bind(3, first_id);
  return q;
}

// The state-led span index this file has: socket_spans_by_length (schema 9), socket_spans_by_state
// (schema 8), a version 7 file's socket_spans_by_last (every state mixed), or none (schema 6).
std::string_view late_index(SQLite::Database& db) {
  constexpr std::string_view names[] = {"socket_spans_by_length", "socket_spans_by_state", "socket_spans_by_last"};
  SQLite::Statement has(db,
                        "SELECT CASE name WHEN 'socket_spans_by_length' THEN 0 WHEN 'socket_spans_by_state' THEN 1 "
                        "ELSE 2 END AS rank FROM sqlite_schema WHERE type = 'index' AND name IN "
                        "('socket_spans_by_length', 'socket_spans_by_state', 'socket_spans_by_last') "
                        "ORDER BY rank LIMIT 1");
  return has.executeStep() ? names[has.getColumn(0).getInt()] : std::string_view{};
}

}  // namespace

std::string_view spans_index(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id,
                             bool unordered) {
  const auto late = late_index(db);
  if (late.empty()) {
    return "socket_spans_by_first";  // a version 6 file
  }
  // Two subqueries, so that each is one seek at an end of the index (min and max in one SELECT
  // read every snapshot of the namespace).
  SQLite::Statement ids(db,
                        "SELECT (SELECT min(snapshot_id) FROM snapshots WHERE netns_id = ?1), "
                        "(SELECT max(snapshot_id) FROM snapshots WHERE netns_id = ?1)");
  ids.bind(1, scope.netns_id);
  if (!ids.executeStep() || ids.getColumn(0).isNull()) {
    return "socket_spans_by_first";
  }
  const auto oldest = ids.getColumn(0).getInt64(), newest = ids.getColumn(1).getInt64();
  if (late == "socket_spans_by_length") {
    // Each class is read in a window that begins about one span length before the range: about
    // twice the spans alive in it, at any place in the history, but not in the order of their
    // first snapshot. A reader that needs that order and most of the history before the range's
    // end reads it in order, by first snapshot, rather than sort it.
    return unordered || 2 * (last_id - first_id) < last_id - oldest ? late : "socket_spans_by_first";
  }
  // Spans begun by the range's end against spans ended from its start on: each about in proportion
  // to the snapshots on its side (the spans still open are read either way).
  // socket_spans_by_state reads only the state's rows, but in the order of their end: from the
  // middle on it serves a reader that needs no other order (and does not sort a week's rows).
  const bool state_first = unordered && late == "socket_spans_by_state";
  return newest - first_id < last_id - oldest || (state_first && newest - first_id <= last_id - oldest)
             ? late
             : "socket_spans_by_first";
}

bool scan_whole_table(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id) {
  // Snapshots stand in for spans: counted through snapshots_by_netns and the smallest index, a few
  // milliseconds on a week of snapshots.
  SQLite::Statement q(db,
                      "SELECT (SELECT count(*) FROM snapshots WHERE netns_id = ?1 AND snapshot_id BETWEEN ?2 AND ?3), "
                      "(SELECT count(*) FROM snapshots)");
  q.bind(1, scope.netns_id);
  q.bind(2, first_id);
  q.bind(3, last_id);
  return q.executeStep() && q.getColumn(1).getInt64() > 0 &&
         4 * q.getColumn(0).getInt64() >= 3 * q.getColumn(1).getInt64();
}

SQLite::Statement spans_in_state(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id,
                                 std::int64_t state_id) {
  auto q = in_range(db,
                    std::string("SELECT sp.span_id, sp.first_snapshot_id, sp.last_snapshot_id, "
                                "coalesce(sp.first_time_ms, f.time_ms), sp.prev_span_id, pst.state, sp.process_id, "
                                "p.pid, p.comm, p.cmdline, coalesce(p.user, u.name), coalesce(sp.family, 4), a.addr, "
                                "sp.local_port, sp.remote_addr, sp.remote_port, sp.rx_queue, "
                                "coalesce((SELECT v.rx_queue FROM socket_values v WHERE v.span_id = sp.span_id "
                                "AND v.snapshot_id <= min(sp.last_snapshot_id, ?2) "
                                "ORDER BY v.snapshot_id DESC LIMIT 1), sp.rx_queue) "
                                "FROM socket_spans sp "
                                "JOIN addresses a ON a.addr_id = sp.local_addr_id "
                                "LEFT JOIN snapshots f ON f.snapshot_id = sp.first_snapshot_id "
                                "LEFT JOIN socket_spans pv ON pv.span_id = sp.prev_span_id "
                                "LEFT JOIN socket_states pst ON pst.state_id = pv.state_id "
                                "LEFT JOIN processes p ON p.process_id = sp.process_id "
                                "LEFT JOIN users u ON u.host_id = ?4 AND u.uid = sp.uid WHERE ") +
                        k_alive_in_range + " AND sp.state_id = ?5 ORDER BY sp.span_id",
                    // No index holds span_id order: the state-led index, which reads the state's
                    // rows alone, serves at any range (a week's 1,048 CLOSE_WAIT spans, not 2 million)
                    scope, first_id, last_id, spans_index(db, scope, first_id, last_id, true));
  q.bind(4, scope.host_id);
  q.bind(5, state_id);
  return q;
}

SQLite::Statement span_by_id(SQLite::Database& db) {
  return SQLite::Statement(db,
                           "SELECT sp.prev_span_id, pst.state, sp.first_snapshot_id, "
                           "coalesce(sp.first_time_ms, f.time_ms) FROM socket_spans sp "
                           "LEFT JOIN snapshots f ON f.snapshot_id = sp.first_snapshot_id "
                           "LEFT JOIN socket_spans pv ON pv.span_id = sp.prev_span_id "
                           "LEFT JOIN socket_states pst ON pst.state_id = pv.state_id WHERE sp.span_id = ?");
}

RawStatement time_wait_spans(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id,
                             std::int64_t time_wait_id, std::int64_t fin_wait2_id, bool table_order) {
  RawStatement q(db,
                 hinted(db,
                        std::string("SELECT sp.span_id, sp.first_snapshot_id, sp.last_snapshot_id, sp.first_time_ms, "
                                    "sp.state_id, sp.timer, sp.timer_ms, sp.prev_span_id, sp.process_id, "
                                    "coalesce(sp.family, 4), sp.local_addr_id, sp.local_port, sp.remote_addr, "
                                    "sp.remote_port, sp.cookie FROM socket_spans sp WHERE ") +
                            k_alive_in_range + " AND sp.state_id IN (?4, ?5) ORDER BY " +
                            (table_order ? "sp.span_id" : "sp.first_snapshot_id"),
                        scope, first_id, last_id, table_order ? k_table_scan : std::string_view{}));
  q.bind(1, scope.netns_id);
  q.bind(2, last_id);
  q.bind(3, first_id);
  q.bind(4, time_wait_id);
  q.bind(5, fin_wait2_id);
  return q;
}

SQLite::Statement successors(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id) {
  SQLite::Statement q(db,
                      "SELECT sp.prev_span_id, st.state FROM socket_spans sp "
                      "JOIN socket_states st ON st.state_id = sp.state_id "
                      "WHERE sp.netns_id = ? AND sp.first_snapshot_id > ? AND sp.first_snapshot_id <= ? "
                      "AND sp.prev_span_id IS NOT NULL");
  q.bind(1, scope.netns_id);
  q.bind(2, first_id);
  q.bind(3, last_id);
  return q;
}

RawStatement connections_from_ports(SQLite::Database& db, const Scope& scope, std::int64_t first_id,
                                    std::int64_t last_id, std::int64_t low, std::int64_t high) {
  RawStatement q(
      db, hinted(db,
                 std::string("SELECT sp.first_snapshot_id, sp.last_snapshot_id, sp.state_id, "
                             "coalesce(sp.family, 4), sp.local_addr_id, sp.local_port, sp.remote_addr, "
                             "sp.remote_port FROM socket_spans sp WHERE "
                             // SQLite tests the terms in this order: the port first leaves
                             // a quarter of a scanned week's rows (0.36 s against 0.67 s)
                             "sp.local_port BETWEEN ?4 AND ?5 AND ") +
                     k_alive_in_range +
                     " AND sp.state_id IN (SELECT state_id FROM socket_states WHERE proto = 'tcp' "
                     "AND state NOT IN ('LISTEN', 'CLOSE')) AND sp.remote_port > 0",
                 scope, first_id, last_id,
                 scan_whole_table(db, scope, first_id, last_id) ? k_table_scan
                                                                : spans_index(db, scope, first_id, last_id, true)));
  q.bind(1, scope.netns_id);
  q.bind(2, last_id);
  q.bind(3, first_id);
  q.bind(4, low);
  q.bind(5, high);
  return q;
}

RawStatement grouping_spans(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id,
                            std::int64_t state_id) {
  // Both span indexes hold state_id: only the state's own rows are read from the table.
  RawStatement q(db,
                 hinted(db,
                        std::string("SELECT sp.first_snapshot_id, sp.last_snapshot_id, sp.process_id, sp.local_port, "
                                    "sp.local_addr_id, sp.remote_addr FROM socket_spans sp WHERE ") +
                            k_alive_in_range + " AND sp.state_id = ?4",
                        scope, first_id, last_id, spans_index(db, scope, first_id, last_id, true)));
  q.bind(1, scope.netns_id);
  q.bind(2, last_id);
  q.bind(3, first_id);
  q.bind(4, state_id);
  return q;
}

SQLite::Statement process_label_by_id(SQLite::Database& db) {
  return SQLite::Statement(db, "SELECT pid || '/' || comm FROM processes WHERE process_id = ?");
}

SQLite::Statement address_by_id(SQLite::Database& db) {
  return SQLite::Statement(db, "SELECT addr FROM addresses WHERE addr_id = ?");
}

Listeners listeners(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id) {
  Listeners out;
  const auto listen = state_id(db, model::Proto::tcp, model::SockState::listen);
  if (!listen) {
    return out;
  }
  // Listeners are few: by state they are a few seeks (a version 7 file has no such index).
  auto late = late_index(db);
  if (late != "socket_spans_by_length" && late != "socket_spans_by_state") {
    late = spans_index(db, scope, first_id, last_id);
  }
  auto q = in_range(db,
                    std::string("SELECT sp.local_port, sp.first_snapshot_id, p.pid, p.comm, p.cmdline "
                                "FROM socket_spans sp LEFT JOIN processes p ON p.process_id = sp.process_id WHERE ") +
                        k_alive_in_range + " AND sp.state_id = ?4 ORDER BY sp.first_snapshot_id",
                    scope, first_id, last_id, late);
  q.bind(4, *listen);
  while (q.executeStep()) {
    auto& list = out[q.getColumn(0).getInt64()];
    if (!q.getColumn(2).isNull()) {
      list.push_back(
          {q.getColumn(1).getInt64(), q.getColumn(2).getInt(), q.getColumn(3).getString(), opt_text(q.getColumn(4))});
    }
  }
  return out;
}

const Listener* listener_at(const std::vector<Listener>& list, std::int64_t id) {
  const Listener* found = list.empty() ? nullptr : &list.front();
  for (const auto& l : list) {
    if (l.first_id <= id) {
      found = &l;
    }
  }
  return found;
}

}  // namespace sockhist::query::detail
