-- For the subscription and read-all scans (`namespace = ? AND position > ? ORDER BY position`),
-- which SQLite otherwise answers from the (namespace, stream, version) index plus a sort of the
-- whole namespace: the first page cost ~46 ms at 100k events.
CREATE INDEX events_by_namespace_position ON events (namespace, position);
