#!/usr/bin/env bash
# Runs every test of the workspace against a real RabbitMQ, which it installs and starts first
# if needed. This is the README's test command, and .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/rabbitmq.sh
bash scripts/postgres.sh

# mq-patterns' PostgreSQL store is an opt-in feature; its tests run here all the same.
features=(--features mq-patterns/postgres)

# The peer crates used only for comparison (amq-protocol, lapin, amqprs) live in `benches`,
# which is left out here so that the suite does not have to build them.
# broker_alarm raises RabbitMQ's memory alarm, which blocks every publisher on the broker:
# it runs alone, after everything else.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --exclude benches "${features[@]}" --no-fail-fast -E 'not binary(broker_alarm)'
  cargo nextest run --workspace --exclude benches "${features[@]}" --no-fail-fast -E 'binary(broker_alarm)'
else
  echo "test.sh: cargo-nextest not found; using cargo test (one test binary at a time)"
  cargo test --workspace --exclude benches "${features[@]}" --no-fail-fast --lib --bins --tests --examples
fi
# nextest does not run doctests; the API's runnable examples are tests too.
cargo test --workspace --exclude benches "${features[@]}" --doc

# The patterns' examples run against the broker, as a user would run them.
for example in dead_letter confirms idempotent outbox; do
  cargo run -q -p mq-patterns "${features[@]}" --example "$example"
done
