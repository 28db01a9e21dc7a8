#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: adds the wasm target, installs PostgreSQL and
# Chromium (the dashboard's browser tests) if missing, starts a private PostgreSQL for the run,
# fetches Apache Kafka's jars (the Kafka tests start their own brokers from them), checks
# formatting and module layering, builds the example components, then runs `cargo test`
# (compiled through clippy) and the SDK's doc tests.
# Extra arguments go to `cargo test` (e.g. a test-name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
# Each step says when it started, so a slow CI run shows where its time went.
step() { echo "==> [$(date +%T)] $*" >&2; }
step "start"
# A fresh clone (CI) gains nothing from incremental compilation's bookkeeping, it only pays for
# it; a working copy with a target dir keeps it for quick reruns.
[ -d target ] || export CARGO_INCREMENTAL=0
# The integration tests mostly wait (brokers, nodes, timeouts) rather than compute: six at a
# time on two cores took the suite from ~185 s to ~130 s. RUST_TEST_THREADS set outside wins.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-6}"

ensure_toolchain

# --- Debian packages the tests need: PostgreSQL, and Chromium for the dashboard's browser tests -
if [ "$(id -u)" = 0 ]; then sudo_=""; else sudo_="sudo"; fi
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { $sudo_ apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "$@"
}
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pg_bin)" ]; then
  step "installing PostgreSQL from Debian's packages"
  apt_install postgresql
fi
if ! command -v chromium >/dev/null; then
  step "installing Chromium from Debian's packages"
  apt_install chromium
fi
export FAAS_TEST_CHROMIUM="${FAAS_TEST_CHROMIUM:-$(command -v chromium)}"

# --- PostgreSQL: a private cluster on a free port, removed when the run ends -----------------
PG_BIN=$(pg_bin)
PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/faas-test-pg.XXXXXX")
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# initdb refuses to run as root; run the cluster as the postgres user then.
if [ "$(id -u)" = 0 ]; then
  chown postgres "$PG_DIR"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi
cleanup() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap cleanup EXIT
step "starting PostgreSQL on 127.0.0.1:$PG_PORT"
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust --no-sync >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400" start >/dev/null
export FAAS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"

# --- Kafka: the tests start their own brokers (scripts/kafka.sh run); fetch the jars up front ---
command -v java >/dev/null || { echo "Java 17+ is needed for the Kafka tests" >&2; exit 1; }
step "fetching Apache Kafka (cached after the first run)"
scripts/kafka.sh fetch

# --- Lint, build and test ---------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all --check
step "host modules stack in one direction (no import cycles)"
python3 scripts/module-cycles.py
build_functions
# The suite uses these components instead of building them again.
export FAAS_TEST_COMPONENTS="$PWD/target/wasm/wasm32-wasip2/release"
# Clippy compiles the workspace's own crates while the test build needs them anyway (the way
# `cargo clippy` drives it, minus its separate check-mode build of every dependency, which was
# ~12 minutes of a clean run): all lints, warnings as errors, and the binaries, in one pass.
# CLIPPY_ARGS is how cargo-clippy hands its `-- <args>` to the driver.
clippy_driver=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# One build of every target (benches and examples too, so they compile and are linted) in one
# cargo invocation: the same dependency features for all, so nothing is compiled twice.
step "building every target (through clippy, warnings are errors)"
cargo test --workspace --lib --bins --tests --benches --examples --no-run
step "cargo test"
# Not --all-targets: that would run the benches and skip doc tests, which run next.
cargo test --workspace --lib --bins --tests "$@"
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
step "cargo test --doc (the SDK's examples)"
cargo test -p faas-sdk --doc "$@"
# The example functions' domain logic also runs natively (the SDK has an in-memory store there).
step "cargo test (functions, native)"
(cd functions && cargo test -p bank-account -p notifier --target-dir ../target/functions-native "$@")
