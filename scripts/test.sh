#!/usr/bin/env bash
# Every test, the real-broker ones included: builds once, starts a real single-node Apache Kafka
# broker (scripts/kafka.sh: jars from Maven Central, cached), runs `cargo test`, stops the broker.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test exactly_once`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --all-targets
scripts/kafka.sh start
trap 'scripts/kafka.sh stop' EXIT
export GZAC_TEST_BOOTSTRAP="127.0.0.1:${KAFKA_PORT:-19092}"
cargo test --locked --no-fail-fast "$@"
