#!/usr/bin/env bash
# Runs the platform locally with the examples deployed: builds the example functions and the
# `faas` binary, starts `faas serve` on embedded SQLite under ./.faas/, deploys the examples and
# prints their URLs. Ctrl-C stops it; the data stays in ./.faas for the next run.
#
# With Kafka: `./scripts/dev.sh --kafka` also starts a local Apache Kafka broker on
# 127.0.0.1:9092 (scripts/kafka.sh; needs Java 17+ and Maven) and deploys the Kafka examples;
# or set FAAS_KAFKA_BROKERS to use a broker of your own.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_toolchain
build_functions
echo "==> building faas" >&2
cargo build -p faas-host
faas=target/debug/faas
wasm=target/wasm/wasm32-wasip2/release

listen=${FAAS_LISTEN:-127.0.0.1:8080}
admin=${FAAS_ADMIN_LISTEN:-127.0.0.1:8081}
kafka_pid=
if [ "${1:-}" = --kafka ]; then
  mkdir -p .faas
  line=$(FAAS_KAFKA_DATA="$PWD/.faas/kafka" scripts/kafka.sh start 9092)
  kafka_pid=$(sed -E 's/kafka pid=([0-9]+).*/\1/' <<<"$line")
  export FAAS_KAFKA_BROKERS=127.0.0.1:9092
fi
"$faas" serve --listen "$listen" --admin-listen "$admin" --data-dir ./.faas &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; [ -z "$kafka_pid" ] || kill $kafka_pid 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS "http://$admin/healthz" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { echo "faas serve exited; see the log above" >&2; exit 1; }
  sleep 0.1
done

export FAAS_ADMIN_URL="http://$admin"
"$faas" deploy hello "$wasm/hello.wasm" --route /hello --route '/hello/...' >/dev/null
"$faas" deploy echo "$wasm/echo.wasm" --route '/echo/...' >/dev/null
"$faas" deploy raw "$wasm/wasi_raw.wasm" --route /raw >/dev/null
"$faas" deploy hello-p3 "$wasm/hello_p3.wasm" --route /p3 --route '/p3/...' --reuse 1000 --reuse-concurrency 16 >/dev/null
"$faas" deploy bank "$wasm/bank_account.wasm" --route '/accounts/...' --subscribe 'account-*' >/dev/null
for f in payments inventory shipping; do
  "$faas" deploy "$f" "$wasm/$f.wasm" --route "/$f/..." >/dev/null
done
# The order saga's last step: a webhook signed with a secret, here to the echo function.
webhook_secret=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
"$faas" deploy notifier "$wasm/notifier.wasm" --route /notifier --allow-outbound "http://$listen" \
  --var "WEBHOOK_URL=http://$listen/echo/webhook" --secret "WEBHOOK_SECRET=$webhook_secret" >/dev/null
"$faas" deploy orders "$wasm/orders.wasm" --route /orders --route '/orders/...' --var NOTIFY_FUNCTION=notifier >/dev/null
"$faas" deploy bank-east "$wasm/ledger.wasm" --route '/bank-east/...' >/dev/null
"$faas" deploy bank-west "$wasm/ledger.wasm" --route '/bank-west/...' >/dev/null
# Outgoing HTTP is denied unless allowed: this one may call the platform's own data plane.
"$faas" deploy uptime-probe "$wasm/uptime_probe.wasm" --route /uptime-probe --allow-outbound "http://$listen" >/dev/null
# Background jobs (async invocations), a scheduled job (every minute), and a trial saga whose
# HTTP steps call the echo function (standing in for the mail and billing APIs).
"$faas" deploy job-worker "$wasm/job_worker.wasm" --route '/jobs/...' >/dev/null
"$faas" deploy nightly-report "$wasm/nightly_report.wasm" --schedule '* * * * *' >/dev/null
billing_key=$(python3 -c 'import secrets; print("sk_dev_" + secrets.token_hex(8))')
"$faas" deploy trial-signup "$wasm/trial_signup.wasm" --route /signup --route '/signup/...' \
  --allow-outbound "http://$listen" --var "MAIL_URL=http://$listen/echo/mail" \
  --var "BILLING_URL=http://$listen/echo/billing" --secret "BILLING_KEY=$billing_key" >/dev/null
kafka_help=""
if [ -n "${FAAS_KAFKA_BROKERS:-}" ]; then
  "$faas" deploy order-events "$wasm/order_events.wasm" --route '/order-events/...' --kafka-topic orders >/dev/null
  "$faas" deploy order-publisher "$wasm/order_publisher.wasm" --route /orders/publish --grant-publish orders >/dev/null
  kafka_help="  # Kafka ($FAAS_KAFKA_BROKERS): publish over HTTP, consumed into the event store exactly once
  curl -d '{\"order_id\":\"o-9\",\"customer\":\"c-1\",\"amount_cents\":1250}' http://$listen/orders/publish
  curl http://$listen/order-events/events
"
fi

cat <<MSG

faas is running (data plane http://$listen, control plane http://$admin).
  Dashboard: http://$admin/   (no admin token set here; with FAAS_ADMIN_TOKEN it asks for it)
  curl http://$listen/hello/world?greeting=Hi
  curl http://$listen/p3/sleep?ms=100          # WASIp3: 16 such requests at once share one instance
  curl -d 'ping' http://$listen/echo/anything
  curl http://$listen/raw
  curl -d '{"owner":"ann"}' http://$listen/accounts/ann/open
  curl -d '{"amount":100}' http://$listen/accounts/ann/deposit
  curl http://$listen/accounts/ann            # the projection (kv read model)
  curl http://$listen/accounts/ann/replay?as_of_version=0
  # the order saga: payment -> inventory -> shipping, compensated in reverse on failure
  curl -XPOST 'http://$listen/payments/accounts/alice/deposit?amount=1000'
  curl -XPOST 'http://$listen/inventory/items/book/restock?qty=5'
  curl -d '{"order_id":"o-1","customer":"alice","sku":"book","qty":2,"amount":300,"address":"1 Main St"}' http://$listen/orders
  curl http://$admin/v1/sagas                 # the notify step: a signed webhook to /echo/webhook
  # two-phase commit between two ledgers
  curl -XPOST 'http://$listen/bank-east/accounts/alice/deposit?amount=100'
  curl -d '{"from":"alice","to_function":"bank-west","to":"bob","amount":60}' http://$listen/bank-east/transfer
  # outgoing HTTP through an allow-list (anything else is refused before it leaves)
  curl 'http://$listen/uptime-probe?url=http://$listen/hello/world'
  curl 'http://$listen/uptime-probe?url=https://example.com/'      # 403: not allowed
  # async invocations: 202 at once, retried on 5xx, dead-lettered, replayable
  curl -H 'x-faas-invoke: async' -d img-1 'http://$listen/jobs/resize?fail_until=2'
  $faas invocations list
  # a scheduled job (every minute) and a trial saga: mail, a durable 5 s timer, an idempotent charge
  $faas schedule nightly-report
  curl -d '{"user":"u-1","trial_ms":5000}' http://$listen/signup
${kafka_help}  GraphiQL: http://$admin/graphql
  $faas list            # FAAS_ADMIN_URL=http://$admin
  curl http://$admin/metrics
Ctrl-C to stop.
MSG
wait $server
