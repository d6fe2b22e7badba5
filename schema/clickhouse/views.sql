-- The central store's public views (ClickHouse), made again by every `sockhist ship`: the SQLite
-- store's views (schema/views.sql) with the same names and columns where ClickHouse 18.16 can
-- give them, plus `netns_key`. `time` is epoch seconds, `time_iso` ISO-8601 UTC with milliseconds.
-- Every view reads only what a snapshot has committed (a namespace's rows up to its newest
-- snapshot), so a push that died half-way never shows.

DROP TABLE IF EXISTS v_snapshots;
DROP TABLE IF EXISTS v_state_counts;
DROP TABLE IF EXISTS v_counters;
DROP TABLE IF EXISTS v_spans;
DROP TABLE IF EXISTS v_socket_values;
DROP TABLE IF EXISTS v_time_wait_entries;
DROP TABLE IF EXISTS v_connection_logs;
DROP TABLE IF EXISTS v_connections;
DROP TABLE IF EXISTS v_connection_aggregates;
DROP TABLE IF EXISTS v_diagnostics;
DROP TABLE IF EXISTS v_newest;

-- Each namespace's newest snapshot that a push committed, and when it was taken.
CREATE VIEW v_newest AS
SELECT host, netns_key, toInt64(max(to_snapshot)) AS newest_id, argMax(to_time_ms, to_snapshot) AS newest_ms,
       argMax(machine_id, to_snapshot) AS machine_id
FROM commits
GROUP BY host, netns_key;

CREATE VIEW v_snapshots AS
SELECT snapshot_id,
       host,
       intDiv(time_ms, 1000) AS time,
       concat(formatDateTime(toDateTime(intDiv(time_ms, 1000)), '%Y-%m-%dT%H:%M:%S', 'UTC'), '.',
              substring(toString(1000 + time_ms % 1000), 2, 3), 'Z') AS time_iso,
       boot_id,
       netns,
       source,
       socket_count,
       time_ms,
       uptime_ms,
       hostname,
       kernel,
       netns_name,
       proc_root,
       owners,
       capture_ms,
       skipped_lines,
       netns_pid,
       netns_initial,
       netns_key,
       machine_id
FROM snapshots
ANY INNER JOIN (SELECT host, netns_key, newest_id FROM v_newest) USING (host, netns_key)
WHERE snapshot_id <= newest_id;

CREATE VIEW v_state_counts AS
SELECT snapshot_id, host, toInt64(time) AS time, toUInt64(splitByChar('@', netns_key)[1]) AS netns,
       proto, state, count, netns_key
FROM state_counts
ANY INNER JOIN (SELECT host, netns_key, newest_id FROM v_newest) USING (host, netns_key)
WHERE snapshot_id <= newest_id;

CREATE VIEW v_counters AS
SELECT snapshot_id, host, toInt64(time) AS time, toUInt64(splitByChar('@', netns_key)[1]) AS netns,
       section, name, value, is_gauge, netns_key
FROM counters
ANY INNER JOIN (SELECT host, netns_key, newest_id FROM v_newest) USING (host, netns_key)
WHERE snapshot_id <= newest_id;

-- Every span: those that ended, and those still seen by the namespace's newest snapshot
-- (last_snapshot_id and last_time_ms NULL, as in the SQLite view).
CREATE VIEW v_spans AS
SELECT span_id, host, toUInt64(splitByChar('@', netns_key)[1]) AS netns, first_snapshot_id,
       toNullable(last_snapshot_id) AS last_snapshot_id, first_time_ms, toNullable(last_time_ms) AS last_time_ms,
       prev_span_id, proto, family, state, local_addr, local_port, remote_addr, remote_port, tx_queue, rx_queue,
       timer AS timer_code, timer_ms, retransmits, probes, uid, inode, cookie, backlog, peer_inode, sock_type,
       unix_flags, pid, process, owner_carried, cmdline, user, netns_key, closed_by, uid_user
FROM spans
ANY INNER JOIN (SELECT host, netns_key, newest_id FROM v_newest) USING (host, netns_key)
WHERE closed_by <= newest_id
UNION ALL
SELECT span_id, host, toUInt64(splitByChar('@', netns_key)[1]) AS netns, first_snapshot_id,
       CAST(NULL AS Nullable(Int64)) AS last_snapshot_id, first_time_ms,
       CAST(NULL AS Nullable(Int64)) AS last_time_ms, prev_span_id, proto, family, state, local_addr, local_port,
       remote_addr, remote_port, tx_queue, rx_queue, timer_code, timer_ms, retransmits, probes, uid, inode, cookie,
       backlog, peer_inode, sock_type, unix_flags, pid, process, owner_carried, cmdline, user, netns_key,
       toInt64(2147483647) AS closed_by, uid_user
FROM (
  SELECT host, netns_key, span_id, any(first_snapshot_id) AS first_snapshot_id, any(first_time_ms) AS first_time_ms,
         any(prev_span_id) AS prev_span_id, any(proto) AS proto, any(family) AS family, any(state) AS state,
         any(local_addr) AS local_addr, any(local_port) AS local_port, any(remote_addr) AS remote_addr,
         any(remote_port) AS remote_port, any(tx_queue) AS tx_queue, any(rx_queue) AS rx_queue,
         any(timer) AS timer_code, any(timer_ms) AS timer_ms, any(retransmits) AS retransmits,
         any(probes) AS probes, any(uid) AS uid, any(inode) AS inode, any(cookie) AS cookie,
         any(backlog) AS backlog, any(peer_inode) AS peer_inode, any(sock_type) AS sock_type,
         any(unix_flags) AS unix_flags, any(pid) AS pid, any(process) AS process,
         any(owner_carried) AS owner_carried, any(cmdline) AS cmdline, any(user) AS user,
         any(uid_user) AS uid_user
  FROM open_spans
  ANY INNER JOIN (SELECT host, netns_key, newest_id FROM v_newest) USING (host, netns_key)
  WHERE snapshot_id <= newest_id
  GROUP BY host, netns_key, span_id
  HAVING sum(sign) > 0
);

CREATE VIEW v_socket_values AS
SELECT span_id, snapshot_id, host, toInt64(time) AS time, tx_queue, rx_queue, timer AS timer_code,
       timer_expires_ms, retransmits, probes, backlog, netns_key
FROM socket_values
ANY INNER JOIN (SELECT host, netns_key, newest_id FROM v_newest) USING (host, netns_key)
WHERE snapshot_id <= newest_id;

CREATE VIEW v_time_wait_entries AS
SELECT span_id, host, toUInt64(splitByChar('@', netns_key)[1]) AS netns, snapshot_id, intDiv(entered_ms, 1000) AS time,
       concat(formatDateTime(toDateTime(intDiv(entered_ms, 1000)), '%Y-%m-%dT%H:%M:%S', 'UTC'), '.',
              substring(toString(1000 + entered_ms % 1000), 2, 3), 'Z') AS time_iso,
       entered_ms, exact, family, local_addr, local_port, remote_addr, remote_port, netns_key, settled_by
FROM time_wait_entries
ANY INNER JOIN (SELECT host, netns_key, newest_id FROM v_newest) USING (host, netns_key)
WHERE settled_by <= newest_id;

CREATE VIEW v_connection_logs AS
SELECT snapshot_id, host, toUInt64(splitByChar('@', netns_key)[1]) AS netns, since_ms, until_ms,
       concat(formatDateTime(toDateTime(intDiv(since_ms, 1000)), '%Y-%m-%dT%H:%M:%S', 'UTC'), '.',
              substring(toString(1000 + since_ms % 1000), 2, 3), 'Z') AS since_iso,
       concat(formatDateTime(toDateTime(intDiv(until_ms, 1000)), '%Y-%m-%dT%H:%M:%S', 'UTC'), '.',
              substring(toString(1000 + until_ms % 1000), 2, 3), 'Z') AS until_iso,
       listening, heard, stored, aggregated, over_bound, overruns, malformed, budget,
       toUInt8(listening AND overruns = 0 AND over_bound = 0 AND malformed = 0) AS complete, netns_key
FROM connection_logs
ANY INNER JOIN (SELECT host, netns_key, newest_id FROM v_newest) USING (host, netns_key)
WHERE snapshot_id <= newest_id;

-- An end is there once the snapshot after its own is (settled_by): the collector links it to the
-- TIME_WAIT span that followed as it writes that one.
CREATE VIEW v_connections AS
SELECT end_id, host, toUInt64(splitByChar('@', netns_key)[1]) AS netns, intDiv(end_ms, 1000) AS time,
       concat(formatDateTime(toDateTime(intDiv(end_ms, 1000)), '%Y-%m-%dT%H:%M:%S', 'UTC'), '.',
              substring(toString(1000 + end_ms % 1000), 2, 3), 'Z') AS time_iso,
       end_ms, proto, family, local_addr, local_port, remote_addr, remote_port, end_state, seen_state,
       entered_time_wait, bytes_acked, bytes_received, bytes_sent, bytes_retrans, segs_out, segs_in, data_segs_out,
       data_segs_in, total_retrans, lost, rtt_us, min_rtt_us, delivery_rate, born_after_ms, born_by_ms,
       end_ms - born_by_ms AS lifetime_min_ms, end_ms - born_after_ms AS lifetime_max_ms, owner_basis, pid, process,
       cmdline, user, owner_reason, cookie, span_id, time_wait_span_id, snapshot_id, netns_key
FROM connection_ends
ANY INNER JOIN (SELECT host, netns_key, newest_id FROM v_newest) USING (host, netns_key)
WHERE settled_by <= newest_id;

CREATE VIEW v_connection_aggregates AS
SELECT snapshot_id, host, toUInt64(splitByChar('@', netns_key)[1]) AS netns, intDiv(second_ms, 1000) AS time,
       formatDateTime(toDateTime(intDiv(second_ms, 1000)), '%Y-%m-%dT%H:%M:%SZ', 'UTC') AS time_iso, second_ms,
       proto, family, local_port, remote_addr, end_state, count, bytes_acked, bytes_received, bytes_sent,
       without_bytes_sent, total_retrans, netns_key
FROM connection_aggregates
ANY INNER JOIN (SELECT host, netns_key, newest_id FROM v_newest) USING (host, netns_key)
WHERE snapshot_id <= newest_id;

CREATE VIEW v_diagnostics AS
SELECT snapshot_id, host, toUInt64(splitByChar('@', netns_key)[1]) AS netns, file, line, message, seq, netns_key
FROM diagnostics
ANY INNER JOIN (SELECT host, netns_key, newest_id FROM v_newest) USING (host, netns_key)
WHERE snapshot_id <= newest_id;
