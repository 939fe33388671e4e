#!/usr/bin/env bash
# Keyed publishing and the per-key versions index: batched `tern bench pub --keys K` on a
# fresh node whose stream no link copies (not indexed), then on a fresh node whose config
# copies stream `bench` from another region that is not running (indexed, as a stream
# copied from another region is). 1 KiB payloads, ack after fsync.
# Usage: tests/bench/keyed-bench.sh target/release/tern ["K1 K2 ..."]
set -u
T=$1
KEYS=${2:-"0 100 1000 10000"}
run() { # label, then extra serve arguments
  local label=$1; shift
  local d; d=$(mktemp -d)
  cat > $d/link.toml <<END
[[mesh.links]]
region = "elsewhere"
nodes = ["127.0.0.1:9"]
ca = "$d/none.pem"
streams = ["bench"]
END
  RUST_LOG=error $T serve --data $d --listen 127.0.0.1:7493 "${@/LINK/$d/link.toml}" > /dev/null 2>&1 &
  local node=$!
  sleep 1.5
  for k in $KEYS; do
    r=$($T bench pub --server 127.0.0.1:7493 --ca $d/ca.pem --batch 1000 --producers 4 \
      --count 500000 --keys $k 2>&1 | grep -o '= [0-9]* msg/s')
    echo "$label, keys $k: $r"
  done
  kill $node; wait $node 2>/dev/null; rm -rf $d
}
run "stream not copied"
run "stream copied from another region" --config LINK
