-- The stable interface for SQL users (sqlite3, Grafana, Datasette). Recreated on every migration.
-- These names and columns may only grow. `time` is epoch seconds (Grafana's SQLite data source),
-- `time_iso` ISO-8601 UTC.

DROP VIEW IF EXISTS v_snapshots;
DROP VIEW IF EXISTS v_snapshot_sockets;
DROP VIEW IF EXISTS v_state_counts;
DROP VIEW IF EXISTS v_counters;
DROP VIEW IF EXISTS v_spans;

CREATE VIEW v_snapshots AS
SELECT s.snapshot_id,
       h.name AS host,
       s.time_ms / 1000 AS time,
       strftime('%Y-%m-%dT%H:%M:%fZ', s.time_ms / 1000.0, 'unixepoch') AS time_iso,
       s.boot_id,
       n.inode AS netns,
       s.source,
       s.socket_count,
       s.time_ms,
       s.uptime_ms,
       s.hostname,
       s.kernel,
       n.name AS netns_name,
       s.proc_root,
       s.owners,
       s.capture_ms,
       s.skipped_lines,
       s.netns_pid,
       n.is_initial AS netns_initial
FROM snapshots s
JOIN netns n ON n.netns_id = s.netns_id
JOIN hosts h ON h.host_id = n.host_id;

-- Every span (one socket in one state with one owner over a run of snapshots), with names.
CREATE VIEW v_spans AS
SELECT sp.span_id,
       h.name AS host,
       n.inode AS netns,
       sp.first_snapshot_id,
       CASE WHEN sp.last_snapshot_id = 2147483647 THEN NULL ELSE sp.last_snapshot_id END AS last_snapshot_id,
       coalesce(sp.first_time_ms, f.time_ms) AS first_time_ms,
       l.time_ms AS last_time_ms,
       sp.prev_span_id,
       st.proto,
       sp.family,
       st.state,
       a.addr AS local_addr,
       sp.local_port,
       sp.remote_addr,
       sp.remote_port,
       sp.tx_queue,
       sp.rx_queue,
       sp.timer AS timer_code,
       sp.timer_ms,
       sp.retransmits,
       sp.probes,
       sp.uid,
       sp.inode,
       sp.cookie,
       sp.backlog,
       sp.peer_inode,
       sp.sock_type,
       sp.unix_flags,
       sp.process_id,
       p.pid,
       p.comm AS process,
       sp.owner_carried
FROM socket_spans sp
JOIN netns n ON n.netns_id = sp.netns_id
JOIN hosts h ON h.host_id = n.host_id
JOIN socket_states st ON st.state_id = sp.state_id
JOIN addresses a ON a.addr_id = sp.local_addr_id
LEFT JOIN snapshots f ON f.snapshot_id = sp.first_snapshot_id
LEFT JOIN snapshots l ON l.snapshot_id = sp.last_snapshot_id
LEFT JOIN processes p ON p.process_id = sp.process_id;

-- Each snapshot's sockets with that snapshot's own values: a span's Recv-Q, Send-Q, timer,
-- retransmits, probes and backlog are those of its newest socket_values row at or before the
-- snapshot, else the span's first ones (schema/005_socket_values.sql).
CREATE VIEW v_snapshot_sockets AS
SELECT s.snapshot_id,
       h.name AS host,
       s.time_ms / 1000 AS time,
       n.inode AS netns,
       st.proto,
       sp.family,
       st.state,
       a.addr AS local_addr,
       sp.local_port,
       sp.remote_addr,
       sp.remote_port,
       coalesce(v.tx_queue, sp.tx_queue) AS tx_queue,
       coalesce(v.rx_queue, sp.rx_queue) AS rx_queue,
       CASE coalesce(v.timer, sp.timer) WHEN 0 THEN 'off' WHEN 1 THEN 'on' WHEN 2 THEN 'keepalive'
                     WHEN 3 THEN 'timewait' WHEN 4 THEN 'probe' WHEN 5 THEN 'delack' END AS timer,
       -- A running timer counts down: later snapshots show the time remaining projected from the
       -- last value stored, which the writer keeps within 250 ms of the kernel's.
       CASE WHEN v.span_id IS NOT NULL THEN
              CASE WHEN v.timer = 0 THEN 0 ELSE max(0, v.timer_expires_ms - s.time_ms) END
            WHEN sp.timer = 0 THEN sp.timer_ms
            ELSE max(0, sp.timer_ms - (s.time_ms - coalesce(sp.first_time_ms, f.time_ms))) END AS timer_ms,
       coalesce(v.retransmits, sp.retransmits) AS retransmits,
       sp.uid,
       sp.inode,
       p.pid,
       p.comm AS process,
       sp.span_id,
       sp.owner_carried,
       p.cmdline,
       coalesce(p.user, u.name) AS user,
       sp.cookie,
       sp.sock_type,
       coalesce(sp.first_time_ms, f.time_ms) AS first_time_ms,
       coalesce(v.probes, sp.probes) AS probes,
       sp.unix_flags,
       CASE WHEN v.span_id IS NOT NULL THEN v.backlog ELSE sp.backlog END AS backlog,
       sp.peer_inode,
       coalesce(v.timer, sp.timer) AS timer_code,
       p.process_id,
       coalesce(v.snapshot_id, sp.first_snapshot_id) AS values_snapshot_id
FROM snapshots s
JOIN netns n ON n.netns_id = s.netns_id
JOIN hosts h ON h.host_id = n.host_id
JOIN socket_spans sp ON sp.netns_id = s.netns_id
                    AND sp.first_snapshot_id <= s.snapshot_id
                    AND sp.last_snapshot_id >= s.snapshot_id
JOIN socket_states st ON st.state_id = sp.state_id
JOIN addresses a ON a.addr_id = sp.local_addr_id
LEFT JOIN snapshots f ON f.snapshot_id = sp.first_snapshot_id
LEFT JOIN socket_values v ON v.span_id = sp.span_id
                         AND v.snapshot_id = (SELECT max(x.snapshot_id) FROM socket_values x
                                              WHERE x.span_id = sp.span_id AND x.snapshot_id <= s.snapshot_id)
LEFT JOIN processes p ON p.process_id = sp.process_id
LEFT JOIN users u ON u.host_id = n.host_id AND u.uid = sp.uid;

CREATE VIEW v_state_counts AS
SELECT s.snapshot_id,
       h.name AS host,
       s.time_ms / 1000 AS time,
       n.inode AS netns,
       c.proto,
       c.state,
       c.count
FROM state_counts c
JOIN snapshots s ON s.snapshot_id = c.snapshot_id
JOIN netns n ON n.netns_id = s.netns_id
JOIN hosts h ON h.host_id = n.host_id;

CREATE VIEW v_counters AS
SELECT s.snapshot_id,
       h.name AS host,
       s.time_ms / 1000 AS time,
       n.inode AS netns,
       cn.section,
       cn.name,
       cv.value,
       cn.is_gauge
FROM snapshots s
JOIN netns n ON n.netns_id = s.netns_id
JOIN hosts h ON h.host_id = n.host_id
-- CROSS JOIN fixes the order: each counter name is then one primary-key seek, never a scan of the
-- namespace's whole counter history.
CROSS JOIN counter_names cn
CROSS JOIN counter_values cv ON cv.netns_id = s.netns_id
                      AND cv.counter_id = cn.counter_id
                      AND cv.snapshot_id = (SELECT max(x.snapshot_id) FROM counter_values x
                                            WHERE x.netns_id = s.netns_id
                                              AND x.counter_id = cn.counter_id
                                              AND x.snapshot_id <= s.snapshot_id)
WHERE cv.value IS NOT NULL;
