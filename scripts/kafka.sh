#!/usr/bin/env bash
# A local Apache Kafka 4.4 broker for development and tests: single node, KRaft (no ZooKeeper),
# on 127.0.0.1, run from the jars on Maven Central with the machine's Java (17+) and Maven.
#
#   scripts/kafka.sh start [PORT]    start a broker (PORT default 9092; the controller uses PORT+1);
#                                    prints `kafka pid=<pid> bootstrap=127.0.0.1:<port> data=<dir>`
#   scripts/kafka.sh stop PID        stop it (kill -9 PID simulates a crash)
#   scripts/kafka.sh run [PORT]      start one, print the same line, and keep it only while this
#                                    script's stdin is open: the broker is killed (and a data dir
#                                    this created removed) when the caller closes it or dies.
#                                    The integration tests start their brokers this way.
#   scripts/kafka.sh fetch           only download the jars
#
#   FAAS_KAFKA_CACHE   where the jars are kept (default ~/.cache/faas/kafka-4.4.0; the first fetch
#                      downloads ~45 jars, 43 MB, in under a minute)
#   FAAS_KAFKA_DATA    the broker's log dir (default: a new temporary directory)
#   FAAS_KAFKA_HEAP    JVM heap (default 512m)
#   FAAS_KAFKA_PROPERTIES  extra server.properties lines (they override the defaults above them;
#                      the tests start brokers without auto-creation and with ACLs this way)
#
# Then: faas serve --kafka-brokers 127.0.0.1:9092
set -euo pipefail

VERSION=4.4.0
LOG4J_SLF4J=2.25.5
CACHE=${FAAS_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faas/kafka-$VERSION}

die() { printf 'kafka.sh: %s\n' "$*" >&2; exit 1; }

fetch() {
    [ -f "$CACHE/libs/kafka_2.13-$VERSION.jar" ] && return
    command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka jars"
    mkdir -p "$CACHE"
    cat >"$CACHE/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>faas.dev</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_SLF4J</version></dependency>
  </dependencies>
</project>
POM
    echo "kafka.sh: fetching Apache Kafka $VERSION from Maven Central into $CACHE/libs" >&2
    rm -rf "$CACHE/libs.part"
    mvn -q -B -Dstyle.color=never -f "$CACHE/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$CACHE/libs.part" -DincludeScope=runtime >&2
    # Atomic: an interrupted fetch never leaves a half-filled libs/ behind.
    mv "$CACHE/libs.part" "$CACHE/libs"
}

start() {
    local port=${1:-9092}
    local controller=$((port + 1))
    command -v java >/dev/null || die "Java 17+ is needed to run Kafka"
    fetch
    local data=${FAAS_KAFKA_DATA:-$(mktemp -d "${TMPDIR:-/tmp}/faas-kafka.XXXXXX")}
    mkdir -p "$data"
    cat >"$data/log4j2.yaml" <<'YAML'
Configuration:
  Appenders:
    Console: { name: STDOUT, PatternLayout: { pattern: "[%d] %p %m (%c)%n" } }
  Loggers:
    Root: { level: WARN, AppenderRef: [ { ref: STDOUT } ] }
YAML
    cat >"$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
${FAAS_KAFKA_PROPERTIES:-}
PROPS
    local classpath="$CACHE/libs/*"
    local logging=-Dlog4j2.configurationFile="$data/log4j2.yaml"
    if [ ! -f "$data/logs/meta.properties" ]; then
        local cluster
        cluster=$(java -cp "$classpath" kafka.tools.StorageTool random-uuid 2>/dev/null)
        java "$logging" -cp "$classpath" kafka.tools.StorageTool format --standalone -t "$cluster" \
            -c "$data/server.properties" >/dev/null
    fi
    nohup java -Xms256m -Xmx"${FAAS_KAFKA_HEAP:-512m}" "$logging" -cp "$classpath" kafka.Kafka \
        "$data/server.properties" >"$data/broker.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 240); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "kafka pid=$pid bootstrap=127.0.0.1:$port data=$data"
            return
        fi
        kill -0 "$pid" 2>/dev/null || { tail -20 "$data/broker.log" >&2; die "the broker exited; see $data/broker.log"; }
        sleep 0.25
    done
    kill "$pid" 2>/dev/null || true
    die "the broker did not open 127.0.0.1:$port within 60 s; see $data/broker.log"
}

run() {
    local created=""
    if [ -z "${FAAS_KAFKA_DATA:-}" ]; then
        FAAS_KAFKA_DATA=$(mktemp -d "${TMPDIR:-/tmp}/faas-kafka.XXXXXX")
        export FAAS_KAFKA_DATA
        created=1
    fi
    local line pid
    line=$(start "$@")
    echo "$line"
    pid=${line#kafka pid=}
    pid=${pid%% *}
    cleanup() {
        kill -9 "$pid" 2>/dev/null || true
        [ -z "$created" ] || rm -rf "$FAAS_KAFKA_DATA"
    }
    trap 'cleanup; exit 0' TERM INT HUP
    cat >/dev/null || true
    cleanup
}

case "${1:-}" in
    start) shift; start "$@" ;;
    run) shift; run "$@" ;;
    stop) [ -n "${2:-}" ] || die "usage: $0 stop PID"; kill "$2" ;;
    fetch) fetch ;;
    *) die "usage: $0 start [PORT] | run [PORT] | stop PID | fetch" ;;
esac
