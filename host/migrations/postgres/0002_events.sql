-- Event store, key-value read models, subscription checkpoints and parked events.

-- One row; every append updates it first, which serializes appends: positions are handed out
-- and committed in the same order, so a reader can never see position N+1 before N.
CREATE TABLE event_log_head (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    last_position  BIGINT NOT NULL
);
INSERT INTO event_log_head (id, last_position) VALUES (1, 0);

CREATE TABLE streams (
    namespace  TEXT NOT NULL,
    stream     TEXT NOT NULL,
    version    BIGINT NOT NULL,
    PRIMARY KEY (namespace, stream)
);

CREATE TABLE events (
    position        BIGINT PRIMARY KEY,
    namespace       TEXT NOT NULL,
    stream          TEXT NOT NULL,
    version         BIGINT NOT NULL,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    data            BYTEA NOT NULL,
    metadata        TEXT NOT NULL,
    recorded_at_ms  BIGINT NOT NULL,
    UNIQUE (namespace, stream, version),
    UNIQUE (namespace, stream, event_id)
);

CREATE TABLE kv (
    namespace      TEXT NOT NULL,
    key            TEXT NOT NULL,
    value          BYTEA NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (namespace, key)
);

CREATE TABLE subscription_checkpoints (
    function       TEXT NOT NULL,
    subscription   TEXT NOT NULL,
    position       BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (function, subscription)
);

CREATE TABLE parked_events (
    id             BIGSERIAL PRIMARY KEY,
    function       TEXT NOT NULL,
    subscription   TEXT NOT NULL,
    position       BIGINT NOT NULL,
    error          TEXT NOT NULL,
    attempts       BIGINT NOT NULL,
    parked_at_ms   BIGINT NOT NULL,
    replayed_at_ms BIGINT
);
CREATE INDEX parked_events_by_function ON parked_events (function, subscription);
