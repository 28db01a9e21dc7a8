#!/usr/bin/env bash
# Async invocations: `faas serve` (release) with functions/job-worker deployed;
# target/release/async-load (bench/src/bin/async-load.rs) measures enqueue -> function start
# latency one at a time and the throughput of queued invocations, against the same job called
# synchronously, in the same run.
#
#   ./bench/async.sh                                  # SQLite in a temp data dir
#   ./bench/async.sh --database-url postgres://…/db   # PostgreSQL: a fresh database
#
# Environment: BENCH_SAMPLES (300), BENCH_JOBS (5000), BENCH_CONCURRENCY (32), BENCH_NO_BUILD=1.
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh
WASM=$ROOT/target/wasm/wasm32-wasip2/release
DATABASE_ARGS=()
if [ "${1:-}" = --database-url ]; then
    [ -n "${2:-}" ] || { echo "usage: $0 [--database-url URL]" >&2; exit 2; }
    DATABASE_ARGS=(--database-url "$2")
fi

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "building faas and the bench binaries (release)"
    cargo build --release -p faas-host -p faas-bench >&2
    log "building job-worker (wasm32-wasip2)"
    (cd functions && cargo build --release --target wasm32-wasip2 --target-dir ../target/wasm -p job-worker >&2)
fi

start_faas "${DATABASE_ARGS[@]}"
env -u RUST_BACKTRACE "$FAAS" deploy job-worker "$WASM/job_worker.wasm" --route '/jobs/...' \
    --admin-url "$ADMIN_URL" >/dev/null

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "# async invocations, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, database: ${DATABASE_ARGS[1]:-SQLite (temp data dir)}"
status=0
env -u RUST_BACKTRACE "$ROOT/target/release/async-load" "$DATA_URL" "$ADMIN_URL" --samples "${BENCH_SAMPLES:-300}" \
    --jobs "${BENCH_JOBS:-5000}" --concurrency "${BENCH_CONCURRENCY:-32}" || status=$?
echo "# load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
if grep -qiE ' (warn|error) ' "$WORK/faas.log"; then
    log "server warnings/errors (first 10):"
    grep -iE ' (warn|error) ' "$WORK/faas.log" | head -n 10 >&2
fi
exit "$status"
