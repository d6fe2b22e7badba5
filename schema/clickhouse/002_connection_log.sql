-- sockhist central schema version 2 (ClickHouse): the connection log and the diagnostics.
--
-- What a looping collector heard the kernel announce as sockets were destroyed (the source's
-- schema version 10: connection_logs, connection_ends, connection_aggregates) and each snapshot's
-- diagnostics, shipped with the snapshots they belong to, under the same rules as version 1's
-- tables: written once per row, hidden by the views beyond a namespace's newest committed snapshot,
-- removed by the next push when an interrupted one left them there. A store made before this
-- version has no connection log for the snapshots shipped then (`ship` sends new snapshots only).

-- One row per snapshot taken while listening was meant to be on; never changed.
CREATE TABLE IF NOT EXISTS connection_logs (
  host        String,
  netns_key   String,
  snapshot_id Int64,
  time        DateTime,                  -- until_ms / 1000, the partition key
  since_ms    Int64,
  until_ms    Int64,
  listening   UInt8,
  heard       Int64,
  stored      Int64,
  aggregated  Int64,
  over_bound  Int64,
  overruns    Int64,
  malformed   Int64,
  budget      Int64
) ENGINE = MergeTree PARTITION BY toYYYYMM(time) ORDER BY (host, netns_key, snapshot_id);

-- One row per socket end kept whole, with its owner as the source's v_connections gives it. The
-- collector links an end to the TIME_WAIT span that followed it as it writes the next snapshot,
-- so an end is sent once that one exists: `settled_by` is the namespace's snapshot after its own.
CREATE TABLE IF NOT EXISTS connection_ends (
  host              String,
  netns_key         String,
  settled_by        Int64,
  snapshot_id       Int64,
  end_id            Int64,
  time              DateTime,            -- end_ms / 1000, the partition key
  end_ms            Int64,
  proto             String,
  family            Int64,
  local_addr        String,
  local_port        Int64,
  remote_addr       String,
  remote_port       Int64,
  end_state         String,
  seen_state        Nullable(String),
  entered_time_wait UInt8,
  bytes_acked       Nullable(Int64),
  bytes_received    Nullable(Int64),
  bytes_sent        Nullable(Int64),
  bytes_retrans     Nullable(Int64),
  segs_out          Nullable(Int64),
  segs_in           Nullable(Int64),
  data_segs_out     Nullable(Int64),
  data_segs_in      Nullable(Int64),
  total_retrans     Nullable(Int64),
  lost              Nullable(Int64),
  rtt_us            Nullable(Int64),
  min_rtt_us        Nullable(Int64),
  delivery_rate     Nullable(Int64),
  born_after_ms     Nullable(Int64),
  born_by_ms        Nullable(Int64),
  owner_basis       String,
  pid               Nullable(Int64),
  process           Nullable(String),
  cmdline           Nullable(String),
  user              Nullable(String),
  owner_reason      Nullable(String),
  cookie            Int64,
  span_id           Nullable(Int64),
  time_wait_span_id Nullable(Int64)
) ENGINE = MergeTree PARTITION BY toYYYYMM(time) ORDER BY (host, netns_key, settled_by, end_id);

-- Ends heard beyond the budget, summed per second; never changed.
CREATE TABLE IF NOT EXISTS connection_aggregates (
  host               String,
  netns_key          String,
  snapshot_id        Int64,
  time               DateTime,           -- second_ms / 1000, the partition key
  second_ms          Int64,
  proto              String,
  family             Int64,
  local_port         Int64,
  remote_addr        String,
  end_state          String,
  count              Int64,
  bytes_acked        Int64,
  bytes_received     Int64,
  bytes_sent         Int64,
  without_bytes_sent Int64,
  total_retrans      Int64
) ENGINE = MergeTree PARTITION BY toYYYYMM(time) ORDER BY (host, netns_key, snapshot_id, second_ms);

-- The collector's diagnostics of each snapshot (skipped lines, missing files, sources of facts).
CREATE TABLE IF NOT EXISTS diagnostics (
  host        String,
  netns_key   String,
  snapshot_id Int64,
  time        DateTime,                  -- the snapshot's, the partition key
  seq         Int64,                     -- the order within the snapshot (the source's rowid)
  file        String,
  line        Int64,
  message     String
) ENGINE = MergeTree PARTITION BY toYYYYMM(time) ORDER BY (host, netns_key, snapshot_id, seq);
