// The central store's views against the SQLite store's, for the tests that ship (ship_test,
// ship_live_test): snapshots, state counts, counters, spans, settled TIME_WAIT entries and each
// snapshot's socket list must read back equal, row for row.
#pragma once

#include <gtest/gtest.h>

#include <functional>

#include <fmt/format.h>

#include "clickhouse.hpp"
#include "sockhist/central.hpp"

namespace sockhist::test {

// The columns the SQLite views and the central ones share, per view.
inline const char* const k_snapshot_columns =
    "snapshot_id, host, time, time_iso, boot_id, netns, source, socket_count, time_ms, uptime_ms, hostname, kernel, "
    "netns_name, proc_root, owners, capture_ms, skipped_lines, netns_pid, netns_initial";
inline const char* const k_span_columns =
    "span_id, host, netns, first_snapshot_id, last_snapshot_id, first_time_ms, last_time_ms, prev_span_id, proto, "
    "family, state, local_addr, local_port, remote_addr, remote_port, tx_queue, rx_queue, timer_code, timer_ms, "
    "retransmits, probes, uid, inode, cookie, backlog, peer_inode, sock_type, unix_flags, pid, process, owner_carried";
inline const char* const k_socket_columns =
    "span_id, proto, family, state, local_addr, local_port, remote_addr, remote_port, tx_queue, rx_queue, timer_code, "
    "timer_ms, retransmits, probes, backlog, uid, inode, pid, process, cmdline, user, cookie, owner_carried, "
    "sock_type, unix_flags, peer_inode, first_time_ms, values_snapshot_id";

inline const char* const k_connection_columns =
    "end_id, host, netns, time, time_iso, end_ms, proto, family, local_addr, local_port, remote_addr, remote_port, "
    "end_state, seen_state, entered_time_wait, bytes_acked, bytes_received, bytes_sent, bytes_retrans, segs_out, "
    "segs_in, data_segs_out, data_segs_in, total_retrans, lost, rtt_us, min_rtt_us, delivery_rate, born_after_ms, "
    "born_by_ms, lifetime_min_ms, lifetime_max_ms, owner_basis, pid, process, cmdline, user, owner_reason, cookie, "
    "span_id, time_wait_span_id, snapshot_id";

// Every view of `host` read back through `central` (a query of the central store) equals the
// SQLite one of `db`, and so does the socket list of each snapshot (`every_list` false: of the
// first, a middle and the newest one); returns how many snapshots were compared.
inline std::size_t expect_same_views(const std::function<Rows(const std::string&)>& central, const std::string& db,
                                     const std::string& host, bool every_list = true) {
  const auto h = central::quote(host);
  const auto snapshots = sqlite_rows(
      db, fmt::format("SELECT {} FROM v_snapshots WHERE host = ? ORDER BY snapshot_id", k_snapshot_columns), {host});
  EXPECT_EQ(
      central(fmt::format("SELECT {} FROM v_snapshots WHERE host = {} ORDER BY snapshot_id", k_snapshot_columns, h)),
      snapshots)
      << host;
  EXPECT_EQ(central(fmt::format("SELECT snapshot_id, host, time, netns, proto, state, count FROM v_state_counts "
                                "WHERE host = {} ORDER BY snapshot_id, proto, state",
                                h)),
            sqlite_rows(db,
                        "SELECT snapshot_id, host, time, netns, proto, state, count FROM v_state_counts "
                        "WHERE host = ? ORDER BY snapshot_id, proto, state",
                        {host}))
      << host;
  EXPECT_EQ(central(fmt::format("SELECT snapshot_id, host, time, netns, section, name, value, is_gauge FROM "
                                "v_counters WHERE host = {} ORDER BY snapshot_id, section, name",
                                h)),
            sqlite_rows(db,
                        "SELECT snapshot_id, host, time, netns, section, name, value, is_gauge FROM v_counters "
                        "WHERE host = ? ORDER BY snapshot_id, section, name",
                        {host}))
      << host;
  EXPECT_EQ(
      central(fmt::format("SELECT {} FROM v_spans WHERE host = {} ORDER BY span_id", k_span_columns, h)),
      sqlite_rows(db, fmt::format("SELECT {} FROM v_spans WHERE host = ? ORDER BY span_id", k_span_columns), {host}))
      << host;
  // An entry is sent once the snapshot after its first exists (the collector may date it again
  // as it writes that one): all but those of each namespace's newest snapshot.
  const char* entries =
      "span_id, host, netns, snapshot_id, time, time_iso, entered_ms, exact, family, local_addr, "
      "local_port, remote_addr, remote_port";
  EXPECT_EQ(central(fmt::format("SELECT {} FROM v_time_wait_entries WHERE host = {} ORDER BY span_id", entries, h)),
            sqlite_rows(db,
                        fmt::format("SELECT {} FROM v_time_wait_entries e WHERE host = ? AND snapshot_id < (SELECT "
                                    "max(snapshot_id) FROM v_snapshots s WHERE s.host = e.host AND s.netns = "
                                    "e.netns) ORDER BY span_id",
                                    entries),
                        {host}))
      << host;
  // The diagnostics, in the order the collector wrote them.
  EXPECT_EQ(central(fmt::format("SELECT snapshot_id, host, netns, file, line, message FROM v_diagnostics WHERE host = "
                                "{} ORDER BY snapshot_id, seq",
                                h)),
            sqlite_rows(db,
                        "SELECT d.snapshot_id, s.host, s.netns, d.file, d.line, d.message FROM diagnostics d JOIN "
                        "v_snapshots s ON s.snapshot_id = d.snapshot_id WHERE s.host = ? ORDER BY d.snapshot_id, "
                        "d.rowid",
                        {host}))
      << host;
  // The connection log, where the file has one: every take and aggregate, and every end but those
  // of each namespace's newest snapshot (sent once the next one links them to their TIME_WAIT).
  if (!sqlite_rows(db, "SELECT 1 FROM sqlite_master WHERE name = 'connection_logs'").empty()) {
    const char* logs =
        "snapshot_id, host, netns, since_ms, until_ms, since_iso, until_iso, listening, heard, stored, aggregated, "
        "over_bound, overruns, malformed, budget, complete";
    EXPECT_EQ(central(fmt::format("SELECT {} FROM v_connection_logs WHERE host = {} ORDER BY snapshot_id", logs, h)),
              sqlite_rows(db, fmt::format("SELECT {} FROM v_connection_logs WHERE host = ? ORDER BY snapshot_id", logs),
                          {host}))
        << host;
    EXPECT_EQ(
        central(fmt::format("SELECT {} FROM v_connections WHERE host = {} ORDER BY end_id", k_connection_columns, h)),
        sqlite_rows(db,
                    fmt::format("SELECT {} FROM v_connections c WHERE host = ? AND snapshot_id < (SELECT "
                                "max(snapshot_id) FROM v_snapshots s WHERE s.host = c.host AND s.netns = "
                                "c.netns) ORDER BY end_id",
                                k_connection_columns),
                    {host}))
        << host;
    const char* aggregates =
        "snapshot_id, host, netns, time, time_iso, second_ms, proto, family, local_port, remote_addr, end_state, "
        "count, bytes_acked, bytes_received, bytes_sent, without_bytes_sent, total_retrans";
    const char* order = "ORDER BY snapshot_id, second_ms, proto, family, local_port, remote_addr, end_state";
    EXPECT_EQ(
        central(fmt::format("SELECT {} FROM v_connection_aggregates WHERE host = {} {}", aggregates, h, order)),
        sqlite_rows(db, fmt::format("SELECT {} FROM v_connection_aggregates WHERE host = ? {}", aggregates, order),
                    {host}))
        << host;
  }
  // Each snapshot's socket list, as `show` reads it.
  const auto keys =
      central(fmt::format("SELECT snapshot_id, netns_key FROM v_snapshots WHERE host = {} ORDER BY snapshot_id", h));
  EXPECT_EQ(keys.size(), snapshots.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (!every_list && i != 0 && i != keys.size() / 2 && i + 1 != keys.size()) {
      continue;
    }
    const auto& row = keys[i];
    const auto id = std::stoll(row.at(0));
    EXPECT_EQ(central(central::socket_list_sql(host, row.at(1), id)),
              sqlite_rows(db, fmt::format("SELECT {}, (SELECT u.name FROM users u JOIN hosts h ON h.host_id = "
                                          "u.host_id WHERE h.name = v.host AND u.uid = v.uid) FROM "
                                          "v_snapshot_sockets v WHERE snapshot_id = {} ORDER BY span_id",
                                          k_socket_columns, id)))
        << host << " snapshot " << id;
  }
  return snapshots.size();
}

}  // namespace sockhist::test
