-- Deployed functions and their immutable versions.
CREATE TABLE functions (
    name            TEXT PRIMARY KEY,
    active_version  INTEGER,
    latest_version  INTEGER NOT NULL DEFAULT 0,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);

CREATE TABLE function_versions (
    function_name   TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    spec            TEXT NOT NULL,
    component       BLOB NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (function_name, version)
);
