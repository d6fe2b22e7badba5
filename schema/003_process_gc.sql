-- sockhist schema version 3: a cheaper span insert.
--
-- socket_spans_by_process served only retention's removal of processes no span refers to, yet
-- every span insert paid for it (about a fifth of a first snapshot's write time at 50,000
-- sockets). Retention now finds unreferenced processes with one scan of socket_spans, once per
-- hour of history it removes.
DROP INDEX IF EXISTS socket_spans_by_process;
