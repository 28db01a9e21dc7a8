-- Variables and secrets: immutable config versions per function (secrets sealed by the host
-- before they get here), and the config version each function version runs with.
ALTER TABLE functions ADD COLUMN latest_config INTEGER NOT NULL DEFAULT 0;
ALTER TABLE function_versions ADD COLUMN config_version INTEGER;

CREATE TABLE function_configs (
    function_name   TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    config          TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (function_name, version)
);

-- One token sealed with the master key, so a node started with another key refuses to start.
CREATE TABLE secret_key_check (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    sealed          TEXT NOT NULL
);
