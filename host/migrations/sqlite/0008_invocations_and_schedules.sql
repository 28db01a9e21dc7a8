-- Async invocations: a stored HTTP request the host runs (and retries) on any node. A node
-- claims a row by setting `owner`, bumping `epoch` and holding it until `lease_until_ms`; its
-- outcome is written only if it still holds that epoch, so a node paused past the lease cannot
-- overwrite the attempt of the node that took over. `callback_state` tracks the result's
-- delivery to `callback` (pending, sending, delivered, failed), claimed the same way.
CREATE TABLE invocations (
    id               TEXT PRIMARY KEY,
    function         TEXT NOT NULL,
    idempotency_key  TEXT,
    request_hash     TEXT NOT NULL,
    request_id       TEXT NOT NULL,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    headers          TEXT NOT NULL,
    body             BLOB NOT NULL,
    callback         TEXT,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    lease_ms         BIGINT NOT NULL,
    run_at_ms        BIGINT NOT NULL,
    expires_at_ms    BIGINT NOT NULL,
    owner            TEXT NOT NULL DEFAULT '',
    epoch            BIGINT NOT NULL DEFAULT 0,
    lease_until_ms   BIGINT NOT NULL DEFAULT 0,
    response_status  BIGINT,
    response_headers TEXT,
    response_body    BLOB,
    error            TEXT,
    callback_state   TEXT,
    callback_attempts BIGINT NOT NULL DEFAULT 0,
    callback_error   TEXT,
    replays          BIGINT NOT NULL DEFAULT 0,
    created_at_ms    BIGINT NOT NULL,
    started_at_ms    BIGINT,
    finished_at_ms   BIGINT,
    updated_at_ms    BIGINT NOT NULL
);
-- One invocation per idempotency key and function (rows without a key never collide).
CREATE UNIQUE INDEX invocations_by_key ON invocations (function, idempotency_key);
CREATE INDEX invocations_due ON invocations (status, run_at_ms);
CREATE INDEX invocations_listing ON invocations (created_at_ms, id);
CREATE INDEX invocations_callbacks ON invocations (callback_state, run_at_ms) WHERE callback_state IS NOT NULL;

-- Schedule ticks: a tick runs only on the node whose insert of its row (function, schedule,
-- planned time) succeeded. A node that dies mid-run leaves the row `running` past
-- `lease_until_ms`, and another node claims it (epoch + 1) and runs it again.
CREATE TABLE schedule_ticks (
    function        TEXT NOT NULL,
    schedule        TEXT NOT NULL,
    planned_ms      BIGINT NOT NULL,
    status          TEXT NOT NULL,
    owner           TEXT NOT NULL DEFAULT '',
    epoch           BIGINT NOT NULL DEFAULT 1,
    attempts        BIGINT NOT NULL DEFAULT 0,
    lease_ms        BIGINT NOT NULL,
    lease_until_ms  BIGINT NOT NULL DEFAULT 0,
    started_at_ms   BIGINT,
    finished_at_ms  BIGINT,
    error           TEXT,
    PRIMARY KEY (function, schedule, planned_ms)
);
CREATE INDEX schedule_ticks_running ON schedule_ticks (status, lease_until_ms);
