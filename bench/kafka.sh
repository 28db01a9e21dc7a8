#!/usr/bin/env bash
# The Kafka trigger against a raw rdkafka consumer, in the same run, on a local Apache Kafka 4.4
# broker (scripts/kafka.sh): throughput through a no-op handler, end-to-end latency at a fixed
# rate, and failover between two `faas serve` nodes in one consumer group. The load half is
# target/release/kafka-load (bench/src/bin/kafka-load.rs).
#
#   ./bench/kafka.sh
#
# Environment: BENCH_RECORDS (200000), BENCH_RECORDS_LARGE (1000000), BENCH_RATE (1000), BENCH_SECONDS (10), BENCH_NO_BUILD=1.
# Both nodes use SQLite (the Kafka group, not the database, decides who owns a partition) and
# --kafka-session-timeout 6s (the broker's minimum; the default is 10s).
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh
WASM=$ROOT/target/wasm/wasm32-wasip2/release
KAFKA_PID=
B_PID=
stop_all() {
    [ -z "$B_PID" ] || kill -9 "$B_PID" 2>/dev/null || true
    [ -z "$KAFKA_PID" ] || kill -9 "$KAFKA_PID" 2>/dev/null || true
    cleanup
}
trap stop_all EXIT

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "building faas and kafka-load (release)"
    cargo build --release -p faas-host -p faas-bench >&2
    log "building kafka-probe (wasm32-wasip2)"
    (cd functions && cargo build --release --target wasm32-wasip2 --target-dir ../target/wasm -p kafka-probe >&2)
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log "starting Apache Kafka on 127.0.0.1:$PORT"
line=$(FAAS_KAFKA_DATA="$WORK/kafka" scripts/kafka.sh start "$PORT")
KAFKA_PID=$(sed -E 's/kafka pid=([0-9]+).*/\1/' <<<"$line")
BOOTSTRAP=127.0.0.1:$PORT

KAFKA_ARGS=(--kafka-brokers "$BOOTSTRAP" --kafka-session-timeout 6s)
start_faas "${KAFKA_ARGS[@]}"
LOAD=(env -u RUST_BACKTRACE "$ROOT/target/release/kafka-load" --bootstrap "$BOOTSTRAP" --admin "$ADMIN_URL"
    --data "$DATA_URL" --probe "$WASM/kafka_probe.wasm")

echo "# kafka, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, Apache Kafka 4.4.0 single node, faas on SQLite"
# 200k records fit in librdkafka's prefetch: the raw loop then only drains memory (its best
# case). 1M records make both sides fetch from the broker as they go.
"${LOAD[@]}" throughput --records "${BENCH_RECORDS:-200000}" --batch 500
"${LOAD[@]}" throughput --records "${BENCH_RECORDS:-200000}" --batch 100
"${LOAD[@]}" throughput --records "${BENCH_RECORDS_LARGE:-1000000}" --batch 500
"${LOAD[@]}" latency --rate "${BENCH_RATE:-1000}" --seconds "${BENCH_SECONDS:-10}"

log "starting a second node for the failover run"
env -u RUST_BACKTRACE "$FAAS" serve --data-dir "$WORK/data-b" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    "${KAFKA_ARGS[@]}" >"$WORK/faas-b.log" 2>&1 &
B_PID=$!
for _ in $(seq 1 300); do grep -q 'faas ready' "$WORK/faas-b.log" && break; sleep 0.1; done
ready=$(grep -m1 'faas ready' "$WORK/faas-b.log") || die "node B did not start"
DATA_B=$(sed -E 's/.*data=(http:[^ ]+).*/\1/' <<<"$ready")
ADMIN_B=$(sed -E 's/.*admin=(http:[^ ]+).*/\1/' <<<"$ready")
"${LOAD[@]}" failover --admin-b "$ADMIN_B" --data-b "$DATA_B" --pid-a "$FAAS_PID"
FAAS_PID=
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
