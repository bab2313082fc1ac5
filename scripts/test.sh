#!/usr/bin/env bash
# Runs every test of the workspace against a real RabbitMQ, which it installs and starts first
# if needed. This is the README's test command, and .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/rabbitmq.sh
bash scripts/postgres.sh
# The failover test's three-node cluster, beside the main broker; stopped when the run ends.
bash scripts/cluster.sh start
trap 'bash scripts/cluster.sh stop' EXIT

# mq-patterns' PostgreSQL store is an opt-in feature; its tests run here all the same.
features=(--features mq-patterns/postgres)

# The peer crates used only for comparison (amq-protocol, lapin, amqprs) live in `benches`,
# which is left out here so that the suite does not have to build them.
# broker_alarm raises RabbitMQ's memory alarm, which blocks every publisher on the broker, and
# recovery_broker closes every connection and restarts the broker: they run alone, one test at
# a time, after everything else.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --exclude benches "${features[@]}" --no-fail-fast -E 'not (binary(broker_alarm) | binary(recovery_broker))'
  cargo nextest run --workspace --exclude benches "${features[@]}" --no-fail-fast --test-threads 1 -E 'binary(broker_alarm) | binary(recovery_broker)'
else
  echo "test.sh: cargo-nextest not found; using cargo test (one test binary at a time)"
  cargo test --workspace --exclude benches "${features[@]}" --no-fail-fast --lib --bins --tests --examples
fi
# nextest does not run doctests; the API's runnable examples are tests too.
cargo test --workspace --exclude benches "${features[@]}" --doc

# The patterns' examples run against the broker, as a user would run them.
for example in dead_letter confirms delayed ordering manual_ack idempotent outbox recovery; do
  cargo run -q -p mq-patterns "${features[@]}" --example "$example"
done
