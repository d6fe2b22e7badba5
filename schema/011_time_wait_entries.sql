-- sockhist schema version 11: every TIME_WAIT entry, recorded as the snapshots are written.
--
-- How fast connections enter TIME_WAIT is what a TIME_WAIT storm is about, and a socket's entry is
-- known from its span: when the connection log heard its socket end, or else its first sighting
-- less what its timer had used of the 60 s. Read from the spans, a week of a 10,000-socket host is
-- a million TIME_WAIT spans among two million, over a second; read from here, about a tenth.
--
-- The writer adds, in each snapshot's transaction, the rows of the TIME_WAIT spans the snapshot
-- opened, and redoes those the connection log dated with it (an end can arrive a snapshot after
-- its TIME_WAIT was first seen). This migration fills the table from the spans already stored, with
-- the same statement (store::time_wait_entries_sql). Retention removes a row with its span; a
-- merge writes its rows as the writer does. A span whose entry cannot be dated (no TIME_WAIT
-- timer recorded, as in an imported listing, or a timer above 60.5 s) has no row.
CREATE TABLE time_wait_entries (
  netns_id    INTEGER NOT NULL,            -- netns.netns_id
  snapshot_id INTEGER NOT NULL,            -- the span's first snapshot (which retention may remove, as the span's)
  span_id     INTEGER NOT NULL,            -- socket_spans.span_id: a TIME_WAIT span
  entered_ms  INTEGER NOT NULL,            -- when the socket entered TIME_WAIT, epoch ms
  exact       INTEGER NOT NULL,            -- 1: the connection log heard its socket end then; 0: estimated from its timer
  PRIMARY KEY (netns_id, snapshot_id, span_id)
) WITHOUT ROWID;

-- Every TIME_WAIT entry with its host, namespace and 4-tuple. `time` (epoch seconds) and
-- `time_iso` are when it entered TIME_WAIT; `exact` is 1 where the connection log dated it. Made
-- here, not in views.sql, so that a file of an earlier version keeps exactly the views it has.
CREATE VIEW v_time_wait_entries AS
SELECT t.span_id,
       h.name AS host,
       n.inode AS netns,
       t.snapshot_id,
       t.entered_ms / 1000 AS time,
       strftime('%Y-%m-%dT%H:%M:%fZ', t.entered_ms / 1000.0, 'unixepoch') AS time_iso,
       t.entered_ms,
       t.exact,
       sp.family,
       a.addr AS local_addr,
       sp.local_port,
       sp.remote_addr,
       sp.remote_port
FROM time_wait_entries t
JOIN netns n ON n.netns_id = t.netns_id
JOIN hosts h ON h.host_id = n.host_id
LEFT JOIN socket_spans sp ON sp.span_id = t.span_id
LEFT JOIN addresses a ON a.addr_id = sp.local_addr_id;
