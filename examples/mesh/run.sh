#!/usr/bin/env bash
# examples/mesh/run.sh: four nodes on this machine, importing from each other.
#
#   payments ──PaymentSettled──┐
#                              ├──▶ bank ──Deposited, Withdrawn, FeeCharged──▶ reporting
#   cards ─────CardCharged─────┘
#
# Starts the four nodes (each with its own data directory in a private temporary
# directory), deploys the four programs, appends payments and card charges, waits
# until every link has imported everything, prints what bank and reporting computed
# and the links in their status, then stops the nodes and removes the directory.
#
# Usage: examples/mesh/run.sh [--keep] [--tls]
#   --keep       leave the nodes running and the directory in place, and print how to
#                reach and stop them (to try the experiments in README.md)
#   --tls        run the mesh over mutual TLS: `datamesh cert dev` makes a CA and a
#                certificate per node, every node serves TLS and verifies its peers'
#                certificates (each exporter serves a peer only what is exported to
#                the node its certificate names), and every link is https://
# Environment:
#   DATAMESH     the datamesh binary (default: target/release/datamesh, then
#                target/debug/datamesh, then `datamesh` on PATH)
#   BASE_PORT    serve on 127.0.0.1:BASE_PORT .. BASE_PORT+3 (default: ports the
#                kernel picks, read back from each node's "listening on" line)
set -euo pipefail

if ((BASH_VERSINFO[0] < 4)); then
  echo "run.sh: needs bash 4 or later (this is $BASH_VERSION)" >&2
  exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

keep=0
tls=0
for arg in "$@"; do
  case $arg in
    --keep) keep=1 ;;
    --tls) tls=1 ;;
    -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument \`$arg\` (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -n ${DATAMESH:-} ]]; then
  dm=$DATAMESH
elif [[ -x $root/target/release/datamesh ]]; then
  dm=$root/target/release/datamesh
elif [[ -x $root/target/debug/datamesh ]]; then
  dm=$root/target/debug/datamesh
else
  dm=datamesh
fi
if ! command -v "$dm" >/dev/null 2>&1; then
  echo "run.sh: no datamesh binary (tried \`$dm\`): build it with" >&2
  echo "  cargo build --release -p datamesh" >&2
  echo "or set DATAMESH=/path/to/datamesh" >&2
  exit 2
fi

nodes=(payments cards bank reporting)
if [[ -n ${BASE_PORT:-} ]]; then
  if ! [[ $BASE_PORT =~ ^[0-9]+$ ]] || ((BASE_PORT < 1024 || BASE_PORT > 65532)); then
    echo "run.sh: BASE_PORT must be a number from 1024 to 65532" >&2
    exit 2
  fi
  for i in 0 1 2 3; do
    # Something answering there means the port is taken.
    if (exec 3<>"/dev/tcp/127.0.0.1/$((BASE_PORT + i))") 2>/dev/null; then
      echo "run.sh: port $((BASE_PORT + i)) is in use; pick another BASE_PORT" >&2
      exit 2
    fi
  done
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/datamesh-mesh.XXXXXX")
chmod 700 "$tmp"
declare -A pid addr command
scheme=http
client_tls=()

stop_nodes() {
  local status=$?
  trap - EXIT INT TERM
  if ((keep)) && ((status == 0)); then
    exit 0
  fi
  local node p i
  for node in "${nodes[@]}"; do
    p=${pid[$node]:-}
    [[ -n $p ]] && kill -TERM "$p" 2>/dev/null || true
  done
  for node in "${nodes[@]}"; do
    p=${pid[$node]:-}
    [[ -n $p ]] || continue
    # A node stops gracefully on SIGTERM; give it 10 s, then kill it.
    for ((i = 0; i < 100; i++)); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if ((status != 0)); then
    for node in "${nodes[@]}"; do
      if [[ -s $tmp/$node.log ]]; then
        echo "--- last lines of $node's log ($tmp/$node.log):" >&2
        tail -n 15 "$tmp/$node.log" >&2
      fi
    done
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap stop_nodes EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((tls)); then
  # A development CA and one certificate per node (valid for 127.0.0.1, naming the
  # node as datamesh://NAME).
  "$dm" cert dev --out "$tmp/certs" "${nodes[@]}" >/dev/null
  scheme=https
  client_tls=(--ca "$tmp/certs/ca.pem")
fi

# start NAME INDEX [serve flags...]: starts a node and waits (at most 30 s) until it
# says it listens; sets addr[NAME] to its http:// (or https://) address.
start() {
  local node=$1 index=$2
  shift 2
  local listen=127.0.0.1:0
  if [[ -n ${BASE_PORT:-} ]]; then
    listen=127.0.0.1:$((BASE_PORT + index))
  fi
  local args=(serve --name "$node" --data "$tmp/$node" --listen "$listen" "$@")
  if ((tls)); then
    args+=(--tls-cert "$tmp/certs/$node.pem" --tls-key "$tmp/certs/$node.key"
      --tls-ca "$tmp/certs/ca.pem")
  fi
  # NO_COLOR: plain log lines in the log file.
  NO_COLOR=1 "$dm" "${args[@]}" 2>"$tmp/$node.log" >/dev/null &
  pid[$node]=$!
  local i line=
  for ((i = 0; i < 300; i++)); do
    line=$(grep -m1 '^datamesh listening on [0-9]' "$tmp/$node.log" || true)
    [[ -n $line ]] && break
    if ! kill -0 "${pid[$node]}" 2>/dev/null; then
      echo "run.sh: $node stopped while starting" >&2
      return 1
    fi
    sleep 0.1
  done
  if [[ -z $line ]]; then
    echo "run.sh: $node did not start listening within 30 s" >&2
    return 1
  fi
  addr[$node]=$scheme://${line#datamesh listening on }
  # How to start it again (on the port it has now), for --keep.
  args[6]=${addr[$node]#*://}
  command[$node]=$(printf '%q ' "$dm" "${args[@]}")
  # With --socket the node prints a second line once the socket is ready.
  if [[ $* == *--socket* ]]; then
    for ((i = 0; i < 100; i++)); do
      grep -q '^datamesh listening on unix:' "$tmp/$node.log" && break
      sleep 0.1
    done
  fi
  echo "started $node (pid ${pid[$node]}) on ${addr[$node]}"
}

# at NODE COMMAND...: runs a client command against a node (for at most 20 s, where
# `timeout` exists).
limit=()
if command -v timeout >/dev/null 2>&1; then
  limit=(timeout 20)
fi
at() {
  local node=$1
  shift
  ${limit[@]+"${limit[@]}"} "$dm" --node "${addr[$node]}" ${client_tls[@]+"${client_tls[@]}"} "$@"
}

# Exporters first, so that importers can be given their addresses. The bank reaches
# payments through its Unix socket (as a service's node on the same host would) and
# cards and reporting over TCP; with --tls every link is TLS (a Unix socket carries
# no certificate, and these exporters serve only peers that present one).
start payments 0 --socket "$tmp/payments.sock"
start cards 1
payments_address=unix:$tmp/payments.sock
((tls)) && payments_address=${addr[payments]}
start bank 2 --peer "payments=$payments_address" --peer "cards=${addr[cards]}"
start reporting 3 --peer "bank=${addr[bank]}"

echo
echo "== deploy"
for node in "${nodes[@]}"; do
  echo "$node: $(at "$node" deploy "$here/$node.dmp" | tr -d '\n')"
done

echo
echo "== append"
# Payments: three in euros (one with a fee), one in dollars (the bank does not import
# it), and a failure (not exported at all).
cat >"$tmp/payments.jsonl" <<'EOF'
{"type":"PaymentSettled","data":{"payment":"p1","iban":"de01","cents":10000,"currency":"EUR","fee_cents":250},"stream":"payment-p1","id":"p1"}
{"type":"PaymentSettled","data":{"payment":"p2","iban":"de02","cents":5000,"currency":"EUR"},"stream":"payment-p2","id":"p2"}
{"type":"PaymentSettled","data":{"payment":"p3","iban":"de01","cents":2000,"currency":"USD"},"stream":"payment-p3","id":"p3"}
{"type":"PaymentFailed","data":{"payment":"p4","reason":"insufficient funds"},"stream":"payment-p4","id":"p4"}
{"type":"PaymentSettled","data":{"payment":"p5","iban":"de02","cents":1999,"currency":"EUR"},"stream":"payment-p5","id":"p5"}
EOF
echo "payments: $(at payments append --file "$tmp/payments.jsonl" | tr -d '\n')"
for charge in 'c1 de01 1250 cafe' 'c2 de02 499 books' 'c3 de01 3000 rail'; do
  read -r id account cents merchant <<<"$charge"
  echo "cards: $(at cards append CardCharged \
    "{\"charge\":\"$id\",\"account\":\"$account\",\"cents\":$cents,\"merchant\":\"$merchant\"}" \
    --id "$id" --stream "card-$account" | tr -d '\n')"
done

# head NODE: the node's log head.
head_of() {
  at "$1" status --json | sed -n 's/^  "head": \([0-9]*\),$/\1/p'
}

# caught_up NODE PEER...: whether each of NODE's links to PEER is live and has
# imported up to that peer's head as it is now.
caught_up() {
  local node=$1 peer status link head field
  shift
  status=$(at "$node" status --json | tr -d ' \n')
  for peer in "$@"; do
    head=$(head_of "$peer")
    [[ -n $head ]] || return 1
    link=$(grep -o "{\"peer\":\"$peer\",[^{}]*}" <<<"$status") || return 1
    for field in '"state":"live"' "\"position\":$head" '"lag":0'; do
      [[ $link == *"$field",* || $link == *"$field"\}* ]] || return 1
    done
  done
}

echo
echo "== wait for the links (at most 30 s)"
ok=0
started=$SECONDS
for ((i = 0; i < 60 && SECONDS - started < 30; i++)); do
  if caught_up bank payments cards && caught_up reporting bank; then
    ok=1
    break
  fi
  sleep 0.5
done
if ((!ok)); then
  echo "run.sh: the links did not catch up within 30 s" >&2
  for node in bank reporting; do
    echo "--- $node status:" >&2
    at "$node" status --json >&2 || true
  done
  exit 1
fi
echo "every link is live with lag 0 (after $i polls, about $((SECONDS - started)) s)"

echo
echo "== bank: scan balances"
at bank scan balances
echo
echo "== reporting: scan flows"
at reporting scan flows
echo
echo "== reporting: scan net"
at reporting scan net

# links NODE: the "links" array of a node's status.
links() {
  at "$1" status --json | sed -n '/^  "links": \[/,/^  \]/p'
}
echo
echo "== bank: status (links)"
links bank
echo
echo "== reporting: status (links)"
links reporting

if ((keep)); then
  echo
  echo "== the nodes keep running (--keep); logs and data in $tmp"
  for node in "${nodes[@]}"; do
    echo "$node: pid ${pid[$node]}, --node ${addr[$node]}"
    echo "  start again: NO_COLOR=1 ${command[$node]}2>>$tmp/$node.log &"
  done
  echo "stop them all: kill ${pid[payments]} ${pid[cards]} ${pid[bank]} ${pid[reporting]}; rm -rf $tmp"
fi
