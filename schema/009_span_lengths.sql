-- sockhist schema version 9: one index change, so that any moment is read in about as many index
-- entries as it has sockets.
--
-- Snapshot S holds the spans with first_snapshot_id <= S <= last_snapshot_id. Ordered by either end,
-- an index finds them by reading every span on one side of S: half the history for a moment in the
-- middle of it (a million entries on a week of a 10,000-socket host). socket_spans_by_length files
-- each span under its length class, the number of bits of last_snapshot_id - first_snapshot_id
-- (0 for a span seen once, 1 for one seen twice, c for a length in [2^(c-1), 2^c)). A span of class
-- c that holds S began after S - 2^c, so each (state, class) is one seek to a window of first ids
-- no longer than 2^c, in which at least about half the spans reach S. An open span's length is
-- measured to 2147483647, which is under 2^31: the open spans are put in class 31 by the CASE's
-- first test (the collector inserts every span open, and the ladder would be walked for each).
--
-- The class changes only when a span is closed (its last_snapshot_id is written once), so the
-- collector keeps as many indexes as before: this one replaces socket_spans_by_state, whose work
-- (a late moment, a state's spans over a range) it does with the same seeks. Readers read version
-- 6, 7 and 8 files as they are. The CASE below is the one the analyzer writes in its queries
-- (store::span_length_class); SQLite uses the index only for that same expression.
DROP INDEX IF EXISTS socket_spans_by_state;
CREATE INDEX socket_spans_by_length ON socket_spans(netns_id, state_id, CASE
    WHEN last_snapshot_id = 2147483647 THEN 31
    WHEN last_snapshot_id - first_snapshot_id < 1 THEN 0
    WHEN last_snapshot_id - first_snapshot_id < 2 THEN 1
    WHEN last_snapshot_id - first_snapshot_id < 4 THEN 2
    WHEN last_snapshot_id - first_snapshot_id < 8 THEN 3
    WHEN last_snapshot_id - first_snapshot_id < 16 THEN 4
    WHEN last_snapshot_id - first_snapshot_id < 32 THEN 5
    WHEN last_snapshot_id - first_snapshot_id < 64 THEN 6
    WHEN last_snapshot_id - first_snapshot_id < 128 THEN 7
    WHEN last_snapshot_id - first_snapshot_id < 256 THEN 8
    WHEN last_snapshot_id - first_snapshot_id < 512 THEN 9
    WHEN last_snapshot_id - first_snapshot_id < 1024 THEN 10
    WHEN last_snapshot_id - first_snapshot_id < 2048 THEN 11
    WHEN last_snapshot_id - first_snapshot_id < 4096 THEN 12
    WHEN last_snapshot_id - first_snapshot_id < 8192 THEN 13
    WHEN last_snapshot_id - first_snapshot_id < 16384 THEN 14
    WHEN last_snapshot_id - first_snapshot_id < 32768 THEN 15
    WHEN last_snapshot_id - first_snapshot_id < 65536 THEN 16
    WHEN last_snapshot_id - first_snapshot_id < 131072 THEN 17
    WHEN last_snapshot_id - first_snapshot_id < 262144 THEN 18
    WHEN last_snapshot_id - first_snapshot_id < 524288 THEN 19
    WHEN last_snapshot_id - first_snapshot_id < 1048576 THEN 20
    WHEN last_snapshot_id - first_snapshot_id < 2097152 THEN 21
    WHEN last_snapshot_id - first_snapshot_id < 4194304 THEN 22
    WHEN last_snapshot_id - first_snapshot_id < 8388608 THEN 23
    WHEN last_snapshot_id - first_snapshot_id < 16777216 THEN 24
    WHEN last_snapshot_id - first_snapshot_id < 33554432 THEN 25
    WHEN last_snapshot_id - first_snapshot_id < 67108864 THEN 26
    WHEN last_snapshot_id - first_snapshot_id < 134217728 THEN 27
    WHEN last_snapshot_id - first_snapshot_id < 268435456 THEN 28
    WHEN last_snapshot_id - first_snapshot_id < 536870912 THEN 29
    WHEN last_snapshot_id - first_snapshot_id < 1073741824 THEN 30
    WHEN last_snapshot_id - first_snapshot_id < 2147483648 THEN 31
    ELSE 32 END, first_snapshot_id, last_snapshot_id);
