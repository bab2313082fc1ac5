#!/usr/bin/env bash
# The main job, until the `amqp` command-line tool exists: decode every frame of the recorded
# pika <-> RabbitMQ traffic shipped in the repo, check that each re-encodes byte for byte,
# and show the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p amqp-codec --example frames
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ./target/release/examples/frames --roundtrip amqp-codec/testdata/pika/*.bin >"$out"; then status=0; else status=$?; fi
head -n 25 "$out"
echo "... ($(wc -l <"$out") lines; every frame of amqp-codec/testdata/pika)"
grep -E 'FAILED' "$out" || true
tail -n 1 "$out"
exit "$status"
