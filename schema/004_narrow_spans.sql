-- sockhist schema version 4: a narrower span row, so that a week of a busy host fits in a few
-- hundred bytes per minute.
--
-- A week at one snapshot a minute of a 10,000-socket host with 1 % churn holds two million spans;
-- in version 3 each cost about 150 bytes. This version:
--  * names each (proto, state) pair once, in socket_states, and each local address or UNIX path
--    once, in addresses (a host has few of either; peers are many, so remote_addr stays text);
--  * stores first_time_ms only once retention has removed the span's first snapshot (before, the
--    snapshot's own time_ms says it);
--  * marks an open span with last_snapshot_id = 2147483647 instead of NULL. Closing a span then
--    never makes its row longer, so closing old spans no longer splits full pages (a sixth of
--    every page was left empty);
--  * drops socket_spans_by_last: retention finds ended spans through socket_spans_by_first.
-- v_spans shows every span with names and texts, and last_snapshot_id NULL while open, as the
-- table did before. Views are dropped here and recreated after every migration.
DROP VIEW IF EXISTS v_snapshots;
DROP VIEW IF EXISTS v_snapshot_sockets;
DROP VIEW IF EXISTS v_state_counts;
DROP VIEW IF EXISTS v_counters;
DROP VIEW IF EXISTS v_spans;

CREATE TABLE socket_states (
  state_id INTEGER PRIMARY KEY,
  proto    TEXT NOT NULL,                  -- 'tcp', 'udp', 'unix'
  state    TEXT NOT NULL,                  -- netstat's names
  UNIQUE (proto, state)
);

CREATE TABLE addresses (
  addr_id INTEGER PRIMARY KEY,
  addr    TEXT NOT NULL UNIQUE             -- as netstat -n prints it; the path for unix
);

INSERT INTO socket_states(proto, state) SELECT DISTINCT proto, state FROM socket_spans ORDER BY proto, state;
INSERT INTO addresses(addr) SELECT DISTINCT local_addr FROM socket_spans ORDER BY local_addr;

CREATE TABLE socket_spans_v4 (
  span_id           INTEGER PRIMARY KEY,
  netns_id          INTEGER NOT NULL REFERENCES netns(netns_id),
  first_snapshot_id INTEGER NOT NULL,      -- may name a snapshot removed by retention
  last_snapshot_id  INTEGER NOT NULL DEFAULT 2147483647,  -- 2147483647 while the socket is still seen
  first_time_ms     INTEGER,               -- NULL while first_snapshot_id exists (its time_ms)
  prev_span_id      INTEGER,               -- the same socket (or connection) in its previous state
  state_id          INTEGER NOT NULL REFERENCES socket_states(state_id),
  family            INTEGER,               -- 4, 6; NULL for unix
  local_addr_id     INTEGER NOT NULL REFERENCES addresses(addr_id),
  local_port        INTEGER,
  remote_addr       TEXT,
  remote_port       INTEGER,
  tx_queue          INTEGER NOT NULL,
  rx_queue          INTEGER NOT NULL,
  timer             INTEGER NOT NULL,      -- 0 off, 1 on, 2 keepalive, 3 timewait, 4 probe, 5 delack
  timer_ms          INTEGER NOT NULL,      -- time remaining when first observed
  retransmits       INTEGER NOT NULL,
  probes            INTEGER NOT NULL,
  uid               INTEGER NOT NULL,
  inode             INTEGER NOT NULL,      -- 0 for TIME_WAIT, request and orphaned sockets
  cookie            INTEGER,               -- sock_diag socket cookie
  backlog           INTEGER,               -- sock_diag: a listener's backlog limit
  peer_inode        INTEGER,               -- UNIX_DIAG: the peer's inode
  sock_type         TEXT,                  -- unix: stream, dgram, seqpacket
  unix_flags        INTEGER,
  process_id        INTEGER REFERENCES processes(process_id),
  owner_carried     INTEGER NOT NULL DEFAULT 0   -- 1: owner carried forward from prev_span_id's chain
);

INSERT INTO socket_spans_v4
SELECT sp.span_id, sp.netns_id, sp.first_snapshot_id, coalesce(sp.last_snapshot_id, 2147483647),
       CASE WHEN EXISTS (SELECT 1 FROM snapshots s WHERE s.snapshot_id = sp.first_snapshot_id) THEN NULL
            ELSE sp.first_time_ms END,
       sp.prev_span_id, st.state_id, sp.family, a.addr_id, sp.local_port, sp.remote_addr, sp.remote_port,
       sp.tx_queue, sp.rx_queue, sp.timer, sp.timer_ms, sp.retransmits, sp.probes, sp.uid, sp.inode, sp.cookie,
       sp.backlog, sp.peer_inode, sp.sock_type, sp.unix_flags, sp.process_id, sp.owner_carried
FROM socket_spans sp
JOIN socket_states st ON st.proto = sp.proto AND st.state = sp.state
JOIN addresses a ON a.addr = sp.local_addr
ORDER BY sp.span_id;

DROP TABLE socket_spans;
ALTER TABLE socket_spans_v4 RENAME TO socket_spans;

CREATE INDEX socket_spans_open ON socket_spans(netns_id) WHERE last_snapshot_id = 2147483647;
-- Covers the membership test of v_snapshot_sockets (and retention's search for ended spans), and
-- with state_id, a trend of one state reads only that state's rows.
CREATE INDEX socket_spans_by_first ON socket_spans(netns_id, first_snapshot_id, last_snapshot_id, state_id);
