#!/usr/bin/env bash
# Every test, the real-broker ones included: installs a JRE and Maven when missing, builds once,
# starts a real single-node Apache Kafka
# broker (scripts/kafka.sh: jars from Maven Central, cached), runs `cargo test`, stops the broker.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test exactly_once`).
set -euo pipefail
cd "$(dirname "$0")/.."

# What the real-broker tests need beyond Rust: a Java runtime (with keytool) and Maven to fetch
# the Kafka jars. Installed here when missing (Debian/Ubuntu; sudo when not root).
missing=()
command -v java >/dev/null && command -v keytool >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "test.sh: install ${missing[*]} (no apt-get here)" >&2; exit 1; }
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "test.sh: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

cargo build --locked --all-targets
scripts/kafka.sh start
trap 'scripts/kafka.sh stop' EXIT
export GZAC_TEST_BOOTSTRAP="127.0.0.1:${KAFKA_PORT:-19092}"
cargo test --locked --no-fail-fast "$@"
