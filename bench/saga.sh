#!/usr/bin/env bash
# Sagas end to end: `faas serve` (release) with the order functions deployed (payments, inventory,
# shipping, orders); target/release/saga-load (bench/src/bin/saga-load.rs) measures the 3-step
# order saga's latency one at a time and its throughput with concurrent clients, against three
# plain invocations doing the same appends without a saga, in the same run.
#
#   ./bench/saga.sh                                  # SQLite in a temp data dir
#   ./bench/saga.sh --database-url postgres://…/db   # PostgreSQL: a fresh database
#
# Environment: BENCH_ORDERS (500), BENCH_CONCURRENCY (16), BENCH_SECONDS (10), BENCH_NO_BUILD=1.
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
    log "building the order functions (wasm32-wasip2)"
    (cd functions && cargo build --release --target wasm32-wasip2 --target-dir ../target/wasm \
        -p payments -p inventory -p shipping -p orders >&2)
fi

start_faas "${DATABASE_ARGS[@]}"

for f in payments inventory shipping; do
    env -u RUST_BACKTRACE "$FAAS" deploy "$f" "$WASM/$f.wasm" --route "/$f/..." --admin-url "$ADMIN_URL" >/dev/null
done
env -u RUST_BACKTRACE "$FAAS" deploy orders "$WASM/orders.wasm" --route /orders --route '/orders/...' \
    --admin-url "$ADMIN_URL" >/dev/null
for c in $(seq 0 49); do curl -fsS -XPOST "$DATA_URL/payments/accounts/c$c/deposit?amount=100000000" >/dev/null; done
for s in $(seq 0 19); do curl -fsS -XPOST "$DATA_URL/inventory/items/s$s/restock?qty=100000000" >/dev/null; done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "# sagas, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, database: ${DATABASE_ARGS[1]:-SQLite (temp data dir)}"
status=0
env -u RUST_BACKTRACE "$ROOT/target/release/saga-load" "$DATA_URL" --orders "${BENCH_ORDERS:-500}" \
    --concurrency "${BENCH_CONCURRENCY:-16}" --seconds "${BENCH_SECONDS:-10}" || status=$?
echo "# load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
if grep -qiE ' (warn|error) ' "$WORK/faas.log"; then
    log "server warnings/errors (first 10):"
    grep -iE ' (warn|error) ' "$WORK/faas.log" | head -n 10 >&2
fi
exit "$status"
