-- Work that must have one owner across nodes (a subscription's delivery, an outbox's forwarding)
-- is held under a lease: `owner` (a node id, '' when free) until `expires_at_ms`, renewed by the
-- owner. Every takeover bumps `epoch`, and the owner's checkpoint writes name the epoch they
-- hold, so a node paused past its lease cannot move a checkpoint once another node took over.
CREATE TABLE leases (
    name           TEXT PRIMARY KEY,
    owner          TEXT NOT NULL DEFAULT '',
    epoch          BIGINT NOT NULL DEFAULT 0,
    expires_at_ms  BIGINT NOT NULL DEFAULT 0,
    acquired_at_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX leases_by_owner ON leases (owner);

-- A node stopping cleanly marks itself leaving once it handed its leases back, so the others
-- stop counting it in their fair share at once instead of after its heartbeat times out.
ALTER TABLE nodes ADD COLUMN leaving BIGINT NOT NULL DEFAULT 0;
