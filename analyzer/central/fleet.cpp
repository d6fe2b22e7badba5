// The central store's questions (sockhist fleet): SQL over its views, read back as rows.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "sockhist/central.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::central {

std::string quote(std::string_view text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out + "'";
}

std::string socket_list_sql(std::string_view host, std::string_view netns_key, std::int64_t snapshot_id) {
  const auto h = quote(host), k = quote(netns_key);
  // A running timer counts down: later snapshots show the time left projected from the last
  // value stored, as the SQLite view does.
  return fmt::format(
      "SELECT span_id, proto, family, state, local_addr, local_port, remote_addr, remote_port, "
      "if(values_at = 0, tx_queue, v_tx_queue) AS tx_queue, if(values_at = 0, rx_queue, v_rx_queue) AS rx_queue, "
      "if(values_at = 0, timer_code, v_timer) AS timer_code, "
      "multiIf(values_at != 0, if(v_timer = 0, 0, greatest(0, v_expires_ms - at_ms)), timer_code = 0, timer_ms, "
      "greatest(0, timer_ms - (at_ms - first_time_ms))) AS timer_ms, "
      "if(values_at = 0, retransmits, v_retransmits) AS retransmits, if(values_at = 0, probes, v_probes) AS probes, "
      "if(values_at = 0, backlog, v_backlog) AS backlog, uid, inode, pid, process, cmdline, user, cookie, "
      "owner_carried, sock_type, unix_flags, peer_inode, first_time_ms, "
      "if(values_at = 0, first_snapshot_id, values_at) AS values_snapshot_id, uid_user "
      "FROM (SELECT *, (SELECT any(time_ms) FROM v_snapshots WHERE host = {0} AND netns_key = {1} AND "
      "snapshot_id = {2}) AS at_ms FROM v_spans WHERE host = {0} AND netns_key = {1} AND first_snapshot_id <= {2} "
      "AND (last_snapshot_id IS NULL OR last_snapshot_id >= {2})) "
      "ANY LEFT JOIN (SELECT span_id, max(snapshot_id) AS values_at, argMax(tx_queue, snapshot_id) AS v_tx_queue, "
      "argMax(rx_queue, snapshot_id) AS v_rx_queue, argMax(timer_code, snapshot_id) AS v_timer, "
      "argMax(timer_expires_ms, snapshot_id) AS v_expires_ms, argMax(retransmits, snapshot_id) AS v_retransmits, "
      "argMax(probes, snapshot_id) AS v_probes, argMax(backlog, snapshot_id) AS v_backlog FROM v_socket_values "
      "WHERE host = {0} AND netns_key = {1} AND snapshot_id <= {2} GROUP BY span_id) USING span_id "
      "ORDER BY span_id",
      h, k, snapshot_id);
}

std::vector<FleetNamespace> fleet_namespaces(Server& server, const std::optional<std::string>& host) {
  // Each namespace's newest 21 snapshot times come back newest first, for the usual interval.
  const auto rows = server.select(
      fmt::format("SELECT host, netns_key, any(netns), max(netns_initial), min(time_ms), count(), "
                  "argMax(ifNull(kernel, ''), snapshot_id), argMax(ifNull(machine_id, ''), snapshot_id), max(time_ms), "
                  "arrayStringConcat(arrayMap(x -> toString(x.2), arraySlice(arraySort(x -> -x.1, "
                  "groupArray((snapshot_id, time_ms))), 1, 21)), ',') "
                  "FROM v_snapshots {} GROUP BY host, netns_key ORDER BY host, netns_key",
                  host ? "WHERE host = " + quote(*host) : std::string()));
  std::vector<FleetNamespace> out;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    FleetNamespace n;
    n.host = rows[i].at(0);
    n.netns_key = rows[i].at(1);
    n.netns = server.number(rows, i, 2);
    n.initial = server.number(rows, i, 3) != 0;
    n.first_ms = server.number(rows, i, 4);
    n.snapshots = server.number(rows, i, 5);
    n.kernel = rows[i].at(6);
    n.machine_id = rows[i].at(7);
    n.newest_ms = server.number(rows, i, 8);
    std::vector<std::int64_t> times;
    const auto& list = rows[i].at(9);
    for (std::size_t start = 0; start < list.size();) {
      auto end = list.find(',', start);
      if (end == std::string::npos) {
        end = list.size();
      }
      times.push_back(std::stoll(list.substr(start, end - start)));
      start = end + 1;
    }
    n.interval_ms = model::usual_interval_ms(std::move(times));
    out.push_back(std::move(n));
  }
  return out;
}

namespace {

// "AND host IN ('a', 'b')", or nothing for every host.
std::string hosts_clause(const HostList& hosts) {
  if (hosts.empty()) {
    return {};
  }
  std::string out = " AND host IN (";
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    out += (i ? ", " : "") + quote(hosts[i]);
  }
  return out + ")";
}

// The snapshots of [since_ms, until_ms] as a subquery to join on (host, netns_key, snapshot_id).
std::string snapshots_in(const HostList& hosts, std::int64_t since_ms, std::int64_t until_ms,
                         const char* columns = "host, netns_key, snapshot_id, time_ms") {
  return fmt::format("(SELECT {} FROM v_snapshots WHERE time_ms >= {} AND time_ms <= {}{})", columns, since_ms,
                     until_ms, hosts_clause(hosts));
}

// The snapshots of [since_ms, until_ms] after each namespace's first of them: those whose TIME_WAIT
// entries entered inside the range (the first one's entered before it).
std::string later_snapshots_in(const HostList& hosts, std::int64_t since_ms, std::int64_t until_ms) {
  return fmt::format(
      "(SELECT host, netns_key, snapshot_id FROM v_snapshots WHERE time_ms >= {0} AND time_ms <= {1}{2} AND "
      "(host, netns_key, snapshot_id) NOT IN (SELECT host, netns_key, min(snapshot_id) FROM v_snapshots WHERE "
      "time_ms >= {0} AND time_ms <= {1}{2} GROUP BY host, netns_key))",
      since_ms, until_ms, hosts_clause(hosts));
}

// The TIME_WAIT entries that may belong to the snapshots of [since_ms, until_ms], as a subquery
// with `columns`: an entry is dated by its socket's timer, within a TIME_WAIT (60 s, a patched kernel's
// longer one) of the snapshot that recorded it, so an hour either way holds them all and spares
// reading the rest of the table; the join on the snapshots then keeps exactly theirs.
constexpr std::int64_t k_margin_ms = 3'600'000;
std::string entries_near(const std::string& columns, const HostList& hosts, std::int64_t since_ms,
                         std::int64_t until_ms) {
  return fmt::format("(SELECT {} FROM v_time_wait_entries WHERE entered_ms >= {} AND entered_ms <= {}{})", columns,
                     since_ms - k_margin_ms, until_ms + k_margin_ms, hosts_clause(hosts));
}

std::optional<std::int64_t> optional_number(Server& server, const std::vector<std::vector<std::string>>& rows,
                                            std::size_t row, std::size_t column) {
  if (rows[row].at(column) == k_null_field) {
    return std::nullopt;
  }
  return server.number(rows, row, column);
}

const char* const k_span_columns =
    "host, netns_key, span_id, prev_span_id, first_snapshot_id, last_snapshot_id, first_time_ms, state, family, "
    "local_addr, "
    "local_port, remote_addr, remote_port, pid, process, cmdline";

std::vector<FleetSpan> spans_of(Server& server, const std::string& sql) {
  const auto rows = server.select(sql);
  std::vector<FleetSpan> out(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    auto& s = out[i];
    s.host = rows[i].at(0);
    s.netns_key = rows[i].at(1);
    s.span_id = server.number(rows, i, 2);
    s.prev_span_id = optional_number(server, rows, i, 3);
    s.first_snapshot_id = server.number(rows, i, 4);
    s.last_snapshot_id = optional_number(server, rows, i, 5);
    s.first_time_ms = server.number(rows, i, 6);
    s.state = rows[i].at(7);
    s.family = static_cast<int>(server.number(rows, i, 8));
    s.local_addr = rows[i].at(9);
    s.local_port = server.number(rows, i, 10);
    s.remote_addr = rows[i].at(11) == k_null_field ? std::string() : rows[i].at(11);
    s.remote_port = optional_number(server, rows, i, 12).value_or(0);
    s.pid = optional_number(server, rows, i, 13);
    s.process = rows[i].at(14) == k_null_field ? std::string() : rows[i].at(14);
    s.cmdline = rows[i].at(15) == k_null_field ? std::nullopt : std::optional(rows[i].at(15));
  }
  return out;
}

// Rows of `from` (a subquery with host, netns_key, first_snapshot_id and last_snapshot_id) alive at
// some snapshot of their namespace in [since_ms, until_ms].
std::string alive_in_range(const std::string& columns, const std::string& from, const HostList& hosts,
                           std::int64_t since_ms, std::int64_t until_ms) {
  return fmt::format(
      "SELECT {} FROM {} ANY INNER JOIN (SELECT host, netns_key, min(snapshot_id) AS first_id, max(snapshot_id) AS "
      "last_id FROM v_snapshots WHERE time_ms >= {} AND time_ms <= {}{} GROUP BY host, netns_key) USING (host, "
      "netns_key) WHERE first_snapshot_id <= last_id AND (last_snapshot_id IS NULL OR last_snapshot_id >= first_id)",
      columns, from, since_ms, until_ms, hosts_clause(hosts));
}

}  // namespace

std::vector<FleetSnapshot> fleet_snapshots(Server& server, const HostList& hosts, std::int64_t since_ms,
                                           std::int64_t until_ms) {
  const auto rows = server.select(
      fmt::format("SELECT host, netns_key, snapshot_id, time_ms, ifNull(boot_id, '') FROM {} ORDER BY "
                  "host, netns_key, snapshot_id",
                  snapshots_in(hosts, since_ms, until_ms, "host, netns_key, snapshot_id, time_ms, boot_id")));
  std::vector<FleetSnapshot> out(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    out[i] = {rows[i].at(0), rows[i].at(1), server.number(rows, i, 2), server.number(rows, i, 3), rows[i].at(4)};
  }
  return out;
}

std::vector<FleetStateMax> fleet_state_maxima(Server& server, const HostList& hosts, std::int64_t since_ms,
                                              std::int64_t until_ms, std::int64_t bucket_ms) {
  // v_state_counts holds whole seconds: a superset by `time`, made exact by the join on snapshots.
  const auto counts = fmt::format("FROM v_state_counts WHERE time >= {} AND time <= {}{}", since_ms / 1000,
                                  until_ms / 1000, hosts_clause(hosts));
  const auto rows = server.select(
      fmt::format("SELECT host, netns_key, intDiv(time_ms, {0}) * {0} AS bucket, key, max(n) FROM ("
                  "SELECT host, netns_key, snapshot_id, concat(proto, ' ', state) AS key, toInt64(count) AS n {1} "
                  "UNION ALL SELECT host, netns_key, snapshot_id, proto AS key, toInt64(sum(count)) AS n {1} "
                  "GROUP BY host, netns_key, snapshot_id, proto) "
                  "ANY INNER JOIN {2} USING (host, netns_key, snapshot_id) GROUP BY host, netns_key, bucket, key",
                  bucket_ms, counts, snapshots_in(hosts, since_ms, until_ms)));
  std::vector<FleetStateMax> out(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    out[i] = {rows[i].at(0), rows[i].at(1), server.number(rows, i, 2), rows[i].at(3), server.number(rows, i, 4)};
  }
  return out;
}

std::vector<FleetSpan> fleet_spans_in_state(Server& server, const HostList& hosts, const std::string& state,
                                            std::int64_t since_ms, std::int64_t until_ms) {
  // One scan for every namespace: a query per namespace would read each host's spans again.
  return spans_of(server, alive_in_range(k_span_columns,
                                         fmt::format("(SELECT {} FROM v_spans WHERE proto = 'tcp' AND state = {}{})",
                                                     k_span_columns, quote(state), hosts_clause(hosts)),
                                         hosts, since_ms, until_ms) +
                              " ORDER BY host, netns_key, span_id");
}

std::vector<FleetSpan> fleet_spans_by_id(Server& server, const std::string& host, const std::string& netns_key,
                                         const std::vector<std::int64_t>& ids) {
  if (ids.empty()) {
    return {};
  }
  return spans_of(server, fmt::format("SELECT {} FROM v_spans WHERE host = {} AND netns_key = {} AND span_id IN ({}) "
                                      "ORDER BY span_id",
                                      k_span_columns, quote(host), quote(netns_key), fmt::join(ids, ", ")));
}

std::vector<FleetPort> fleet_listening_ports(Server& server, const HostList& hosts, std::int64_t since_ms,
                                             std::int64_t until_ms) {
  const auto rows = server.select(
      "SELECT DISTINCT host, netns_key, local_port FROM (" +
      alive_in_range(
          "host, netns_key, local_port",
          fmt::format("(SELECT host, netns_key, local_port, first_snapshot_id, last_snapshot_id FROM v_spans "
                      "WHERE proto = 'tcp' AND state = 'LISTEN'{})",
                      hosts_clause(hosts)),
          hosts, since_ms, until_ms) +
      ") ORDER BY host, netns_key, local_port");
  std::vector<FleetPort> out;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    out.push_back({rows[i].at(0), rows[i].at(1), server.number(rows, i, 2)});
  }
  return out;
}

std::vector<FleetTimeWaitHost> fleet_time_wait_hosts(Server& server, const HostList& hosts, std::int64_t since_ms,
                                                     std::int64_t until_ms) {
  // The population per snapshot, 0 where no TIME_WAIT was counted; its peak is the earliest of the
  // highest, as trend and check read it.
  const auto rows = server.select(fmt::format(
      "SELECT host, netns_key, snapshots, first_ms, last_ms, peak, peak_ms, now, entries FROM ("
      "SELECT host, netns_key, count() AS snapshots, min(time_ms) AS first_ms, max(time_ms) AS last_ms, max(n) AS "
      "peak, "
      "argMax(time_ms, tuple(n, -snapshot_id)) AS peak_ms, argMax(n, snapshot_id) AS now FROM {0} "
      "ANY LEFT JOIN (SELECT host, netns_key, snapshot_id, toInt64(count) AS n FROM v_state_counts WHERE proto = "
      "'tcp' AND state = 'TIME_WAIT' AND time >= {1} AND time <= {2}{3}) USING (host, netns_key, snapshot_id) "
      "GROUP BY host, netns_key) "
      "ANY LEFT JOIN (SELECT host, netns_key, count() AS entries FROM {5} ANY INNER JOIN {4} "
      "USING (host, netns_key, snapshot_id) GROUP BY host, netns_key) USING (host, netns_key) "
      "ORDER BY host, netns_key",
      snapshots_in(hosts, since_ms, until_ms), since_ms / 1000, until_ms / 1000, hosts_clause(hosts),
      later_snapshots_in(hosts, since_ms, until_ms),
      entries_near("host, netns_key, snapshot_id", hosts, since_ms, until_ms)));
  std::vector<FleetTimeWaitHost> out(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    auto& h = out[i];
    h.host = rows[i].at(0);
    h.netns_key = rows[i].at(1);
    h.snapshots = server.number(rows, i, 2);
    h.first_ms = server.number(rows, i, 3);
    h.last_ms = server.number(rows, i, 4);
    h.peak = server.number(rows, i, 5);
    h.peak_ms = server.number(rows, i, 6);
    h.now = server.number(rows, i, 7);
    h.entries = server.number(rows, i, 8);
  }
  return out;
}

std::vector<FleetTimeWaitRemote> fleet_time_wait_remotes(Server& server, const HostList& hosts, std::int64_t since_ms,
                                                         std::int64_t until_ms, std::size_t top) {
  const auto rows = server.select(fmt::format(
      "SELECT remote_addr, sum(n) AS entries, count(), arraySort(x -> (-x.2, x.1), groupArray((host, n)))[1] AS worst, "
      "worst.1, worst.2 "
      "FROM (SELECT remote_addr, host, count() AS n FROM {} ANY INNER JOIN {} "
      "USING (host, netns_key, snapshot_id) GROUP BY remote_addr, host) "
      "GROUP BY remote_addr ORDER BY entries DESC, remote_addr{}",
      entries_near("host, netns_key, snapshot_id, remote_addr", hosts, since_ms, until_ms),
      later_snapshots_in(hosts, since_ms, until_ms), top ? fmt::format(" LIMIT {}", top) : std::string()));
  std::vector<FleetTimeWaitRemote> out(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    out[i] = {rows[i].at(0), server.number(rows, i, 1), server.number(rows, i, 2), rows[i].at(4),
              server.number(rows, i, 5)};
  }
  return out;
}

std::vector<FleetTimeWaitOwner> fleet_time_wait_owners(Server& server, const HostList& hosts, std::int64_t since_ms,
                                                       std::int64_t until_ms, std::size_t top) {
  // Each entry's owner is its TIME_WAIT span's (carried from the connection's earlier life); the span
  // began at the snapshot that recorded the entry.
  const auto rows = server.select(fmt::format(
      "SELECT host, netns_key, pid, process, count() AS entries FROM (SELECT host, netns_key, span_id FROM "
      "{} ANY INNER JOIN {} USING (host, netns_key, snapshot_id)) ANY LEFT JOIN (SELECT host, "
      "netns_key, span_id, pid, process FROM v_spans WHERE proto = 'tcp' AND state = 'TIME_WAIT' AND first_time_ms >= "
      "{} "
      "AND first_time_ms <= {}{}) USING (host, "
      "netns_key, span_id) GROUP BY host, netns_key, pid, process ORDER BY entries DESC, host, netns_key, pid{}",
      entries_near("host, netns_key, snapshot_id, span_id", hosts, since_ms, until_ms),
      later_snapshots_in(hosts, since_ms, until_ms), since_ms - k_margin_ms, until_ms + k_margin_ms,
      hosts_clause(hosts), top ? fmt::format(" LIMIT {}", top) : std::string()));
  std::vector<FleetTimeWaitOwner> out(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    out[i] = {rows[i].at(0), rows[i].at(1), optional_number(server, rows, i, 2),
              rows[i].at(3) == k_null_field ? std::string() : rows[i].at(3), server.number(rows, i, 4)};
  }
  return out;
}

}  // namespace sockhist::central
