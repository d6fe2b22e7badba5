// The connection log read back (schema/010_connection_log.sql) through its public views.
#include "sockhist/query/connections.hpp"

#include <algorithm>

#include <SQLiteCpp/Statement.h>

#include "read.hpp"
#include "sockhist/store.hpp"

namespace sockhist::query {

using namespace detail;

std::optional<std::int64_t> ConnectionEnd::lifetime_min_ms() const {
  return born_by_ms ? std::optional(std::max<std::int64_t>(0, time_ms - *born_by_ms)) : std::nullopt;
}

std::optional<std::int64_t> ConnectionEnd::lifetime_max_ms() const {
  return born_after_ms ? std::optional(std::max<std::int64_t>(0, time_ms - *born_after_ms)) : std::nullopt;
}

namespace {

ConnectionCoverage read_coverage(SQLite::Database& db, const Scope& scope, std::int64_t since_ms,
                                 std::int64_t until_ms) {
  ConnectionCoverage c;
  // Logs whose stretch meets the window; a namespace has one snapshot per moment.
  SQLite::Statement q(db,
                      "SELECT l.since_ms, l.until_ms, l.listening, l.heard, l.stored, l.aggregated, l.over_bound, "
                      "l.overruns, l.malformed FROM connection_logs l JOIN snapshots s ON s.snapshot_id = "
                      "l.snapshot_id WHERE s.netns_id = ? AND l.until_ms >= ? AND l.since_ms <= ? "
                      "ORDER BY l.since_ms, l.snapshot_id");
  q.bind(1, scope.netns_id);
  q.bind(2, since_ms);
  q.bind(3, until_ms);
  std::int64_t covered_to = since_ms;  // the window is covered up to here
  const auto gap = [&](std::int64_t from, std::int64_t to) {
    from = std::max(from, since_ms);
    to = std::min(to, until_ms);
    if (to > from) {
      c.gaps.emplace_back(from, to);
    }
  };
  while (q.executeStep()) {
    const std::int64_t from = q.getColumn(0).getInt64();
    const std::int64_t to = q.getColumn(1).getInt64();
    ++c.takes;
    c.since_ms = c.since_ms ? std::min(*c.since_ms, from) : from;
    c.until_ms = c.until_ms ? std::max(*c.until_ms, to) : to;
    c.heard += q.getColumn(3).getInt64();
    c.stored += q.getColumn(4).getInt64();
    c.aggregated += q.getColumn(5).getInt64();
    c.over_bound += q.getColumn(6).getInt64();
    c.malformed += q.getColumn(8).getInt64();
    if (const auto overruns = q.getColumn(7).getInt64(); overruns > 0) {
      c.overruns += overruns;
      c.overrun_takes.emplace_back(from, to, overruns);
    }
    if (q.getColumn(2).getInt() == 0) {
      continue;  // not listening: not covered
    }
    if (from > covered_to) {
      gap(covered_to, from);
    }
    covered_to = std::max(covered_to, to);
  }
  gap(covered_to, until_ms);
  return c;
}

}  // namespace

Connections read_connections(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms) {
  Connections out;
  out.has_log = store::has_connection_log(db);
  if (!out.has_log) {
    return out;
  }
  out.coverage = read_coverage(db, scope, since_ms, until_ms);
  // The ends of the snapshots whose logs meet the window (connection_ends_by_snapshot), then by time.
  // The base tables rather than v_connections, so that each log's ends are one range of
  // connection_ends_by_snapshot.
  SQLite::Statement q(
      db,
      "SELECT e.end_id, e.time_ms, e.cookie, st.proto, e.family, a.addr, e.local_port, e.remote_addr, "
      "e.remote_port, st.state, ls.state, e.time_wait_span_id IS NOT NULL, e.bytes_acked, e.bytes_received, "
      "e.bytes_sent, e.bytes_retrans, e.segs_out, e.segs_in, e.total_retrans, e.rtt_us, e.min_rtt_us, "
      "e.born_after_ms, e.born_by_ms, e.owner_basis, e.owner_reason, coalesce(p.pid, 0), coalesce(p.comm, ''), "
      "p.cmdline, p.user "
      "FROM connection_logs l JOIN snapshots s ON s.snapshot_id = l.snapshot_id "
      "CROSS JOIN connection_ends e ON e.snapshot_id = l.snapshot_id AND e.time_ms BETWEEN ?2 AND ?3 "
      "JOIN socket_states st ON st.state_id = e.state_id JOIN addresses a ON a.addr_id = e.local_addr_id "
      "LEFT JOIN socket_states ls ON ls.state_id = e.seen_state_id "
      "LEFT JOIN processes p ON p.process_id = e.process_id "
      "WHERE s.netns_id = ?1 AND l.until_ms >= ?2 AND l.since_ms <= ?3 ORDER BY e.time_ms, e.end_id");
  q.bind(1, scope.netns_id);
  q.bind(2, since_ms);
  q.bind(3, until_ms);
  while (q.executeStep()) {
    ConnectionEnd e;
    e.end_id = q.getColumn(0).getInt64();
    e.time_ms = q.getColumn(1).getInt64();
    e.cookie = static_cast<std::uint64_t>(q.getColumn(2).getInt64());
    e.proto = model::proto_from_name(q.getColumn(3).getString()).value_or(model::Proto::tcp);
    e.family = q.getColumn(4).getInt();
    e.local_addr = q.getColumn(5).getString();
    e.local_port = q.getColumn(6).getInt();
    e.remote_addr = q.getColumn(7).getString();
    e.remote_port = q.getColumn(8).getInt();
    e.end_state = q.getColumn(9).getString();
    e.seen_state = opt_text(q.getColumn(10));
    e.entered_time_wait = q.getColumn(11).getInt() != 0;
    e.bytes_acked = opt_int(q.getColumn(12));
    e.bytes_received = opt_int(q.getColumn(13));
    e.bytes_sent = opt_int(q.getColumn(14));
    e.bytes_retrans = opt_int(q.getColumn(15));
    e.segs_out = opt_int(q.getColumn(16));
    e.segs_in = opt_int(q.getColumn(17));
    e.total_retrans = opt_int(q.getColumn(18));
    e.rtt_us = opt_int(q.getColumn(19));
    e.min_rtt_us = opt_int(q.getColumn(20));
    e.born_after_ms = opt_int(q.getColumn(21));
    e.born_by_ms = opt_int(q.getColumn(22));
    e.owner_basis = q.getColumn(23).getString();
    e.owner_reason = opt_text(q.getColumn(24));
    e.pid = q.getColumn(25).getInt();
    e.comm = q.getColumn(26).getString();
    e.cmdline = opt_text(q.getColumn(27));
    e.user = opt_text(q.getColumn(28));
    out.ends.push_back(std::move(e));
  }
  SQLite::Statement g(db,
                      "SELECT g.second_ms, st.proto, g.family, g.local_port, g.remote_addr, st.state, g.count, "
                      "g.bytes_acked, g.bytes_received, g.bytes_sent, g.without_bytes_sent, g.total_retrans "
                      "FROM connection_logs l JOIN snapshots s ON s.snapshot_id = l.snapshot_id "
                      "CROSS JOIN connection_aggregates g ON g.snapshot_id = l.snapshot_id "
                      "AND g.second_ms + 999 >= ?2 AND g.second_ms <= ?3 "
                      "JOIN socket_states st ON st.state_id = g.state_id "
                      "WHERE s.netns_id = ?1 AND l.until_ms >= ?2 AND l.since_ms <= ?3 AND l.aggregated > 0 "
                      "ORDER BY g.second_ms");
  g.bind(1, scope.netns_id);
  g.bind(2, since_ms);
  g.bind(3, until_ms);
  while (g.executeStep()) {
    ConnectionAggregate a;
    a.second_ms = g.getColumn(0).getInt64();
    a.proto = model::proto_from_name(g.getColumn(1).getString()).value_or(model::Proto::tcp);
    a.family = g.getColumn(2).getInt();
    a.local_port = g.getColumn(3).getInt();
    a.remote_addr = g.getColumn(4).getString();
    a.end_state = g.getColumn(5).getString();
    a.count = g.getColumn(6).getInt64();
    a.bytes_acked = g.getColumn(7).getInt64();
    a.bytes_received = g.getColumn(8).getInt64();
    a.bytes_sent = g.getColumn(9).getInt64();
    a.without_bytes_sent = g.getColumn(10).getInt64();
    a.total_retrans = g.getColumn(11).getInt64();
    out.aggregates.push_back(std::move(a));
  }
  return out;
}

}  // namespace sockhist::query
