#!/usr/bin/env bash
# The node benchmarks of docs/benchmarks.md, one after another on a fresh node.
# Usage: tests/bench/node-bench.sh target/release/tern
set -u
T=$1
D=$(mktemp -d)
export TERN_SERVER=127.0.0.1:7431 TERN_CA=$D/ca.pem
RUST_LOG=warn $T serve --data $D --listen 127.0.0.1:7431 > /tmp/node-bench.log 2>&1 &
NODE=$!
sleep 2
echo "idle RSS KiB: $(ps -o rss= -p $NODE)"
echo "## batch 1000, 1 producer";  $T bench pub --batch 1000 --count 500000 2>&1 | tail -2
echo "## batch 1000, 4 producers"; $T bench pub --batch 1000 --count 1000000 --producers 4 2>&1 | tail -2
echo "## per-message, 8 producers, window 1000"; $T bench pub --producers 8 --window 1000 --count 500000 2>&1 | tail -2
echo "## steady 10,000 msg/s"; $T bench pub --rate 10000 --duration 10 2>&1 | tail -2
echo "stream: $($T stream info bench --json)"
echo "RSS with backlog KiB: $(ps -o rss= -p $NODE)"
echo "## consume backlog"; $T bench sub --count 1000000 --window 5000 2>&1 | tail -2 | head -1
echo "RSS after consume KiB: $(ps -o rss= -p $NODE)"
kill -TERM $NODE; wait $NODE; echo "node exit: $?"
du -sh $D; rm -rf $D
