-- sockhist schema version 2: what --all-netns records about each network namespace.

-- 1 for the host's own namespace (PID 1's). Version-1 collectors captured only their own
-- namespace, which is the host's in every supported deployment, hence the default.
ALTER TABLE netns ADD COLUMN is_initial INTEGER NOT NULL DEFAULT 1;

-- A process living in the namespace when the snapshot was taken (NULL when none was known).
ALTER TABLE snapshots ADD COLUMN netns_pid INTEGER;
