-- sockhist schema version 5: each snapshot's own queues, timer and retransmits.
--
-- A span's row holds the values of its first snapshot. A socket whose Recv-Q, Send-Q, timer,
-- retransmit or probe count, or backlog limit changes while it stays in one state with one owner
-- gets a row here for the snapshot that saw the change, and none while they stay the same, so that
-- storage still grows with change, not with the population. The values of a span at snapshot S are
-- those of its newest row here at or before S, else the span's own.
--
-- A running timer counts down between two stored values: its remaining time at S is
-- timer_expires_ms - S.time_ms (never below 0). The writer stores a row whenever the kernel's
-- figure differs from that projection by more than 250 ms, so a shown timer is within 250 ms of
-- what the kernel said (a TIME_WAIT countdown, exact in the kernel, costs no row at all).
CREATE TABLE socket_values (
  span_id          INTEGER NOT NULL,       -- socket_spans.span_id
  snapshot_id      INTEGER NOT NULL,       -- the snapshot that saw these values (may be removed by retention)
  tx_queue         INTEGER NOT NULL,
  rx_queue         INTEGER NOT NULL,
  timer            INTEGER NOT NULL,       -- as socket_spans.timer
  timer_expires_ms INTEGER NOT NULL,       -- epoch ms at which the timer fires; 0 while it is off
  retransmits      INTEGER NOT NULL,
  probes           INTEGER NOT NULL,
  backlog          INTEGER,                -- a listener's backlog limit (sock_diag, ss); NULL when unknown
  PRIMARY KEY (span_id, snapshot_id)
) WITHOUT ROWID;

-- How many such rows each snapshot wrote.
ALTER TABLE snapshots ADD COLUMN value_rows INTEGER NOT NULL DEFAULT 0;
