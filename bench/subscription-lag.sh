#!/usr/bin/env bash
# Subscription lag end to end: `faas serve` (release) with functions/lag-probe deployed at
# /lag-probe/... and subscribed to every stream of its namespace; target/release/subscription-lag
# (bench/src/bin/subscription-lag.rs) offers POST /lag-probe/append open-loop at a fixed rate,
# waits for the subscription to catch up and prints the lag percentiles and the achieved rate.
#
#   ./bench/subscription-lag.sh                                  # SQLite in a temp data dir
#   ./bench/subscription-lag.sh --database-url postgres://…/db   # PostgreSQL: a fresh database
#
# Environment: BENCH_RATE (1000 appends/s), BENCH_SECONDS (10), BENCH_WARMUP_SECONDS (1),
# BENCH_DEPLOY_ARGS (extra `faas deploy` flags, e.g. "--max-queue 1000"; default: default limits),
# BENCH_NO_BUILD=1 to use the binaries already built.
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh
PROBE=$ROOT/target/wasm/wasm32-wasip2/release/lag_probe.wasm
DATABASE_ARGS=()
if [ "${1:-}" = --database-url ]; then
    [ -n "${2:-}" ] || { echo "usage: $0 [--database-url URL]" >&2; exit 2; }
    DATABASE_ARGS=(--database-url "$2")
fi

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "building faas and the bench binaries (release)"
    cargo build --release -p faas-host -p faas-bench >&2
    log "building lag-probe (wasm32-wasip2)"
    (cd functions && cargo build --release --target wasm32-wasip2 --target-dir ../target/wasm -p lag-probe >&2)
fi
[ -f "$PROBE" ] || die "$PROBE is missing"

start_faas "${DATABASE_ARGS[@]}"

# shellcheck disable=SC2086 # BENCH_DEPLOY_ARGS is a list of flags
env -u RUST_BACKTRACE "$FAAS" deploy lag-probe "$PROBE" --route '/lag-probe/...' --subscribe '*' \
    ${BENCH_DEPLOY_ARGS:-} --admin-url "$ADMIN_URL" >"$WORK/deploy.json"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "# subscription lag, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, database: ${DATABASE_ARGS[1]:-SQLite (temp data dir)}, deploy flags: ${BENCH_DEPLOY_ARGS:-(defaults)}"
status=0
env -u RUST_BACKTRACE "$ROOT/target/release/subscription-lag" "$DATA_URL" --admin-url "$ADMIN_URL" --rate "${BENCH_RATE:-1000}" \
    --seconds "${BENCH_SECONDS:-10}" --warmup-seconds "${BENCH_WARMUP_SECONDS:-1}" || status=$?
echo "# load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
# The server's warnings and errors, counted by message (ids and attempt numbers stripped).
if grep -qE ' (WARN|ERROR) ' "$WORK/faas.log"; then
    echo "# server log, WARN/ERROR lines by message:"
    grep -E ' (WARN|ERROR) ' "$WORK/faas.log" |
        sed -E 's/^[^ ]+ +//; s/ (function|subscription|attempt|delivery_id|request_id|version|position|stream)=[^ ]+//g' |
        sort | uniq -c | sort -rn | head -n 10
fi
exit "$status"
