#!/usr/bin/env bash
# Publish throughput with plugins attached vs without, in the same run on the same node:
# alternating rounds on stream `policy` (residency-policy + content-router) and `all`
# (json-dedup-key + content-router + residency-policy, and lww-resolver attached, which
# publishes do not call), with stream `bare` (no plugins) before and after each round.
# 1 KiB payloads, ack after fsync.
# Usage: tests/bench/plugin-bench.sh target/release/tern [rounds]
# Needs the bundled plugins built: (cd plugins && cargo build --release).
set -u
T=$1
ROUNDS=${2:-3}
P=plugins/target/wasm32-unknown-unknown/release
D=$(mktemp -d)
export TERN_SERVER=127.0.0.1:7432 TERN_CA=$D/ca.pem
RUST_LOG=warn $T serve --data $D --listen 127.0.0.1:7432 > /tmp/plugin-bench.log 2>&1 &
NODE=$!
sleep 2
for s in bare policy all; do $T stream add $s --subjects "$s.>" > /dev/null; done
deploy() { /usr/bin/time -f "  deploy $2 to $3: %e s" $T plugin deploy $P/$1.wasm --name $2 --stream $3 "${@:4}" > /dev/null; }
deploy residency_policy residency policy --param 'rule.1=header:residency=eu -> tag:eu' --param 'rule.2=subject:*.eu.> -> tag:eu'
deploy content_router router policy --param 'route.1=header:priority=high -> to:{subject}.high' --param 'route.2=subject:*.test.> -> drop'
deploy json_dedup_key dedup all --param 'path=$.order_id'
$T plugin attach router --stream all > /dev/null
$T plugin attach residency --stream all > /dev/null
deploy lww_resolver lww all --param 'field=$.updated_at'
run() { $T bench pub --stream $1 "${@:2}" 2>&1 | grep -E "msg/s" | head -1; }
rate() { grep -o '= [0-9]* msg/s' <<< "$1" | grep -o '[0-9]*'; }
ratio() { awk -v x="$1" -v b="$2" 'BEGIN { printf "%.2f", x / b }'; }
# Each round's plugin runs are compared with the mean of the bare runs just before and just
# after them: the machine's speed drifts within a run, and a bare run on either side
# cancels a steady drift.
for mode in "--batch 1000 --producers 4 --count 400000" "--producers 8 --window 1000 --count 200000"; do
  echo "## $mode"
  before=$(run bare $mode); echo "  bare: $before"
  for r in $(seq 1 $ROUNDS); do
    policy=$(run policy $mode); echo "  policy: $policy"
    all=$(run all $mode); echo "  all: $all"
    after=$(run bare $mode); echo "  bare: $after"
    bare=$(( ($(rate "$before") + $(rate "$after")) / 2 ))
    echo "  round $r: policy $(ratio "$(rate "$policy")" $bare), all $(ratio "$(rate "$all")" $bare) of bare $bare msg/s"
    before=$after
  done
done
$T plugin ls
kill -TERM $NODE; wait $NODE
# Warm restart: the node loads every plugin from the artifact cache.
RUST_LOG=info $T serve --data $D --listen 127.0.0.1:7432 > /tmp/plugin-bench.log 2>&1 &
NODE=$!
for i in $(seq 1 200); do $T plugin ls --json > /dev/null 2>&1 && break; sleep 0.02; done
echo "restart: $(sed 's/\x1b\[[0-9;]*m//g' /tmp/plugin-bench.log | grep -o 'plugins loaded.*')"
kill -TERM $NODE; wait $NODE
rm -rf $D
