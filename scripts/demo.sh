#!/usr/bin/env bash
# The main job: `amqp perf` for a few seconds against the local RabbitMQ (installed and
# started first if needed, by the same script the tests use), then `amqp decode` over the
# recorded pika <-> RabbitMQ traffic shipped in the repo. Extra arguments go to amqp perf.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/rabbitmq.sh
cargo build --release -q -p amqp-cli
amqp="${CARGO_TARGET_DIR:-target}/release/amqp"

echo "== amqp perf: 1 producer, 1 consumer, 128 B, confirms (window 1000), prefetch 1000, 5 s"
"$amqp" perf --producers 1 --consumers 1 --size 128 --confirm 1000 --prefetch 1000 --duration 5s "$@"

echo
echo "== amqp decode --roundtrip: every frame of amqp-codec/testdata/pika"
"$amqp" decode --roundtrip amqp-codec/testdata/pika/*.bin | tail -n 1
