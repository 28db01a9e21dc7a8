# Shared by the bench scripts that drive a running `faas serve` (saga.sh, subscription-lag.sh).
# Source it after `cd` to the repository root; it sets ROOT, FAAS, WORK and the helpers below.
#
#   start_faas [serve args...]   starts target/release/faas (RUST_BACKTRACE unset) on OS-picked
#                                ports with its data dir in $WORK; sets FAAS_PID, DATA_URL, ADMIN_URL
#   log / die                    messages on stderr
# The EXIT trap stops the server and removes $WORK.

ROOT=$PWD
FAAS=$ROOT/target/release/faas
WORK=$(mktemp -d "${TMPDIR:-/tmp}/faas-bench.XXXXXX")
FAAS_PID=

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

cleanup() {
    if [ -n "$FAAS_PID" ]; then
        kill "$FAAS_PID" 2>/dev/null || true
        wait "$FAAS_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_faas() {
    # RUST_BACKTRACE unset: the environment sets it, and it costs ~15% (see README.md).
    env -u RUST_BACKTRACE "$FAAS" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        "$@" >"$WORK/faas.log" 2>&1 &
    FAAS_PID=$!
    for _ in $(seq 1 300); do
        grep -q 'faas ready' "$WORK/faas.log" && break
        kill -0 "$FAAS_PID" 2>/dev/null || { cat "$WORK/faas.log" >&2; die "faas exited"; }
        sleep 0.1
    done
    local ready
    ready=$(grep -m1 'faas ready' "$WORK/faas.log") || { cat "$WORK/faas.log" >&2; die "faas did not become ready"; }
    DATA_URL=$(sed -E 's/.*data=(http:[^ ]+).*/\1/' <<<"$ready")
    ADMIN_URL=$(sed -E 's/.*admin=(http:[^ ]+).*/\1/' <<<"$ready")
}
