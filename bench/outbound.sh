#!/usr/bin/env bash
# Outgoing HTTP: a function that proxies to a local upstream (functions/uptime-probe fetching
# native-hello), with faas's pooled connections against a fresh connection per request, in one
# run with one load generator (wrk):
#   1. the upstream alone (native-hello): the upper bound,
#   2. faas → upstream, connections pooled per function (the default),
#   3. faas → upstream answering `Connection: close`: a new TCP connection per request,
# and prints requests/s with the ratios. The guest side is the same in 2 and 3; the difference
# is what pooling saves. (TLS would widen it: a handshake per request; this run is plain HTTP on
# loopback, so it is the lower bound of the gain.)
#
# Environment: BENCH_DURATION (10s), BENCH_CONNECTIONS (32), BENCH_THREADS (1), BENCH_WARMUP (2s),
# BENCH_PROFILE (release; `dev` uses target/debug, whose dependencies are optimised: quicker to
# build, slower to run, fine for the ratio).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-1}
WARMUP=${BENCH_WARMUP:-2s}
PROFILE=${BENCH_PROFILE:-release}
if [ "$PROFILE" = release ]; then
    cargo build --release -p faas-host -p faas-bench >&2
    BIN=$ROOT/target/release
else
    cargo build -p faas-host -p faas-bench >&2
    BIN=$ROOT/target/debug
fi
FAAS=$BIN/faas
command -v wrk >/dev/null || die "wrk is needed (apt-get install wrk)"
(source scripts/lib.sh; build_functions) >&2
PROBE=$ROOT/target/wasm/wasm32-wasip2/release/uptime_probe.wasm

UPSTREAMS=()
start_upstream() {
    env -u RUST_BACKTRACE "$BIN/native-hello" 127.0.0.1:0 "$@" >"$WORK/upstream-$#.log" 2>&1 &
    UPSTREAMS+=($!)
    for _ in $(seq 1 100); do grep -q ready "$WORK/upstream-$#.log" 2>/dev/null && break; sleep 0.05; done
    sed -E 's/.*ready (http:[^ ]+).*/\1/' "$WORK/upstream-$#.log"
}
trap 'kill "${UPSTREAMS[@]}" 2>/dev/null || true; cleanup' EXIT
POOLED=$(start_upstream)
CLOSING=$(start_upstream --close)
start_faas
env -u RUST_BACKTRACE "$FAAS" deploy uptime-probe "$PROBE" --route /uptime-probe --admin-url "$ADMIN_URL" \
    --allow-outbound "$POOLED" --allow-outbound "$CLOSING" >/dev/null

rps() { # url -> requests/s
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$1" >/dev/null
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$1" | awk '/Requests\/sec/ {print $2}'
}
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
log "upstream alone"
direct=$(rps "$POOLED/hello/world")
log "faas, pooled"
pooled=$(rps "$DATA_URL/uptime-probe?url=$(enc "$POOLED/hello/world")")
log "faas, a new connection per request"
fresh=$(rps "$DATA_URL/uptime-probe?url=$(enc "$CLOSING/hello/world")")
curl -fsS "$DATA_URL/uptime-probe?url=$(enc "$POOLED/hello/world")" >&2; echo >&2
printf 'profile %s, wrk -t%s -c%s -d%s\n' "$PROFILE" "$THREADS" "$CONNECTIONS" "$DURATION"
printf '%-40s %10s req/s\n' "upstream alone (native-hello)" "$direct"
printf '%-40s %10s req/s\n' "faas -> upstream, pooled" "$pooled"
printf '%-40s %10s req/s\n' "faas -> upstream, new connection each" "$fresh"
python3 -c "import sys; d,p,f=map(float,sys.argv[1:]); print(f'pooled / fresh = {p/f:.2f}x; pooled / upstream alone = {p/d:.2f}x')" "$direct" "$pooled" "$fresh"
