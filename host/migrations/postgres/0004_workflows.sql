-- Sagas and two-phase-commit transactions: their durable journals, and which node runs them.

CREATE TABLE sagas (
    id               TEXT PRIMARY KEY,
    namespace        TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    name             TEXT NOT NULL,
    -- JSON: steps, input, limits (store/workflows.rs `SagaDefinition`).
    definition       TEXT NOT NULL,
    status           TEXT NOT NULL,
    error            TEXT,
    -- The node running it; another node takes over when this one's heartbeat stops.
    owner            TEXT NOT NULL,
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL,
    UNIQUE (namespace, idempotency_key)
);
CREATE INDEX sagas_by_status ON sagas (status, created_at_ms);

-- Every transition of a saga, written before the host acts on it. The saga's state is the fold
-- of its entries (workflows/saga_state.rs).
CREATE TABLE saga_journal (
    saga_id  TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    entry    TEXT NOT NULL,
    at_ms    BIGINT NOT NULL,
    PRIMARY KEY (saga_id, seq)
);

CREATE TABLE transactions (
    id             TEXT PRIMARY KEY,
    namespace      TEXT NOT NULL,
    -- JSON: [{function, payload, vote}]
    participants   TEXT NOT NULL,
    -- preparing -> committing | aborting -> committed | aborted. The decision (committing or
    -- aborting) is written before phase 2 starts.
    status         TEXT NOT NULL,
    reason         TEXT,
    owner          TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);
CREATE INDEX transactions_by_status ON transactions (status);

-- Liveness of each `faas serve` process that runs sagas and transactions.
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    heartbeat_ms  BIGINT NOT NULL
);
