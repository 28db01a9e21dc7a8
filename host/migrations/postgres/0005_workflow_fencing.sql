-- Fencing for sagas and transactions: every takeover of a row (a node recovering the work of a
-- dead node, or its own after a restart) bumps `epoch`, and every later write of the owner
-- names the epoch it holds. A node paused past its heartbeat timeout wakes up with an old epoch
-- and its writes change nothing.
ALTER TABLE sagas ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE transactions ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;

-- The caller's key of a transaction (optional): the same key in the same namespace is the same
-- transaction, so a caller whose answer was lost can ask again or look it up.
ALTER TABLE transactions ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX transactions_by_key ON transactions (namespace, idempotency_key);

-- Listing newest first with cursor paging (`created_at_ms DESC, id`).
CREATE INDEX sagas_by_created ON sagas (created_at_ms, id);
CREATE INDEX transactions_by_created ON transactions (created_at_ms, id);
