-- sockhist schema version 10: the connection log.
--
-- A looping collector hears the kernel's announcement of each TCP and UDP socket it destroys
-- (sock_diag's destroy groups, what `ss -E` shows), with the final tcp_info totals, and stores what
-- it heard with the next snapshot of that namespace, in that snapshot's transaction. So connections
-- born and gone between two snapshots are kept too. docs/kernel.md says what the kernel tells and
-- what it does not (no owner, no time of its own).
--
-- Readers read a version 6 to 9 file as it is: it has no connection log, and the analyzer says so.

-- What was heard with each snapshot: one row per snapshot taken while listening was meant to be on.
-- Every announcement read is in exactly one of: a connection_ends row (stored), an aggregate's
-- count (aggregated), or over_bound. Lost ones are not counted, since the kernel does not say how
-- many a buffer overrun lost: overruns > 0 means the log of [since_ms, until_ms] is incomplete.
CREATE TABLE connection_logs (
  snapshot_id INTEGER PRIMARY KEY,         -- snapshots.snapshot_id
  since_ms    INTEGER NOT NULL,            -- heard from (the previous take, or when listening began)
  until_ms    INTEGER NOT NULL,            -- up to (when this snapshot took what was heard)
  listening   INTEGER NOT NULL,            -- 0: nobody listened, or listening broke (see diagnostics)
  heard       INTEGER NOT NULL,            -- announcements read and decoded
  stored      INTEGER NOT NULL,            -- of them, rows in connection_ends
  aggregated  INTEGER NOT NULL,            -- of them, counted in connection_aggregates
  over_bound  INTEGER NOT NULL,            -- of them, counted here only (more aggregates than allowed)
  overruns    INTEGER NOT NULL,            -- receive-buffer overruns (ENOBUFS): announcements lost
  malformed   INTEGER NOT NULL,            -- messages that could not be decoded
  budget      INTEGER NOT NULL             -- how many ends the collector keeps whole per snapshot
);

-- One row per socket end kept whole.
CREATE TABLE connection_ends (
  end_id            INTEGER PRIMARY KEY,
  snapshot_id       INTEGER NOT NULL,      -- the snapshot that stored it (connection_logs)
  time_ms           INTEGER NOT NULL,      -- when the announcement was read: a few ms after the end
  cookie            INTEGER NOT NULL,      -- sock_diag socket cookie (as socket_spans.cookie)
  state_id          INTEGER NOT NULL REFERENCES socket_states(state_id),  -- as the kernel gave it
  family            INTEGER NOT NULL,      -- 4, 6
  local_addr_id     INTEGER NOT NULL REFERENCES addresses(addr_id),
  local_port        INTEGER NOT NULL,
  remote_addr       TEXT NOT NULL,
  remote_port       INTEGER NOT NULL,
  -- tcp_info's lifetime totals (TCP only; NULL for UDP). bytes_acked and bytes_received count a
  -- SYN and a FIN as one byte each; bytes_sent and bytes_retrans are payload (Linux 4.19+).
  bytes_acked       INTEGER,
  bytes_received    INTEGER,
  bytes_sent        INTEGER,
  bytes_retrans     INTEGER,
  segs_out          INTEGER,
  segs_in           INTEGER,
  data_segs_out     INTEGER,
  data_segs_in      INTEGER,
  total_retrans     INTEGER,
  lost              INTEGER,
  rtt_us            INTEGER,
  min_rtt_us        INTEGER,
  delivery_rate     INTEGER,               -- bytes per second, the kernel's last estimate
  -- The socket's last span seen alive (same endpoints and cookie), NULL when no snapshot saw it,
  -- and the TIME_WAIT span that followed it under the same cookie: the end is when it began.
  span_id           INTEGER,
  seen_state_id     INTEGER REFERENCES socket_states(state_id),  -- span_id's state (kept past retention)
  time_wait_span_id INTEGER,
  -- When it was born: after born_after_ms (the namespace's snapshot before the first that saw it,
  -- or the one before its end when none saw it) and by born_by_ms (the first that saw it). NULL
  -- where that is not known (nothing before; the first span removed by retention; never seen).
  born_after_ms     INTEGER,
  born_by_ms        INTEGER,
  -- Its owner, and on what grounds: 'span' (a snapshot saw the socket owned by it), 'listener' (an
  -- inbound connection: the owner of the socket listening on its local port), 'inferred' (the one
  -- process that held its local port in the snapshots around its end), 'none' (owner_reason says
  -- why). The kernel's announcement names no owner.
  process_id        INTEGER REFERENCES processes(process_id),
  owner_basis       TEXT NOT NULL,
  owner_reason      TEXT
);
CREATE INDEX connection_ends_by_snapshot ON connection_ends(snapshot_id, time_ms);
CREATE INDEX connection_ends_by_time_wait ON connection_ends(time_wait_span_id) WHERE time_wait_span_id IS NOT NULL;

-- Ends heard beyond the budget, summed per second, local port, remote address, final state,
-- protocol and family. Byte sums are of tcp_info's figures; without_bytes_sent counts the ends in
-- `count` whose bytes_sent the kernel did not give (before 4.19), which bytes_sent leaves out.
CREATE TABLE connection_aggregates (
  snapshot_id        INTEGER NOT NULL,     -- the snapshot that stored it (connection_logs)
  second_ms          INTEGER NOT NULL,     -- the second (epoch ms) in which they were read
  state_id           INTEGER NOT NULL REFERENCES socket_states(state_id),
  family             INTEGER NOT NULL,
  local_port         INTEGER NOT NULL,
  remote_addr        TEXT NOT NULL,
  count              INTEGER NOT NULL,
  bytes_acked        INTEGER NOT NULL,
  bytes_received     INTEGER NOT NULL,
  bytes_sent         INTEGER NOT NULL,
  without_bytes_sent INTEGER NOT NULL,
  total_retrans      INTEGER NOT NULL
);
CREATE INDEX connection_aggregates_by_snapshot ON connection_aggregates(snapshot_id, second_ms);

-- The public views of the connection log (schema/README.md). Made here rather than in views.sql,
-- which every version from 6 shares, so that older files keep the views they were made with.
CREATE VIEW v_connection_logs AS
SELECT l.snapshot_id,
       h.name AS host,
       n.inode AS netns,
       l.since_ms,
       l.until_ms,
       strftime('%Y-%m-%dT%H:%M:%fZ', l.since_ms / 1000.0, 'unixepoch') AS since_iso,
       strftime('%Y-%m-%dT%H:%M:%fZ', l.until_ms / 1000.0, 'unixepoch') AS until_iso,
       l.listening,
       l.heard,
       l.stored,
       l.aggregated,
       l.over_bound,
       l.overruns,
       l.malformed,
       l.budget,
       -- 1 when every socket end of [since_ms, until_ms] is in connection_ends or an aggregate
       l.listening AND l.overruns = 0 AND l.over_bound = 0 AND l.malformed = 0 AS complete
FROM connection_logs l
JOIN snapshots s ON s.snapshot_id = l.snapshot_id
JOIN netns n ON n.netns_id = s.netns_id
JOIN hosts h ON h.host_id = n.host_id;

CREATE VIEW v_connections AS
SELECT e.end_id,
       h.name AS host,
       n.inode AS netns,
       e.time_ms / 1000 AS time,
       strftime('%Y-%m-%dT%H:%M:%fZ', e.time_ms / 1000.0, 'unixepoch') AS time_iso,
       e.time_ms AS end_ms,
       st.proto,
       e.family,
       a.addr AS local_addr,
       e.local_port,
       e.remote_addr,
       e.remote_port,
       st.state AS end_state,
       ls.state AS seen_state,
       e.time_wait_span_id IS NOT NULL AS entered_time_wait,
       e.bytes_acked,
       e.bytes_received,
       e.bytes_sent,
       e.bytes_retrans,
       e.segs_out,
       e.segs_in,
       e.data_segs_out,
       e.data_segs_in,
       e.total_retrans,
       e.lost,
       e.rtt_us,
       e.min_rtt_us,
       e.delivery_rate,
       e.born_after_ms,
       e.born_by_ms,
       e.time_ms - e.born_by_ms AS lifetime_min_ms,
       e.time_ms - e.born_after_ms AS lifetime_max_ms,
       e.owner_basis,
       p.pid,
       p.comm AS process,
       p.cmdline,
       p.user,
       e.owner_reason,
       e.cookie,
       e.span_id,
       e.time_wait_span_id,
       e.snapshot_id,
       e.process_id
FROM connection_ends e
JOIN snapshots s ON s.snapshot_id = e.snapshot_id
JOIN netns n ON n.netns_id = s.netns_id
JOIN hosts h ON h.host_id = n.host_id
JOIN socket_states st ON st.state_id = e.state_id
JOIN addresses a ON a.addr_id = e.local_addr_id
LEFT JOIN socket_states ls ON ls.state_id = e.seen_state_id
LEFT JOIN processes p ON p.process_id = e.process_id;

CREATE VIEW v_connection_aggregates AS
SELECT g.snapshot_id,
       h.name AS host,
       n.inode AS netns,
       g.second_ms / 1000 AS time,
       strftime('%Y-%m-%dT%H:%M:%SZ', g.second_ms / 1000, 'unixepoch') AS time_iso,
       g.second_ms,
       st.proto,
       g.family,
       g.local_port,
       g.remote_addr,
       st.state AS end_state,
       g.count,
       g.bytes_acked,
       g.bytes_received,
       g.bytes_sent,
       g.without_bytes_sent,
       g.total_retrans
FROM connection_aggregates g
JOIN snapshots s ON s.snapshot_id = g.snapshot_id
JOIN netns n ON n.netns_id = s.netns_id
JOIN hosts h ON h.host_id = n.host_id
JOIN socket_states st ON st.state_id = g.state_id;
