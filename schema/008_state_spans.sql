-- sockhist schema version 8: one index change, so that a question about one state reads that
-- state's spans alone.
--
-- socket_spans_by_last (version 7) held (netns_id, last_snapshot_id, first_snapshot_id, state_id):
-- the spans that ended at or after a moment, every state mixed. Putting state_id second keeps what
-- it did for a late moment (one seek per state instead of one in all) and lets the readers of one
-- state (a namespace's listeners, its CLOSE_WAIT or TIME_WAIT sockets, a trend of one state) seek
-- straight to that state's rows: the listeners of a week were found by reading its 2 million
-- index entries, and are now read as the few rows they are. It replaces socket_spans_by_last, so
-- that the collector maintains as many indexes as before.
--
-- Readers read a version 6 or 7 file as it is, through the indexes it has.
DROP INDEX IF EXISTS socket_spans_by_last;
CREATE INDEX socket_spans_by_state ON socket_spans(netns_id, state_id, last_snapshot_id, first_snapshot_id);
