-- Group commit (store/group_commit.rs): the appends queued while the writer was busy, run one
-- after another in one statement, so in one transaction and one commit (one fsync) for all. Each
-- is `faas_append` with its own slice of the event arrays (`p_counts` events each, in order) and
-- gets its own outcome row, in the order given: a wrong expected version or an idempotency
-- conflict is that append's outcome and does not stop the ones after it.
CREATE FUNCTION faas_append_batch(
    p_namespaces TEXT[], p_streams TEXT[], p_kinds SMALLINT[], p_versions BIGINT[], p_counts INT[],
    p_ids TEXT[], p_types TEXT[], p_data BYTEA[], p_metadata TEXT[], p_now_ms BIGINT)
RETURNS TABLE (o_outcome TEXT, o_first_version BIGINT, o_last_version BIGINT, o_first_position BIGINT,
               o_last_position BIGINT, o_actual BIGINT, o_conflict_id TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    v_start INT := 1;
    v_end INT;
    r RECORD;
BEGIN
    FOR v_i IN 1 .. cardinality(p_streams) LOOP
        v_end := v_start + p_counts[v_i] - 1;
        SELECT * INTO r FROM faas_append(p_namespaces[v_i], p_streams[v_i], p_kinds[v_i], p_versions[v_i],
            p_ids[v_start:v_end], p_types[v_start:v_end], p_data[v_start:v_end], p_metadata[v_start:v_end], p_now_ms);
        o_outcome := r.o_outcome;
        o_first_version := r.o_first_version;
        o_last_version := r.o_last_version;
        o_first_position := r.o_first_position;
        o_last_position := r.o_last_position;
        o_actual := r.o_actual;
        o_conflict_id := r.o_conflict_id;
        RETURN NEXT;
        v_start := v_end + 1;
    END LOOP;
END
$$;
