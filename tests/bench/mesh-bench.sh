#!/usr/bin/env bash
# Mesh link throughput on loopback: region eu-west (one node) holds N 1 KiB messages in
# stream `orders`; region us-east (one node) starts with a link that copies `orders` and
# catches up. Reports the copy rate from the first copied message to the last (so the
# link's start and its retries until the stream exists do not count). Then the same with
# the residency-policy plugin on both sides of the hop (one producer's quarter of the
# messages stays in eu-west).
# Usage: tests/bench/mesh-bench.sh target/release/tern [N]
# Needs the bundled plugins built: (cd plugins && cargo build --release).
set -u
T=$1
N=${2:-200000}
P=plugins/target/wasm32-unknown-unknown/release
D=$(mktemp -d)
EU="--server 127.0.0.1:7620 --ca $D/eu/ca.pem"
US="--server 127.0.0.1:7720 --ca $D/us/ca.pem"
config() { # region tag port other-region other-tag other-port other-dir streams
  cat <<END
listen = "127.0.0.1:$3"
data_dir = "$D/$1"
region = "$1-r"
region_tags = ["$2"]
[[mesh.links]]
region = "$4-r"
tags = ["$5"]
nodes = ["127.0.0.1:$6"]
ca = "$D/$4/ca.pem"
streams = $7
END
}
config eu eu 7620 us us 7720 '[]' > $D/eu.toml
config us us 7720 eu eu 7620 '["orders"]' > $D/us.toml
msgs() { $T stream info orders --json "$@" 2>/dev/null | grep -o '"msgs":[0-9]*' | grep -o '[0-9]*' || echo 0; }
now_ms() { date +%s%3N; }
round() { # label, then plugin setup ("" or "residency")
  rm -rf $D/eu $D/us
  RUST_LOG=warn $T serve --config $D/eu.toml > $D/eu.log 2>&1 &
  local eu=$!
  sleep 2
  $T stream add orders --subjects 'orders.>' $EU > /dev/null
  local want=$N
  if [ "$2" = residency ]; then
    $T plugin deploy $P/residency_policy.wasm --name residency --stream orders \
      --param 'rule.1=subject:orders.p0 -> tag:eu' $EU > /dev/null
    want=$(( N * 3 / 4 ))
  fi
  # Subjects orders.p0 .. orders.p3, one per producer.
  $T bench pub --stream orders --count $N --size 1024 --batch 1000 --producers 4 $EU 2>&1 | grep -E "msg/s" | head -1 | sed 's/^/  eu-west publish: /'
  RUST_LOG=warn $T serve --config $D/us.toml > $D/us.log 2>&1 &
  local us=$!
  sleep 1
  $T stream add orders --subjects 'orders.>' $US > /dev/null
  if [ "$2" = residency ]; then
    $T plugin deploy $P/residency_policy.wasm --name residency --stream orders \
      --param 'rule.1=subject:orders.p0 -> tag:eu' $US > /dev/null
  fi
  local first=0 t0=0 got=0 deadline=$(( $(now_ms) + 300000 ))
  while [ $(now_ms) -lt $deadline ]; do
    got=$(msgs $US)
    if [ $t0 = 0 ] && [ "$got" -gt 0 ]; then first=$got; t0=$(now_ms); fi
    [ "$got" -ge $want ] && break
    sleep 0.05
  done
  local t1=$(now_ms)
  echo "  us-east copied $got of $want; $(( got - first )) in $(( t1 - t0 )) ms: $(( (got - first) * 1000 / (t1 - t0 + 1) )) msg/s"
  kill $eu $us; wait $eu $us 2>/dev/null
}
echo "## $1, $N messages of 1 KiB"
echo "# no plugins"; round plain ""
echo "# residency-policy on both sides of the hop"; round residency residency
rm -rf $D
