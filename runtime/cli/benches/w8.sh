#!/usr/bin/env bash
# W8 (the mesh): starts two fresh nodes on loopback, an exporter and an importer that
# knows it as a peer, then runs `datamesh bench --workload w8` against them. Extra
# arguments go to the bench (`--events 1000000 --clients 8 --seconds 10`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${DATAMESH:-$ROOT/target/release/datamesh}
if [ ! -x "$BIN" ]; then
  (cd "$ROOT" && cargo build --release -p datamesh)
fi
DIR=$(mktemp -d /tmp/datamesh-w8.XXXXXX)
chmod 700 "$DIR"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

# Starts a node and sets ADDR to its address once it listens (at most 30 s).
start() {
  local name=$1; shift
  RUST_LOG=warn "$BIN" serve --data "$DIR/$name" --listen 127.0.0.1:0 --name "$name" "$@" \
    > /dev/null 2> "$DIR/$name.log" &
  PIDS+=($!)
  ADDR=
  for _ in $(seq 300); do
    ADDR=$(sed -n 's/^datamesh listening on \([0-9.:]*\)$/\1/p' "$DIR/$name.log" | head -n1)
    if [ -n "$ADDR" ]; then return 0; fi
    sleep 0.1
  done
  echo "node $name did not start:" >&2; cat "$DIR/$name.log" >&2; return 1
}

start exporter
EXPORTER=$ADDR
start importer --peer "exporter=http://$EXPORTER"
IMPORTER=$ADDR
"$BIN" --node "http://$EXPORTER" bench --workload w8 --importer "http://$IMPORTER" "$@"
