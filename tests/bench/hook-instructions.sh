#!/usr/bin/env bash
# Instructions per message of each bundled plugin's hook on the benchmarks' 1,000-message
# batch (1 KiB JSON payloads, three headers): `perf stat -e instructions:u` of the
# hook_calls example with 201 calls minus 1 call, divided by 200,000. Loading and compiling
# the plugin are in both runs and cancel out.
# Usage: tests/bench/hook-instructions.sh target/release/examples/hook_calls [CASE...]
# Build first: cargo build --release -p tern-plugin --example hook_calls
# Needs perf (linux-perf) and permission to count user-space instructions.
set -eu
B=$1
shift
CASES=${*:-route-keep route-headers route-json residency dedup-json}
count() {
  perf stat -x, -e instructions:u "$B" "$1" "$2" 2>&1 >/dev/null | grep instructions | cut -d, -f1
}
for c in $CASES; do
  one=$(count "$c" 1)
  many=$(count "$c" 201)
  echo "$c $(( (many - one) / 200000 ))"
done
