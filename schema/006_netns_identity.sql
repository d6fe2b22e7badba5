-- sockhist schema version 6: a namespace is never another namespace.
--
-- The kernel gives a new network namespace the inode of one that was deleted, so an inode alone
-- does not name a namespace: one host may now have several rows with one inode, each a namespace
-- of its own, and a capture continues a row only when it is the same namespace (the writer decides,
-- see schema/README.md: the namespace cookie where the kernel has one, else the boot and the
-- counters, which never go back in one namespace's life). Recorded history is never moved.
--
-- Each snapshot keeps the namespace cookie it saw (SO_NETNS_COOKIE, Linux 5.14 and later; NULL
-- before, and for copied trees and imports).
DROP VIEW IF EXISTS v_snapshots;
DROP VIEW IF EXISTS v_snapshot_sockets;
DROP VIEW IF EXISTS v_state_counts;
DROP VIEW IF EXISTS v_counters;
DROP VIEW IF EXISTS v_spans;

ALTER TABLE snapshots ADD COLUMN netns_cookie INTEGER;

CREATE TABLE netns_v6 (
  netns_id   INTEGER PRIMARY KEY,
  host_id    INTEGER NOT NULL REFERENCES hosts(host_id),
  inode      INTEGER NOT NULL,              -- /proc/PID/ns/net inode; 0 when unknown (a copied tree)
  name       TEXT,                          -- /run/netns name when known
  is_initial INTEGER NOT NULL DEFAULT 1     -- 1 for the host's own namespace (PID 1's)
);
INSERT INTO netns_v6(netns_id, host_id, inode, name, is_initial)
SELECT netns_id, host_id, inode, name, is_initial FROM netns ORDER BY netns_id;
DROP TABLE netns;
ALTER TABLE netns_v6 RENAME TO netns;
CREATE INDEX netns_by_inode ON netns(host_id, inode);
