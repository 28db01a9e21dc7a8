#!/usr/bin/env bash
# The HTTP comparison, in one run with one load generator (wrk): the `hello` function served by
#   1. native axum (bench/src/bin/native-hello.rs): the upper bound,
#   2. `wasmtime serve -S cli` at its defaults,
#   3. `wasmtime serve -S cli` with the pooling allocator keeping memory and tables resident,
#  3b. `wasmtime serve -S cli` with all of faas's pooling settings (BENCH_MATCHED=0 skips it),
#   4. `faas serve` (release build), hello deployed at /hello/... (a fresh instance per request),
#   5. instance reuse, N=1000 both: `wasmtime serve --max-instance-reuse-count 1000` and faas with
#      hello redeployed `--reuse 1000`,
#   6. WASIp3 (functions/hello-p3, same answer): wasmtime serve fresh (reuse count 1), with reuse
#      1000 × 16 concurrent, and faas fresh and `--reuse 1000 --reuse-concurrency 16`,
#   7. faas running the Winch build of hello (what a new deploy serves until Cranelift's build is
#      swapped in: `--tier-up-delay 1h` keeps it there),
# then deploy → first 200 latency against the same faas server (src/bin/deploy-latency.rs).
# Every contender gets the machine alone, is warmed up, then loaded with
#   wrk -t$BENCH_THREADS -c$BENCH_CONNECTIONS -d$BENCH_DURATION --latency http://…/hello/world
#
# Environment: BENCH_DURATION (10s), BENCH_CONNECTIONS (32), BENCH_THREADS (1), BENCH_WARMUP (2s),
# BENCH_DEPLOY_SAMPLES (20), BENCH_MATCHED=0 to skip contender 3b, BENCH_PERF=1 to add a
# `perf record` of faas under load (a separate, unmeasured wrk run). Results are also written to
# bench/results/http-<timestamp>.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-1}
WARMUP=${BENCH_WARMUP:-2s}
DEPLOY_SAMPLES=${BENCH_DEPLOY_SAMPLES:-20}
WASMTIME_VERSION=50.0.1
TOOLS=$ROOT/bench/.tools
WASMTIME=$TOOLS/bin/wasmtime
HELLO=$ROOT/target/wasm/wasm32-wasip2/release/hello.wasm
HELLO_P3=$ROOT/target/wasm/wasm32-wasip2/release/hello_p3.wasm
FAAS=$ROOT/target/release/faas
URL_PATH=/hello/world

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/faas-bench.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools and builds ---------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    log "installing wrk"
    if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >&2; else sudo apt-get install -y wrk >&2; fi
fi
command -v curl >/dev/null || die "curl is needed"

log "building faas and the bench binaries (release)"
cargo build --release -p faas-host -p faas-bench >&2

if [ ! -f "$HELLO" ] || [ ! -f "$HELLO_P3" ]; then
    log "building the example functions"
    (source "$ROOT/scripts/lib.sh"; cd "$ROOT"; ensure_toolchain) >&2
    (cd functions && cargo build --release --target wasm32-wasip2 --target-dir ../target/wasm >&2)
fi

if [ ! -x "$WASMTIME" ] || [ "$("$WASMTIME" --version | awk '{ print $2 }')" != "$WASMTIME_VERSION" ]; then
    log "building wasmtime-cli $WASMTIME_VERSION into bench/.tools (takes a while)"
    cargo install wasmtime-cli --version "$WASMTIME_VERSION" --locked --root "$TOOLS" >&2
fi

# --- servers ------------------------------------------------------------------------------------
# start NAME CMD...: runs CMD in the background (RUST_BACKTRACE unset: it costs ~15%), output to
# $WORK/NAME.log.
start() {
    local name=$1
    shift
    env -u RUST_BACKTRACE "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
}

# stop PID: stops one server started above.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# wait_for NAME PID REGEX: waits until the server's log has a line matching REGEX (whose first
# http://host:port it prints), or fails with the log.
wait_for() {
    local name=$1 pid=$2 regex=$3 line
    for _ in $(seq 1 300); do
        line=$(grep -E -m1 "$regex" "$WORK/$name.log" || true)
        if [ -n "$line" ]; then
            grep -oE 'http://[0-9.]+:[0-9]+' <<<"$line" | head -n1
            return
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "$name exited"; }
        sleep 0.1
    done
    cat "$WORK/$name.log" >&2
    die "$name did not become ready"
}

# check URL: the contender must answer `Hello, world!` before it is measured.
check() {
    local body
    body=$(curl -fsS "$1$URL_PATH") || die "$1$URL_PATH failed"
    [ "$body" = "Hello, world!" ] || die "$1$URL_PATH answered '$body'"
}

# to_ms VALUE: wrk's latency (e.g. 812.00us, 1.23ms, 2.01s) in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n }'
}

declare -A RPS P50 P99 ERRORS
NAMES=()
# measure NAME URL: warm-up, then the measured wrk run; records req/s, p50, p99, errors.
measure() {
    local name=$1 url=$2 out
    check "$url"
    log "$name: warm-up $WARMUP, then wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency $url$URL_PATH"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$url$URL_PATH" >/dev/null
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url$URL_PATH")
    printf '%s\n' "$out" >"$WORK/$name.wrk"
    RPS[$name]=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
    P50[$name]=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    P99[$name]=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    ERRORS[$name]=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { n += $4 + $6 + $8 + $10 }
        END { print n + 0 }' <<<"$out")
    NAMES+=("$name")
}

# Other work on the machine skews everything below; the report shows how busy it was.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 0.5) }'; then
    log "warning: load average is $LOAD_BEFORE before the first contender; numbers will be low"
fi

# 1. native axum
start native "$ROOT/target/release/native-hello" 127.0.0.1:0
pid=$LAST_PID
url=$(wait_for native "$pid" 'native-hello ready')
measure native "$url"
stop "$pid"

# 2. wasmtime serve at its defaults (-S cli: Rust's std imports wasi:cli beyond wasi:http/proxy)
start wasmtime-default "$WASMTIME" serve -S cli --addr 127.0.0.1:0 "$HELLO"
pid=$LAST_PID
url=$(wait_for wasmtime-default "$pid" 'Serving HTTP on')
measure wasmtime-default "$url"
stop "$pid"

# 3. wasmtime serve, tuned as faas's engine is: memory and tables stay resident between instances
#    (`serve` turns the pooling allocator on by default where 42 bits of address space can be
#    reserved, as on any x86-64 Linux)
start wasmtime-tuned "$WASMTIME" serve -S cli \
    -O pooling-memory-keep-resident=2097152 -O pooling-table-keep-resident=65536 --addr 127.0.0.1:0 "$HELLO"
pid=$LAST_PID
url=$(wait_for wasmtime-tuned "$pid" 'Serving HTTP on')
measure wasmtime-tuned "$url"
stop "$pid"

# Every pooling setting faas's engine uses (runtime/engine.rs: build_engine), PAGEMAP_SCAN and
# async-stack reuse included.
MATCHED=(-O pooling-memory-keep-resident=2097152 -O pooling-table-keep-resident=65536
    -O pooling-pagemap-scan=auto -O pooling-async-stack-keep-resident=1048576 -O pooling-decommit-batch-size=32)

# wasmtime_contender NAME WASM ARGS...: `wasmtime serve -S cli ARGS… WASM`, measured.
wasmtime_contender() {
    local name=$1 wasm=$2 pid url
    shift 2
    start "$name" "$WASMTIME" serve -S cli "$@" --addr 127.0.0.1:0 "$wasm"
    pid=$LAST_PID
    url=$(wait_for "$name" "$pid" 'Serving HTTP on')
    measure "$name" "$url"
    stop "$pid"
}

# 3b. wasmtime serve with all of faas's pooling settings: how much of faas's lead is configuration.
if [ "${BENCH_MATCHED:-1}" = 1 ]; then
    wasmtime_contender wasmtime-matched "$HELLO" "${MATCHED[@]}"
fi

# faas_server NAME ARGS...: starts `faas serve ARGS…`; sets DATA_URL, ADMIN_URL, LAST_PID.
faas_server() {
    local name=$1 ready
    shift
    start "$name" "$FAAS" serve --data-dir "$WORK/$name-data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@"
    wait_for "$name" "$LAST_PID" 'faas ready' >/dev/null
    ready=$(grep -E -m1 'faas ready' "$WORK/$name.log")
    DATA_URL=$(sed -E 's/.*data=(http:[^ ]+).*/\1/' <<<"$ready")
    ADMIN_URL=$(sed -E 's/.*admin=(http:[^ ]+).*/\1/' <<<"$ready")
}

# faas_deploy WASM ARGS...: deploys WASM as `hello` at /hello/... on the server started last.
faas_deploy() {
    local wasm=$1
    shift
    env -u RUST_BACKTRACE "$FAAS" deploy hello "$wasm" --route /hello --route '/hello/...' \
        --admin-url "$ADMIN_URL" "$@" >"$WORK/deploy.json"
    # A new version's Cranelift build replaces its Winch build ~0.2 s after the deploy.
    sleep 1
}

# 4. faas serve, hello deployed with the README's command
faas_server faas
faas_pid=$LAST_PID
faas_deploy "$HELLO"
measure faas "$DATA_URL"

# 5. reuse, 1000 invocations per instance
wasmtime_contender wasmtime-reuse "$HELLO" "${MATCHED[@]}" --max-instance-reuse-count 1000
faas_deploy "$HELLO" --reuse 1000
measure faas-reuse "$DATA_URL"

# 6. WASIp3
if [ "${BENCH_P3:-1}" = 1 ]; then
    wasmtime_contender wasmtime-p3 "$HELLO_P3" "${MATCHED[@]}" --max-instance-reuse-count 1
    wasmtime_contender wasmtime-p3-reuse "$HELLO_P3" "${MATCHED[@]}" \
        --max-instance-reuse-count 1000 --max-instance-concurrent-reuse-count 16
    faas_deploy "$HELLO_P3"
    measure faas-p3 "$DATA_URL"
    faas_deploy "$HELLO_P3" --reuse 1000 --reuse-concurrency 16
    measure faas-p3-reuse "$DATA_URL"
fi
# Back to hello, fresh instances, for the profile and the deploy latencies below.
faas_deploy "$HELLO"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# profile NAME: `perf record` of faas during 5 s of further (unmeasured) load; the top entries
# go to $WORK/perf-NAME.txt.
profile() {
    local name=$1 perf_pid
    log "faas ($name): perf record (cpu-clock) during a further 5 s of load (not measured)"
    perf record -e cpu-clock -F 999 -p "$faas_pid" -o "$WORK/perf.data" -- sleep 5 >/dev/null 2>&1 &
    perf_pid=$!
    wrk -t"$THREADS" -c"$CONNECTIONS" -d6s "$DATA_URL$URL_PATH" >/dev/null
    wait "$perf_pid" || true
    perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
        grep -v -e '^#' -e '^$' | sed -E 's/[[:space:]-]+$//' | cut -c1-160 | head -n 40 >"$WORK/perf-$name.txt" || true
}
if [ "${BENCH_PERF:-0}" = 1 ]; then
    if perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
        profile fresh
        faas_deploy "$HELLO" --reuse 1000
        profile reuse
        faas_deploy "$HELLO"
    else
        log "perf record does not work here; skipping the profile"
    fi
fi

log "deploy → first 200 ($DEPLOY_SAMPLES samples per variant)"
env -u RUST_BACKTRACE "$ROOT/target/release/deploy-latency" "$ADMIN_URL" "$DATA_URL" \
    --wasm "$HELLO" -n "$DEPLOY_SAMPLES" >"$WORK/deploy-latency.txt"
stop "$faas_pid"

# 7. the Winch phase of a tiered deploy, held there
faas_server faas-winch --tier-up-delay 1h
winch_pid=$LAST_PID
faas_deploy "$HELLO"
grep -q '"compiler": *"winch"' <(curl -fsS "$ADMIN_URL/v1/functions/hello") || die "hello is not on its Winch build"
measure faas-winch "$DATA_URL"
stop "$winch_pid"

# --- report -------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
report() {
    echo "# HTTP: hello, GET $URL_PATH, wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency"
    echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -srm), wasmtime-cli $WASMTIME_VERSION"
    echo "# load average before the first contender: $LOAD_BEFORE; after the last: $LOAD_AFTER"
    printf '%-18s %10s %10s %10s %8s\n' contender req/s p50_ms p99_ms errors
    for name in "${NAMES[@]}"; do
        printf '%-18s %10s %10s %10s %8s\n' "$name" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" "${ERRORS[$name]}"
    done
    echo
    echo "faas / wasmtime-default: $(ratio "${RPS[faas]}" "${RPS[wasmtime-default]}")"
    echo "faas / wasmtime-tuned:   $(ratio "${RPS[faas]}" "${RPS[wasmtime-tuned]}")"
    if [ -n "${RPS[wasmtime-matched]:-}" ]; then
        echo "faas / wasmtime-matched: $(ratio "${RPS[faas]}" "${RPS[wasmtime-matched]}")   (best-tuned: faas's pooling settings; goal >= 1.5x)"
    fi
    echo "faas / native:           $(ratio "${RPS[faas]}" "${RPS[native]}")"
    echo "faas-reuse / native:     $(ratio "${RPS[faas-reuse]}" "${RPS[native]}")   (goal >= 0.5x)"
    echo "faas-reuse / wasmtime-reuse: $(ratio "${RPS[faas-reuse]}" "${RPS[wasmtime-reuse]}")   (goal >= 1.2x)"
    if [ -n "${RPS[faas-p3]:-}" ]; then
        echo "faas-p3 / wasmtime-p3:   $(ratio "${RPS[faas-p3]}" "${RPS[wasmtime-p3]}")"
        echo "faas-p3-reuse / wasmtime-p3-reuse: $(ratio "${RPS[faas-p3-reuse]}" "${RPS[wasmtime-p3-reuse]}")   (goal >= 1.2x)"
        echo "faas-p3-reuse / native:  $(ratio "${RPS[faas-p3-reuse]}" "${RPS[native]}")"
    fi
    echo "faas-winch / faas:       $(ratio "${RPS[faas-winch]}" "${RPS[faas]}")   (the first ~0.2 s of a new deploy)"
    echo
    cat "$WORK/deploy-latency.txt"
    echo "(goal: deploy → first 200 <= 100 ms)"
    for profiled in fresh reuse; do
        if [ -s "$WORK/perf-$profiled.txt" ]; then
            echo
            echo "# perf record -e cpu-clock of faas ($profiled instances) under the same load, top entries"
            cat "$WORK/perf-$profiled.txt"
        fi
    done
}
mkdir -p "$ROOT/bench/results"
RESULT=$ROOT/bench/results/http-$(date -u +%Y%m%dT%H%M%SZ).txt
report | tee "$RESULT"
log "written to ${RESULT#"$ROOT"/}"
