-- An append as one SQL function, so it costs one network round trip instead of eight. The steps
-- and their order are those of the SQLite append (store/events_sql.rs): take the append lock
-- first, check idempotency, then the expected version, insert, move the stream and the head,
-- notify other nodes (delivered at commit).
--
-- p_expected_kind: 0 any, 1 no-stream, 2 stream-exists, 3 exact (p_expected_version).
-- o_outcome: 'appended', 'duplicate', 'wrong-expected-version' (o_actual = the stream's version,
-- NULL when it has none) or 'idempotency-conflict' (o_conflict_id = the clashing event id).
-- The idempotency check probes the (namespace, stream, event_id) unique index once per id with an
-- equality. (Not `event_id = ANY (p_ids)` or a join with `unnest`: with PL/pgSQL's cached generic
-- plan and no statistics, PostgreSQL applies those as a filter over the whole (namespace, stream)
-- range, under the append lock, and appends slow down as streams grow.)

-- An index for the subscription and read-all scans (`namespace = ? AND position > ? ORDER BY
-- position`), which otherwise walk a namespace's whole (namespace, stream, version) range and sort.
CREATE INDEX events_by_namespace_position ON events (namespace, position);

CREATE FUNCTION faas_append(
    p_namespace TEXT, p_stream TEXT, p_expected_kind SMALLINT, p_expected_version BIGINT,
    p_ids TEXT[], p_types TEXT[], p_data BYTEA[], p_metadata TEXT[], p_now_ms BIGINT,
    OUT o_outcome TEXT, OUT o_first_version BIGINT, OUT o_last_version BIGINT,
    OUT o_first_position BIGINT, OUT o_last_position BIGINT, OUT o_actual BIGINT, OUT o_conflict_id TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    v_head BIGINT;
    v_current BIGINT;
    v_count INT := cardinality(p_ids);
    v_found INT;
    v_same BOOLEAN;
    v_offsets INT;
    v_admitted BOOLEAN;
    v_id TEXT;
    v_seen BOOLEAN;
BEGIN
    UPDATE event_log_head SET last_position = last_position WHERE id = 1 RETURNING last_position INTO v_head;

    -- Idempotency: all of these ids already in this stream, with the same content, in the same
    -- order and contiguous, is a duplicate; any other overlap is a conflict.
    -- The common case, new ids, costs one probe of the (namespace, stream, event_id) index per id;
    -- the join below only runs for a repeated append.
    v_seen := FALSE;
    FOREACH v_id IN ARRAY p_ids LOOP
        v_seen := EXISTS (SELECT 1 FROM events e WHERE e.namespace = p_namespace AND e.stream = p_stream AND e.event_id = v_id);
        EXIT WHEN v_seen;
    END LOOP;
    IF v_seen THEN
        SELECT count(*), bool_and(e.event_type = i.t AND e.data = i.d AND e.metadata = i.m),
               count(DISTINCT e.version - i.n), min(e.version), max(e.version), min(e.position), max(e.position)
          INTO v_found, v_same, v_offsets, o_first_version, o_last_version, o_first_position, o_last_position
          FROM unnest(p_ids, p_types, p_data, p_metadata) WITH ORDINALITY AS i(id, t, d, m, n)
          JOIN events e ON e.event_id = i.id
         WHERE e.namespace = p_namespace AND e.stream = p_stream AND e.event_id = ANY (p_ids);
        IF v_found = v_count AND v_same AND v_offsets = 1 THEN
            o_outcome := 'duplicate';
        ELSE
            o_outcome := 'idempotency-conflict';
            SELECT e.event_id INTO o_conflict_id FROM events e
             WHERE e.namespace = p_namespace AND e.stream = p_stream AND e.event_id = ANY (p_ids)
             ORDER BY e.version LIMIT 1;
        END IF;
        RETURN;
    END IF;

    SELECT s.version INTO v_current FROM streams s WHERE s.namespace = p_namespace AND s.stream = p_stream;
    v_admitted := CASE p_expected_kind
        WHEN 0 THEN TRUE
        WHEN 1 THEN v_current IS NULL
        WHEN 2 THEN v_current IS NOT NULL
        ELSE v_current IS NOT DISTINCT FROM p_expected_version
    END;
    IF NOT v_admitted THEN
        o_outcome := 'wrong-expected-version';
        o_actual := v_current;
        o_first_version := NULL; o_last_version := NULL; o_first_position := NULL; o_last_position := NULL;
        RETURN;
    END IF;

    o_first_version := COALESCE(v_current + 1, 0);
    o_last_version := o_first_version + v_count - 1;
    o_first_position := v_head + 1;
    o_last_position := v_head + v_count;
    INSERT INTO events (position, namespace, stream, version, event_id, event_type, data, metadata, recorded_at_ms)
    SELECT v_head + i.n, p_namespace, p_stream, o_first_version + i.n - 1, i.id, i.t, i.d, i.m, p_now_ms
      FROM unnest(p_ids, p_types, p_data, p_metadata) WITH ORDINALITY AS i(id, t, d, m, n);
    INSERT INTO streams (namespace, stream, version) VALUES (p_namespace, p_stream, o_last_version)
        ON CONFLICT (namespace, stream) DO UPDATE SET version = excluded.version;
    UPDATE event_log_head SET last_position = o_last_position WHERE id = 1;
    PERFORM pg_notify('faas_events', o_last_position::TEXT);
    o_outcome := 'appended';
END
$$;
