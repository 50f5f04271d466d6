#!/usr/bin/env bash
# Side-by-side: DataMesh (release build of the project checkout), over gRPC and the wire
# protocol, each on the Unix socket and TCP, against PostgreSQL 15 and Redis 7 (AOF always) on the same machine, alternating, ROUNDS rounds. Durable everywhere.
# Beside them, a reference for W5 that is not a peer: Redis GET of a key, 8 clients, what
# one request per round trip costs on this machine with the leanest server there is.
# Usage: sidebyside.sh PROJECT_CHECKOUT [OUTDIR] (build the release binaries first:
# cargo build --release). Needs root and: apt-get install -y postgresql-15 redis-server redis-tools fio bc.
set -uo pipefail
PEERS=${PEERS:-$(cd "$(dirname "$0")/../../shared/bench/peers" 2>/dev/null && pwd)}
PROJ=$(cd "${1:?project checkout}" && pwd); OUT=${2:-/tmp/datamesh-sidebyside}; ROUNDS=${ROUNDS:-2}; SECS=${SECS:-10}
DM=$PROJ/target/release/datamesh
mkdir -p "$OUT"; : >"$OUT/summary.tsv"
row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" | tee -a "$OUT/summary.tsv"; }
dm_round() { # round
  local r=$1 d=/tmp/sbs-dm port=17171 pid
  for t in unix tcp wire-unix wire-tcp; do
    # A fresh node per transport: each one's W1 appends to an empty log with no
    # projection folding beside it (W3 deploys balances).
    rm -rf $d; mkdir -p $d
    $DM serve --data $d/data --listen 127.0.0.1:$port --socket $d/s.sock >$d/serve.log 2>&1 & pid=$!
    for _ in $(seq 100); do $DM status --node http://127.0.0.1:$port >/dev/null 2>&1 && break; sleep 0.1; done
    local node
    case $t in
      unix) node=unix:$d/s.sock ;; tcp) node=http://127.0.0.1:$port ;;
      wire-unix) node=dmw+unix:$d/s.sock ;; wire-tcp) node=dmw://127.0.0.1:$port ;;
    esac
    for w in w1 w2 w3 w5; do
      local args="--workload $w --seconds $SECS"; [ $w = w1 ] && args="--workload w1 --events 1000000"
      local line; line=$($DM --node $node bench $args 2>&1 | tr '\r' '\n' | grep -E '^w[0-9]' | tail -1)
      row "$r" "datamesh-$t" "$w" "$line"
    done
    kill $pid; wait $pid 2>/dev/null; rm -rf $d
  done
  # W4 through a node: 1M events appended, then deploy `balances` and wait until caught up.
  mkdir -p $d
  $DM serve --data $d/data --listen 127.0.0.1:$port >$d/serve.log 2>&1 & pid=$!
  for _ in $(seq 100); do $DM status --node http://127.0.0.1:$port >/dev/null 2>&1 && break; sleep 0.1; done
  $DM --node http://127.0.0.1:$port bench --workload w1 --events 1000000 >/dev/null 2>&1
  printf '%s\n' 'event Deposited { account: string, amount: int, note: string = "" }' \
    'projection balances v1 { key account  state { balance: int = 0, tx_count: int = 0 }' \
    '  on Deposited { balance += event.amount; tx_count += 1 } }' >$d/w4.dmp
  local s e; s=$(date +%s.%N)
  # One command, as one psql call is PostgreSQL's: deploy, then wait (server side, no
  # poller competing with the rebuild for the 2 cores) until balances has applied
  # every event.
  $DM --node http://127.0.0.1:$port deploy $d/w4.dmp --wait 600 >/dev/null 2>&1 && caught=1
  e=$(date +%s.%N)
  if [ -n "${caught:-}" ]; then
    row "$r" datamesh-node w4 "rebuild of 1000000 events in $(echo "$e - $s" | bc) s = $(echo "1000000 / ($e - $s)" | bc) events/s"
  else
    row "$r" datamesh-node w4 "FAILED: the rebuild did not finish (see $d/serve.log)"
  fi
  caught=
  kill $pid; wait $pid 2>/dev/null; rm -rf $d
}
pg_round() {
  local r=$1
  ( cd "$PEERS/postgres" && DURATION=$SECS PGPEER_OUT=$OUT/pg-$r ./start.sh >/dev/null 2>&1 && DURATION=$SECS PGPEER_OUT=$OUT/pg-$r ./run_once.sh 1 >$OUT/pg-$r.log 2>&1; DURATION=$SECS PGPEER_OUT=$OUT/pg-$r ./stop.sh >/dev/null 2>&1 )
  awk -F'\t' 'NR>1{print $1"\t"$2" ev/s\tp50 "$5" ms\tp99 "$6" ms"}' "$OUT/pg-$r/run-1/results.tsv" | while IFS=$'\t' read -r w rest; do row "$r" postgres "$w" "$rest"; done
}
redis_round() {
  local r=$1
  ( cd "$PEERS/redis" && export REDISPEER_OUT=$OUT/redis-$r W2_N_always=$((SECS*10000)); ./start.sh always >/dev/null 2>&1 && ./run_once.sh 1 always >$OUT/redis-$r.log 2>&1; ./stop.sh always >/dev/null 2>&1 )
  awk -F'\t' 'NR>1{print $1"\t"$2" ev/s\tp50 "$4" ms\tp99 "$5" ms"}' "$OUT/redis-$r/always/run-1/results.tsv" | while IFS=$'\t' read -r w rest; do row "$r" redis-always "$w" "$rest"; done
}
floor_round() { # round: Redis GET with 8 clients, no persistence: one request per round trip, the lean-est server there is
  local r=$1 d=/tmp/sbs-floor
  rm -rf $d; mkdir -p $d
  redis-server --port 0 --unixsocket $d/r.sock --save '' --appendonly no --dir $d >$d/redis.log 2>&1 & local pid=$!
  for _ in $(seq 50); do [ -S $d/r.sock ] && break; sleep 0.1; done
  redis-benchmark -s $d/r.sock -c 8 -n 10000 -r 10000 -t set -q >/dev/null 2>&1
  local csv; csv=$(redis-benchmark -s $d/r.sock -c 8 -n $((SECS * 100000)) -r 10000 -t get --csv 2>/dev/null | grep '^"GET"')
  kill $pid; wait $pid 2>/dev/null; rm -rf $d
  # "GET","rps","avg","min","p50","p95","p99","max"
  local rps p50 p99; IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"$(echo "$csv" | tr -d '"')"
  [ -n "$rps" ] && row "$r" redis-get w5 "$rps ev/s	p50 $p50 ms	p99 $p99 ms"
}
{ date -u; uptime; python3 - <<'PY'
import os,time
fd=os.open('/tmp/sbs.fs',os.O_WRONLY|os.O_CREAT|os.O_TRUNC); b=b'x'*4096; t=time.time(); n=0
while time.time()-t<3: os.write(fd,b); os.fdatasync(fd); n+=1
print("fdatasync 4KiB/s", round(n/3)); os.close(fd); os.remove('/tmp/sbs.fs')
PY
} | tee "$OUT/machine.txt"
for r in $(seq 1 "$ROUNDS"); do dm_round $r; pg_round $r; redis_round $r; floor_round $r; done
echo "done"
