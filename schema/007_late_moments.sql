-- sockhist schema version 7: indexes only, so that a late moment is read without reading the week.
--
-- A snapshot's sockets are the spans with first_snapshot_id <= S AND last_snapshot_id >= S. The
-- index on first_snapshot_id finds them by reading every span that began before S: the whole
-- history for the newest moment. socket_spans_by_last finds them by reading the spans that ended at
-- or after S. The analyzer reads through whichever of the two reads less (the nearer end of the
-- history). snapshots_by_netns_time finds a namespace's snapshot at a time in one seek (before, its
-- snapshots were read and sorted by time).
--
-- Nothing else changes: readers read a version 6 file as it is, without these indexes.
CREATE INDEX socket_spans_by_last ON socket_spans(netns_id, last_snapshot_id, first_snapshot_id, state_id);
CREATE INDEX snapshots_by_netns_time ON snapshots(netns_id, time_ms, snapshot_id);
