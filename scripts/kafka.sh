#!/usr/bin/env bash
# A real single-node Apache Kafka 4.x broker (KRaft) for tests, from the official jars on Maven Central.
#
#   scripts/kafka.sh start    fetch the jars once (cached), format a fresh log dir, start, wait until it answers
#   scripts/kafka.sh start-secure
#                             the same, secured: SASL/SCRAM-SHA-512 over TLS (a CA and broker
#                             certificate made with the JDK's keytool; clients trust $KAFKA_STATE/ca.pem),
#                             the KRaft StandardAuthorizer with no ACL meaning no access, super user
#                             `admin`, and one SCRAM user per role (portal gzac bridge notifier operator
#                             integrator). Test broker only: user X has the password X-secret.
#   scripts/kafka.sh stop     stop it (SIGTERM, then SIGKILL after 30 s); no process is left behind
#   scripts/kafka.sh kill     SIGKILL it, as a crash would (its data stays)
#   scripts/kafka.sh resume   start it again on its own data (after kill or stop), wait until it answers
#   scripts/kafka.sh status   exit 0 when the broker answers
#   scripts/kafka.sh start-cluster
#                             three KRaft nodes (each broker and controller, a static quorum of 3) on
#                             client ports KAFKA_PORT, +2, +4 (controllers +1, +3, +5), data in
#                             $KAFKA_STATE/node-N; internal topics replicated 3 times,
#                             min.insync.replicas 2: the production topology
#   scripts/kafka.sh stop-node N | kill-node N | resume-node N
#                             SIGTERM (a rolling restart's step) or SIGKILL node N of the cluster, or
#                             start it again on its own data and wait until it answers
#   (stop, with a cluster started, stops every node)
#
# Needs: java (17+) and mvn on PATH. Env: KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093),
# KAFKA_CACHE (~/.cache/gzac-portal-bridge), KAFKA_STATE (target/kafka).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
port=${KAFKA_PORT:-19092}
cport=${KAFKA_CONTROLLER_PORT:-19093}
cache=${KAFKA_CACHE:-$HOME/.cache/gzac-portal-bridge}
libs="$cache/kafka-$version/libs"
state=${KAFKA_STATE:-$root/target/kafka}
pidfile="$state/broker.pid"

die() { echo "kafka.sh: $*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null || die "$1 not found on PATH: install $2 (e.g. apt-get install $3)"
}

fetch() {
  [ -f "$libs/.complete" ] && return 0
  need java "a Java 17+ runtime" openjdk-17-jre-headless
  need mvn "Apache Maven" maven
  echo "kafka.sh: fetching Apache Kafka $version jars from Maven Central into $libs" >&2
  rm -rf "$libs"; mkdir -p "$libs"
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs" >&2 \
    || die "could not fetch org.apache.kafka:kafka_2.13:$version with Maven"
  touch "$libs/.complete"
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

roles="portal gzac bridge notifier operator integrator"
# Principals of two municipalities' portals and GZACs on one bridge (tests/secured.rs).
gemeente_users="portal-utrecht portal-zeist gzac-utrecht gzac-zeist"

# A CA, and a broker certificate for 127.0.0.1 signed by it, in a PKCS12 keystore; the CA as PEM
# for clients (librdkafka's ssl.ca.location).
certificates() {
  need keytool "the JDK's keytool" openjdk-17-jre-headless
  local pw=broker-store-secret d="$state/tls"
  mkdir -p "$d"
  keytool -genkeypair -alias ca -keyalg RSA -keysize 2048 -dname "CN=gzac-portal-bridge test CA" \
    -ext bc:c -validity 3650 -keystore "$d/ca.p12" -storetype PKCS12 -storepass "$pw" >/dev/null 2>&1
  keytool -exportcert -alias ca -keystore "$d/ca.p12" -storepass "$pw" -rfc -file "$state/ca.pem" >/dev/null 2>&1
  keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -dname "CN=127.0.0.1" -validity 3650 \
    -keystore "$d/broker.p12" -storetype PKCS12 -storepass "$pw" >/dev/null 2>&1
  keytool -certreq -alias broker -keystore "$d/broker.p12" -storepass "$pw" -file "$d/broker.csr" >/dev/null 2>&1
  keytool -gencert -alias ca -keystore "$d/ca.p12" -storepass "$pw" -infile "$d/broker.csr" -outfile "$d/broker.pem" \
    -rfc -validity 3650 -ext "SAN=IP:127.0.0.1,DNS:localhost" -ext ku:c=digitalSignature,keyEncipherment \
    -ext eku=serverAuth >/dev/null 2>&1
  keytool -importcert -noprompt -alias ca -file "$state/ca.pem" -keystore "$d/broker.p12" -storepass "$pw" >/dev/null 2>&1
  keytool -importcert -alias broker -file "$d/broker.pem" -keystore "$d/broker.p12" -storepass "$pw" >/dev/null 2>&1 \
    || die "making the broker certificate with keytool failed"
  # The broker is a client of itself (inter-broker listener): it trusts the CA too.
  keytool -importcert -noprompt -alias ca -file "$state/ca.pem" -keystore "$d/truststore.p12" -storetype PKCS12 \
    -storepass "$pw" >/dev/null 2>&1
}

# Listeners and security: clients and the broker itself on SASL_SSL (SCRAM); the controller
# listener SASL_PLAINTEXT with PLAIN (KRaft cannot read SCRAM users before it has its metadata).
secure_properties() {
  local pw=broker-store-secret
  listener_properties SASL_SSL SASL_PLAINTEXT
  cat <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret";
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="admin-secret";
ssl.keystore.type=PKCS12
ssl.keystore.location=$state/tls/broker.p12
ssl.keystore.password=$pw
ssl.key.password=$pw
ssl.truststore.type=PKCS12
ssl.truststore.location=$state/tls/truststore.p12
ssl.truststore.password=$pw
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
PROPS
}

# The client listener (also the broker's own) with protocol $1, the controller listener with $2.
listener_properties() {
  cat <<PROPS
listeners=$1://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$1://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=$1:$1,CONTROLLER:$2
controller.quorum.bootstrap.servers=127.0.0.1:$cport
inter.broker.listener.name=$1
PROPS
}

# A KRaft node (broker and controller) with id $1 in $state, whose internal topics have $2
# replicas and need $3 of them in sync.
node_properties() {
  cat <<PROPS
process.roles=broker,controller
node.id=$1
log.dirs=$state/data
num.partitions=3
default.replication.factor=$2
auto.create.topics.enable=false
offsets.topic.replication.factor=$2
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$2
transaction.state.log.min.isr=$3
transaction.state.log.num.partitions=8
min.insync.replicas=$3
group.initial.rebalance.delay.ms=0
share.coordinator.state.topic.replication.factor=$2
share.coordinator.state.topic.min.isr=$3
PROPS
}

start() {
  local secure=${1:-}
  if running; then echo "kafka.sh: broker already running on 127.0.0.1:$port" >&2; return 0; fi
  answers && die "port $port is taken by another process; set KAFKA_PORT"
  fetch
  rm -rf "$state"; mkdir -p "$state/data"
  local scram=()
  if [ -n "$secure" ]; then
    certificates
    scram+=(--add-scram "SCRAM-SHA-512=[name=admin,password=admin-secret]")
    for r in $roles $gemeente_users; do scram+=(--add-scram "SCRAM-SHA-512=[name=$r,password=$r-secret]"); done
  fi
  { if [ -n "$secure" ]; then secure_properties; else listener_properties PLAINTEXT PLAINTEXT; fi; } > "$state/server.properties"
  node_properties 1 1 1 >> "$state/server.properties"
  cat >> "$state/server.properties" <<PROPS
log.flush.interval.messages=9223372036854775807
PROPS
  local cp="$libs/*"
  java -cp "$cp" kafka.tools.StorageTool format --standalone \
    -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid)" "${scram[@]}" \
    -c "$state/server.properties" > "$state/format.log" 2>&1 \
    || { cat "$state/format.log" >&2; die "formatting the KRaft log dir failed"; }
  launch
}

# Run the broker on the formatted log dir in $state and wait until it answers.
launch() {
  spawn
  await
}

# Start the broker of $state in the background.
spawn() {
  local cp="$libs/*"
  local heap=${KAFKA_HEAP:--Xmx1g -Xms256m}
  : > "$state/broker.log"
  # setsid: the broker gets its own process group, so stop can end it and anything it spawned.
  setsid java $heap -Dlog4j2.level=WARN -cp "$cp" kafka.Kafka "$state/server.properties" \
    > "$state/broker.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
}

# Wait until the broker of $state answers (60 s at most).
await() {
  for _ in $(seq 1 120); do
    if ! running; then tail -50 "$state/broker.log" >&2; die "broker exited during start-up"; fi
    if answers && grep -q "Kafka Server started" "$state/broker.log"; then
      echo "kafka.sh: Apache Kafka $version (KRaft) answers on 127.0.0.1:$port" >&2
      return 0
    fi
    sleep 0.5
  done
  tail -50 "$state/broker.log" >&2; stop; die "broker did not answer within 60 s"
}

resume() {
  if running; then echo "kafka.sh: broker already running on 127.0.0.1:$port" >&2; return 0; fi
  [ -f "$state/server.properties" ] || die "no broker data in $state: run start first"
  answers && die "port $port is taken by another process; set KAFKA_PORT"
  launch
}

crash() {
  running || die "no broker running from $state"
  kill -KILL -- "-$(cat "$pidfile")" 2>/dev/null || kill -KILL "$(cat "$pidfile")"
  while running; do sleep 0.1; done
  rm -f "$pidfile"
  echo "kafka.sh: broker killed (SIGKILL); its data stays in $state" >&2
}

stop() {
  running || { rm -f "$pidfile"; return 0; }
  local pid; pid=$(cat "$pidfile")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "kafka.sh: broker stopped" >&2
}

# The cluster: node N's ports and data. Point the single-broker variables at node $1.
base_port=$port
cluster_state=$state
node() {
  [[ "${1:-}" =~ ^[123]$ ]] || die "name a node of the cluster: 1, 2 or 3"
  port=$((base_port + 2 * ($1 - 1)))
  cport=$((port + 1))
  state="$cluster_state/node-$1"
  pidfile="$state/broker.pid"
}
is_cluster() { [ -d "$cluster_state/node-1" ]; }

start_cluster() {
  is_cluster && [ -f "$cluster_state/node-1/broker.pid" ] && kill -0 "$(cat "$cluster_state/node-1/broker.pid")" 2>/dev/null \
    && { echo "kafka.sh: cluster already running" >&2; return 0; }
  fetch
  local cp="$libs/*" id voters=""
  rm -rf "$cluster_state"
  id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid)
  for n in 1 2 3; do voters+="${voters:+,}$n@127.0.0.1:$((base_port + 2 * n - 1))"; done
  for n in 1 2 3; do
    node $n
    answers && die "port $port is taken by another process; set KAFKA_PORT"
    mkdir -p "$state/data"
    listener_properties PLAINTEXT PLAINTEXT | grep -v '^controller.quorum.bootstrap.servers' > "$state/server.properties"
    echo "controller.quorum.voters=$voters" >> "$state/server.properties"
    node_properties "$n" 3 2 >> "$state/server.properties"
    java -cp "$cp" kafka.tools.StorageTool format -t "$id" -c "$state/server.properties" > "$state/format.log" 2>&1 \
      || { cat "$state/format.log" >&2; die "formatting node $n's KRaft log dir failed"; }
  done
  # A node finishes starting only once the quorum has formed: start all three, then wait.
  for n in 1 2 3; do node $n; KAFKA_HEAP=${KAFKA_HEAP:--Xmx512m -Xms128m} spawn; done
  for n in 1 2 3; do node $n; await; done
}

stop_cluster() {
  for n in 1 2 3; do node $n; stop; done
}

case "${1:-}" in
  start) start ;;
  start-secure) start secure ;;
  start-cluster) start_cluster ;;
  stop) if is_cluster; then stop_cluster; else stop; fi ;;
  kill) crash ;;
  resume) resume ;;
  stop-node) node "${2:-}"; stop ;;
  kill-node) node "${2:-}"; crash ;;
  resume-node) node "${2:-}"; resume ;;
  fetch) fetch ;;
  status) answers ;;
  *) echo "usage: $0 start|start-secure|start-cluster|stop|kill|resume|stop-node N|kill-node N|resume-node N|status|fetch" >&2; exit 2 ;;
esac
