-- Deployed functions and their immutable versions.
CREATE TABLE functions (
    name            TEXT PRIMARY KEY,
    active_version  INTEGER,
    latest_version  INTEGER NOT NULL DEFAULT 0,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);

CREATE TABLE function_versions (
    function_name   TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    size_bytes      BIGINT NOT NULL,
    spec            TEXT NOT NULL,
    component       BYTEA NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (function_name, version)
);
