-- sockhist schema version 1. Tables may change between versions; the views in views.sql are the
-- stable interface. Times are integer epoch milliseconds (UTC).

CREATE TABLE hosts (
  host_id    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL UNIQUE,        -- --host, or the kernel's hostname
  machine_id TEXT                         -- /etc/machine-id when known
);

CREATE TABLE netns (
  netns_id INTEGER PRIMARY KEY,
  host_id  INTEGER NOT NULL REFERENCES hosts(host_id),
  inode    INTEGER NOT NULL,              -- /proc/PID/ns/net inode; 0 when unknown (a copied tree)
  name     TEXT,                          -- /run/netns name when known
  UNIQUE (host_id, inode)
);

CREATE TABLE snapshots (
  snapshot_id        INTEGER PRIMARY KEY,
  netns_id           INTEGER NOT NULL REFERENCES netns(netns_id),
  time_ms            INTEGER NOT NULL,    -- wall clock when the capture started
  boot_id            TEXT,                -- /proc/sys/kernel/random/boot_id
  uptime_ms          INTEGER,             -- time since boot (CLOCK_BOOTTIME)
  hostname           TEXT,                -- what the kernel called itself
  kernel             TEXT,                -- kernel release
  user_hz            INTEGER NOT NULL,    -- USER_HZ the timers were converted with
  source             TEXT NOT NULL,       -- 'proc' or 'netlink'
  proc_root          TEXT,                -- the /proc root read; NULL for the live /proc
  capture_ms         INTEGER NOT NULL,    -- how long the capture took
  tcp_fin_timeout    INTEGER,
  tcp_max_tw_buckets INTEGER,
  port_range_low     INTEGER,             -- net.ipv4.ip_local_port_range
  port_range_high    INTEGER,
  tcp_tw_reuse       INTEGER,
  somaxconn          INTEGER,
  owners             TEXT NOT NULL,       -- 'complete', 'partial' (some fds unreadable) or 'skipped'
  socket_count       INTEGER NOT NULL,
  spans_opened       INTEGER NOT NULL,
  spans_closed       INTEGER NOT NULL,
  counter_rows       INTEGER NOT NULL,
  skipped_lines      INTEGER NOT NULL,    -- malformed /proc lines skipped (see diagnostics)
  collector_version  TEXT NOT NULL
);
CREATE INDEX snapshots_by_netns ON snapshots(netns_id, snapshot_id);
CREATE INDEX snapshots_by_time ON snapshots(time_ms);

CREATE TABLE diagnostics (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(snapshot_id) ON DELETE CASCADE,
  file        TEXT NOT NULL,
  line        INTEGER NOT NULL,             -- 0: about the whole file
  message     TEXT NOT NULL
);
CREATE INDEX diagnostics_by_snapshot ON diagnostics(snapshot_id);

CREATE TABLE processes (
  process_id  INTEGER PRIMARY KEY,
  host_id     INTEGER NOT NULL REFERENCES hosts(host_id),
  boot_id     TEXT NOT NULL,               -- '' when unknown
  pid         INTEGER NOT NULL,
  start_ticks INTEGER NOT NULL,            -- /proc/PID/stat starttime, clock ticks after boot
  comm        TEXT NOT NULL,
  cmdline     TEXT,                        -- NULL when not stored (--no-cmdline) or unreadable
  uid         INTEGER NOT NULL,
  user        TEXT,
  UNIQUE (host_id, boot_id, pid, start_ticks)
);

-- One row per socket per unbroken stretch of snapshots in which it was seen in one state with one
-- owner. The values (queues, timer, retransmits) are those observed in the first snapshot.
CREATE TABLE socket_spans (
  span_id           INTEGER PRIMARY KEY,
  netns_id          INTEGER NOT NULL REFERENCES netns(netns_id),
  first_snapshot_id INTEGER NOT NULL,      -- may name a snapshot removed by retention
  last_snapshot_id  INTEGER,               -- NULL while the socket is still seen
  first_time_ms     INTEGER NOT NULL,      -- time of the first snapshot, kept past retention
  prev_span_id      INTEGER,               -- the same socket (or connection) in its previous state
  proto             TEXT NOT NULL,         -- 'tcp', 'udp', 'unix'
  family            INTEGER,               -- 4, 6; NULL for unix
  state             TEXT NOT NULL,         -- netstat's names
  local_addr        TEXT NOT NULL,         -- as netstat -n prints it; the path for unix
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
CREATE INDEX socket_spans_open ON socket_spans(netns_id) WHERE last_snapshot_id IS NULL;
-- Covers the membership test of v_snapshot_sockets, so that only member spans are read.
CREATE INDEX socket_spans_by_first ON socket_spans(netns_id, first_snapshot_id, last_snapshot_id);
CREATE INDEX socket_spans_by_last ON socket_spans(last_snapshot_id) WHERE last_snapshot_id IS NOT NULL;
CREATE INDEX socket_spans_by_process ON socket_spans(process_id) WHERE process_id IS NOT NULL;

CREATE TABLE state_counts (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(snapshot_id) ON DELETE CASCADE,
  proto       TEXT NOT NULL,
  state       TEXT NOT NULL,
  count       INTEGER NOT NULL,
  PRIMARY KEY (snapshot_id, proto, state)
) WITHOUT ROWID;

CREATE TABLE counter_names (
  counter_id INTEGER PRIMARY KEY,
  section    TEXT NOT NULL,
  name       TEXT NOT NULL,
  is_gauge   INTEGER NOT NULL,
  UNIQUE (section, name)
);

-- A counter's value is stored when it differs from the previous snapshot of the same namespace
-- (and in full on the first snapshot and after a reboot); NULL marks a counter that disappeared.
CREATE TABLE counter_values (
  netns_id    INTEGER NOT NULL,
  counter_id  INTEGER NOT NULL,
  snapshot_id INTEGER NOT NULL,
  value       INTEGER,
  PRIMARY KEY (netns_id, counter_id, snapshot_id)
) WITHOUT ROWID;

CREATE TABLE users (
  host_id INTEGER NOT NULL REFERENCES hosts(host_id),
  uid     INTEGER NOT NULL,
  name    TEXT NOT NULL,
  PRIMARY KEY (host_id, uid)
) WITHOUT ROWID;
