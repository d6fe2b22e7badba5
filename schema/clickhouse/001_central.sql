-- sockhist central schema version 1 (ClickHouse): many hosts' histories, shipped by `sockhist ship`.
--
-- Accepted by ClickHouse 18.16 (Debian 12's) and later: MergeTree and CollapsingMergeTree with
-- the PARTITION BY / ORDER BY syntax, no DateTime64, no LowCardinality, no TTL, no ASOF JOIN.
-- `sockhist ship` runs these statements (each one alone, in order) in the database it is given.
--
-- Every row carries its host (hosts.name in the source file) and `netns_key`, the namespace as the
-- central store names it: '<inode>@<epoch ms of its first snapshot shipped>', fixed when the
-- namespace is first shipped, so that a reused inode is a new key (schema/README.md, netns).
-- `snapshot_id` and `span_id` are the source file's own numbers; one (host, netns_key) is fed by
-- one source file only, which `ship` checks before it sends anything.
--
-- Exact without FINAL and without waiting for a merge: every table but open_spans is written once
-- per row, in rounds of snapshots that follow one another, and each round ends with one row in
-- `commits`, a single-row INSERT that lands whole or not at all. The views read a namespace's rows
-- up to its newest committed snapshot only. What a push killed mid-round left beyond it (an
-- INSERT whose body was cut at a row boundary is stored as far as it got) is hidden, and is the
-- first thing the next push removes (ALTER TABLE ... DELETE, waited for) before it sends it again.

CREATE TABLE IF NOT EXISTS schema_version (
  version UInt32,
  applied DateTime
) ENGINE = MergeTree ORDER BY version;

-- The views' text each sockhist made them from (views.sql, by its FNV-1a hash): a shipper remakes
-- the views only for a text not made before, so that readers do not meet them half-made at every push.
CREATE TABLE IF NOT EXISTS views_made (
  hash    String,
  made    DateTime
) ENGINE = MergeTree ORDER BY made;

-- The commit record: one row per round of a push, naming the namespace's newest snapshot then.
-- Merges keep the newest row of each namespace; readers take max(to_snapshot), exact before.
CREATE TABLE IF NOT EXISTS commits (
  host        String,
  netns_key   String,
  to_snapshot UInt64,
  to_time_ms  Int64,
  boot_id     Nullable(String),
  netns       UInt64,
  machine_id  Nullable(String),
  committed   DateTime
) ENGINE = ReplacingMergeTree(to_snapshot) ORDER BY (host, netns_key);

-- One row per snapshot.
CREATE TABLE IF NOT EXISTS snapshots (
  host               String,
  netns_key          String,
  snapshot_id        Int64,
  time               DateTime,            -- time_ms / 1000, the partition key
  time_ms            Int64,
  netns              UInt64,              -- the namespace's inode (0: unknown)
  netns_name         Nullable(String),
  netns_initial      UInt8,
  machine_id         Nullable(String),
  boot_id            Nullable(String),
  uptime_ms          Nullable(Int64),
  hostname           Nullable(String),
  kernel             Nullable(String),
  user_hz            Int64,
  source             String,
  proc_root          Nullable(String),
  capture_ms         Int64,
  tcp_fin_timeout    Nullable(Int64),
  tcp_max_tw_buckets Nullable(Int64),
  port_range_low     Nullable(Int64),
  port_range_high    Nullable(Int64),
  tcp_tw_reuse       Nullable(Int64),
  somaxconn          Nullable(Int64),
  owners             String,
  socket_count       Int64,
  skipped_lines      Int64,
  collector_version  String,
  netns_pid          Nullable(Int64),
  netns_cookie       Nullable(Int64),
  shipped            DateTime             -- when `ship` sent it
) ENGINE = MergeTree PARTITION BY toYYYYMM(time) ORDER BY (host, netns_key, snapshot_id);

CREATE TABLE IF NOT EXISTS state_counts (
  host        String,
  netns_key   String,
  snapshot_id Int64,
  time        DateTime,
  proto       String,
  state       String,
  count       Int64
) ENGINE = MergeTree PARTITION BY toYYYYMM(time) ORDER BY (host, netns_key, snapshot_id, proto, state);

-- Every counter's value in every snapshot that had it (the source stores a value when it changes;
-- `ship` sends each snapshot's whole set, which ClickHouse compresses to little).
CREATE TABLE IF NOT EXISTS counters (
  host        String,
  netns_key   String,
  snapshot_id Int64,
  time        DateTime,
  section     String,
  name        String,
  value       Int64,
  is_gauge    UInt8
) ENGINE = MergeTree PARTITION BY toYYYYMM(time) ORDER BY (host, netns_key, snapshot_id, section, name);

-- Spans that have ended: one socket in one state with one owner, from its first snapshot to its
-- last; `closed_by` is the namespace's next snapshot, the one that no longer saw it. Never changed.
CREATE TABLE IF NOT EXISTS spans (
  host              String,
  netns_key         String,
  span_id           Int64,
  closed_by         Int64,
  first_snapshot_id Int64,
  last_snapshot_id  Int64,
  first_time_ms     Int64,
  last_time_ms      Nullable(Int64),      -- NULL where retention removed the last snapshot before it was shipped
  last_time         DateTime,             -- the partition key
  prev_span_id      Nullable(Int64),
  proto             String,
  family            Nullable(Int64),
  state             String,
  local_addr        String,
  local_port        Nullable(Int64),
  remote_addr       Nullable(String),
  remote_port       Nullable(Int64),
  tx_queue          Int64,
  rx_queue          Int64,
  timer             Int64,
  timer_ms          Int64,
  retransmits       Int64,
  probes            Int64,
  uid               Int64,
  inode             Int64,
  cookie            Nullable(Int64),
  backlog           Nullable(Int64),
  peer_inode        Nullable(Int64),
  sock_type         Nullable(String),
  unix_flags        Nullable(Int64),
  pid               Nullable(Int64),
  process           Nullable(String),
  cmdline           Nullable(String),
  user              Nullable(String),     -- the process's user, else the socket's uid's name
  owner_carried     UInt8,
  uid_user          Nullable(String)      -- the socket's uid's name (the host's users table)
) ENGINE = MergeTree PARTITION BY toYYYYMM(last_time) ORDER BY (host, netns_key, closed_by, span_id);

-- Spans still seen by their namespace's newest shipped snapshot. A span is written here with
-- sign 1 by the push that first ships it open (`snapshot_id`: that push's last snapshot), and
-- cancelled with sign -1 by the push that ships its end to `spans`; merges fold the pairs away, and
-- the views sum the signs, so they are exact before any merge. Columns as in spans, with
-- last_snapshot_id 2147483647.
CREATE TABLE IF NOT EXISTS open_spans (
  host              String,
  netns_key         String,
  snapshot_id       Int64,
  sign              Int8,
  span_id           Int64,
  first_snapshot_id Int64,
  first_time_ms     Int64,
  prev_span_id      Nullable(Int64),
  proto             String,
  family            Nullable(Int64),
  state             String,
  local_addr        String,
  local_port        Nullable(Int64),
  remote_addr       Nullable(String),
  remote_port       Nullable(Int64),
  tx_queue          Int64,
  rx_queue          Int64,
  timer             Int64,
  timer_ms          Int64,
  retransmits       Int64,
  probes            Int64,
  uid               Int64,
  inode             Int64,
  cookie            Nullable(Int64),
  backlog           Nullable(Int64),
  peer_inode        Nullable(Int64),
  sock_type         Nullable(String),
  unix_flags        Nullable(Int64),
  pid               Nullable(Int64),
  process           Nullable(String),
  cmdline           Nullable(String),
  user              Nullable(String),     -- the process's user, else the socket's uid's name
  owner_carried     UInt8,
  uid_user          Nullable(String)      -- the socket's uid's name (the host's users table)
) ENGINE = CollapsingMergeTree(sign) ORDER BY (host, netns_key, span_id);

-- A span's changing values (queues, timer, retransmits, probes, backlog) as a snapshot saw them,
-- stored when they changed (schema/005_socket_values.sql).
CREATE TABLE IF NOT EXISTS socket_values (
  host             String,
  netns_key        String,
  snapshot_id      Int64,
  time             DateTime,
  span_id          Int64,
  tx_queue         Int64,
  rx_queue         Int64,
  timer            Int64,
  timer_expires_ms Int64,
  retransmits      Int64,
  probes           Int64,
  backlog          Nullable(Int64)
) ENGINE = MergeTree PARTITION BY toYYYYMM(time) ORDER BY (host, netns_key, snapshot_id, span_id);

-- Every TIME_WAIT entry (schema/011_time_wait_entries.sql), with its 4-tuple. The collector may
-- date an entry again from the connection log as it writes the next snapshot, so an entry is sent
-- once that snapshot exists: `settled_by`, the namespace's next snapshot after the entry's first.
CREATE TABLE IF NOT EXISTS time_wait_entries (
  host        String,
  netns_key   String,
  settled_by  Int64,
  snapshot_id Int64,
  time        DateTime,                  -- the entry's, entered_ms / 1000
  span_id     Int64,
  entered_ms  Int64,
  exact       UInt8,
  family      Nullable(Int64),
  local_addr  String,
  local_port  Nullable(Int64),
  remote_addr Nullable(String),
  remote_port Nullable(Int64)
) ENGINE = MergeTree PARTITION BY toYYYYMM(time) ORDER BY (host, netns_key, settled_by, span_id);

-- What each push sent: for people and for `sockhist fleet hosts`; nothing depends on it.
CREATE TABLE IF NOT EXISTS pushes (
  host            String,
  netns_key       String,
  pushed          DateTime,
  from_snapshot   Int64,                 -- exclusive
  to_snapshot     Int64,
  snapshots       Int64,
  rows            Int64,
  bytes           Int64,                 -- sent over HTTP for this namespace
  source_file     String,
  sockhist        String                 -- the shipping sockhist's version
) ENGINE = MergeTree PARTITION BY toYYYYMM(pushed) ORDER BY (host, netns_key, pushed);
