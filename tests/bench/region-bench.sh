#!/usr/bin/env bash
# Quorum publish in a 3-node region against a node on its own, in the same run, on
# loopback (and the region at ack level leader); then latency at a steady 5,000 msg/s in
# the region.
# Usage: tests/bench/region-bench.sh target/release/tern [rounds]
# REGION_CONFIG=FILE adds `--config FILE` to the region's nodes (e.g. snapshot settings).
set -u
T=$1
ROUNDS=${2:-2}
D=$(mktemp -d)
P="1=127.0.0.1:7531/127.0.0.1:7521,2=127.0.0.1:7532/127.0.0.1:7522,3=127.0.0.1:7533/127.0.0.1:7523"

single() {
  RUST_LOG=warn $T serve --data $D/single --listen 127.0.0.1:7520 > $D/single.log 2>&1 &
  SINGLE=$!
  sleep 2
}
region() {
  for i in 1 2 3; do
    RUST_LOG=warn $T serve --data $D/n$i --listen 127.0.0.1:752$i --region bench --node-id $i \
      --peers $P --region-listen 127.0.0.1:753$i --region-ca-dir $D/ca \
      ${REGION_CONFIG:+--config "$REGION_CONFIG"} > $D/n$i.log 2>&1 &
    NODES[$i]=$!
  done
  sleep 4
}
workloads() { # $1 = label, then client flags
  local label=$1; shift
  echo "## $label: batch 1000, 4 producers"
  $T bench pub "$@" --batch 1000 --count 400000 --producers 4 2>&1 | tail -2
  echo "## $label: per-message, 8 producers, window 1000"
  $T bench pub "$@" --producers 8 --window 1000 --count 200000 2>&1 | tail -2
}

single
region
R="--server 127.0.0.1:7521,127.0.0.1:7522,127.0.0.1:7523 --ca $D/n1/ca.pem"
S="--server 127.0.0.1:7520 --ca $D/single/ca.pem"
for r in $(seq 1 "$ROUNDS"); do
  echo "# round $r"
  workloads "single node" $S
  workloads "region of 3 (quorum)" $R
  workloads "region of 3 (ack level leader)" $R --ack leader
  echo "## resident memory (KiB): single node, region nodes 1-3"
  ps -o rss= -p $SINGLE ${NODES[1]} ${NODES[2]} ${NODES[3]} | tr '\n' ' '; echo
done
echo "## region of 3: steady 5,000 msg/s for 20 s"
$T bench pub $R --rate 5000 --duration 20 2>&1 | tail -2
echo "## region of 3, ack level leader: steady 5,000 msg/s for 20 s"
$T bench pub $R --rate 5000 --duration 20 --ack leader 2>&1 | tail -2
echo "## single node: steady 5,000 msg/s for 20 s"
$T bench pub $S --rate 5000 --duration 20 2>&1 | tail -2
$T region status $R
kill -TERM $SINGLE ${NODES[1]} ${NODES[2]} ${NODES[3]}
wait
du -sh $D/n1 $D/single
grep -h "ERROR\|panicked" $D/*.log | head -20
rm -rf $D
