#!/usr/bin/env bash
# Instructions per message of each bundled plugin's hook on the benchmarks' 1,000-message
# batch (1 KiB JSON payloads, three headers): `perf stat -e instructions:u` of the
# hook_calls example with 201 calls minus 1 call, divided by 200,000. Loading and compiling
# the plugin are in both runs and cancel out. Where perf cannot count instructions (it says
# "<not supported>" on some virtual machines), valgrind's cachegrind counts them instead,
# with 21 calls minus 1 (divided by 20,000); it counts a little higher where payloads are
# copied (a `rep movsb` per iteration).
# Usage: tests/bench/hook-instructions.sh target/release/examples/hook_calls [CASE...]
# Build first: cargo build --release -p tern-plugin --example hook_calls
# Needs perf (linux-perf) with permission to count user-space instructions, or valgrind.
set -eu
B=$1
shift
CASES=${*:-route-keep route-headers route-json residency dedup-json}
if perf stat -x, -e instructions:u true 2>&1 | grep -q '^[0-9]'; then
  METER=perf CALLS=201
  count() {
    perf stat -x, -e instructions:u "$B" "$1" "$2" 2>&1 >/dev/null | grep instructions | cut -d, -f1
  }
else
  METER=cachegrind CALLS=21
  count() {
    valgrind --tool=cachegrind --cache-sim=no --smc-check=all-non-file \
      --cachegrind-out-file=/dev/null "$B" "$1" "$2" 2>&1 | grep 'I *refs' | awk '{print $NF}' | tr -d ,
  }
fi
echo "# instructions per message, counted by $METER"
for c in $CASES; do
  one=$(count "$c" 1)
  many=$(count "$c" $CALLS)
  echo "$c $(( (many - one) / ((CALLS - 1) * 1000) ))"
done
