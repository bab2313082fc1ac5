#!/usr/bin/env bash
# Seeds the corpora from recorded traffic, then fuzzes every target for SECONDS seconds each.
# Exits non-zero if any target crashed, failed an assertion, timed out or ran out of memory;
# the input that did it is in fuzz/artifacts/<target>/. Usage: fuzz/run.sh SECONDS
set -euo pipefail

seconds=${1:?usage: fuzz/run.sh SECONDS}
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
python3 seed.py

# cargo-fuzz passes -Zsanitizer and friends; this lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
cargo fuzz build

failed=()
for target in $(cargo fuzz list); do
    echo "=== $target: ${seconds}s"
    if ! cargo fuzz run "$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: failed: ${failed[*]}; reproduce with: cargo fuzz run TARGET artifacts/TARGET/<file>" >&2
    ls -l artifacts/*/ >&2 || true
    exit 1
fi
echo "fuzz: all targets ran ${seconds}s without a failure"
