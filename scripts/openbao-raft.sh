#!/usr/bin/env bash
# Start/stop a throw-away 3-node OpenBao HA cluster (integrated raft storage, TLS) on loopback,
# for the failover tests. Never use it for anything that matters: the root token and the
# unseal key are written to DIR.
#
# Usage:
#   scripts/openbao-raft.sh start DIR BASEPORT   # node N listens on BASEPORT+2(N-1), its
#                                                # cluster port is the next one
#   scripts/openbao-raft.sh stop DIR
#
# Files in DIR (created by `start`):
#   env                  `export BAO_ADDR=<node 1> BAO_CACERT=... BAO_TOKEN=<root>` (0600)
#   ca.pem               the CA that signed every node's certificate (SAN IP:127.0.0.1)
#   root-token, unseal-key   (0600)
#   addresses            the three API addresses, one per line, node 1 first
#   nodeN/server.pid, nodeN/server.log, nodeN/config.hcl, nodeN/data/
# Every wait is bounded; a failed start stops whatever it started.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly HOST="127.0.0.1"
readonly NODES=3
readonly WAIT_S=60

usage() {
  echo "usage: $0 start DIR BASEPORT | stop DIR" >&2
  exit 2
}

api_port() { echo $(($2 + 2 * ($1 - 1))); }

# The HTTP status of node $1's sys/health ("000" when it does not answer).
health_code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$DIR/ca.pem" \
    "https://$HOST:$(api_port "$1" "$BASE")/v1/sys/health" || true
}

wait_health() {
  local node="$1" wanted="$2" deadline=$((SECONDS + WAIT_S))
  until [[ "$(health_code "$node")" =~ ^($wanted)$ ]]; do
    ((SECONDS < deadline)) || die "node $node did not reach health $wanted within ${WAIT_S}s (see $DIR/node$node/server.log)"
    sleep 0.1
  done
}

make_tls() {
  local tls="$DIR/tls"
  mkdir -p "$tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/ca.key" \
    -out "$tls/ca.crt" -days 2 -subj "/CN=bao-kms-raft-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/server.key" \
    -out "$tls/server.csr" -subj "/CN=localhost" 2>/dev/null
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -CAcreateserial -out "$tls/server.crt" -days 2 -extfile <(printf '%s\n' \
      "subjectAltName=IP:$HOST,DNS:localhost" "extendedKeyUsage=serverAuth,clientAuth" \
      "keyUsage=critical,digitalSignature") 2>/dev/null
  chmod 0600 "$tls/ca.key" "$tls/server.key"
  cp "$tls/ca.crt" "$DIR/ca.pem"
}

write_config() {
  local node="$1" dir="$DIR/node$1" api cluster join=""
  api="$(api_port "$node" "$BASE")"
  cluster=$((api + 1))
  mkdir -p "$dir/data"
  if ((node > 1)); then
    join="  retry_join {
    leader_api_addr     = \"https://$HOST:$BASE\"
    leader_ca_cert_file = \"$DIR/tls/ca.crt\"
  }"
  fi
  cat >"$dir/config.hcl" <<HCL
storage "raft" {
  path    = "$dir/data"
  node_id = "node$node"
  performance_multiplier = 1
$join
}
listener "tcp" {
  address         = "$HOST:$api"
  cluster_address = "$HOST:$cluster"
  tls_cert_file   = "$DIR/tls/server.crt"
  tls_key_file    = "$DIR/tls/server.key"
}
api_addr     = "https://$HOST:$api"
cluster_addr = "https://$HOST:$cluster"
ui = false
HCL
}

start_node() {
  local node="$1" dir="$DIR/node$1"
  "$BAO_BIN" server -config="$dir/config.hcl" >"$dir/server.log" 2>&1 &
  echo $! >"$dir/server.pid"
}

unseal() {
  local node="$1"
  BAO_ADDR="https://$HOST:$(api_port "$node" "$BASE")" BAO_CACERT="$DIR/ca.pem" \
    "$BAO_BIN" operator unseal "$(cat "$DIR/unseal-key")" >/dev/null
}

bao_root() {
  BAO_ADDR="https://$HOST:$BASE" BAO_CACERT="$DIR/ca.pem" BAO_TOKEN="$(cat "$DIR/root-token")" \
    "$BAO_BIN" "$@"
}

# How many raft peers are voters (as node 1 sees them).
voters() {
  bao_root operator raft list-peers -format=json 2>/dev/null |
    python3 -c 'import json,sys; print(sum(1 for s in json.load(sys.stdin)["data"]["config"]["servers"] if s.get("voter")))' \
      2>/dev/null || echo 0
}

start() {
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd -P)"
  trap 'stop_all' ERR
  make_tls
  for node in $(seq 1 "$NODES"); do write_config "$node"; done
  : >"$DIR/addresses"
  for node in $(seq 1 "$NODES"); do
    echo "https://$HOST:$(api_port "$node" "$BASE")" >>"$DIR/addresses"
  done

  start_node 1
  wait_health 1 501
  local init
  init="$(BAO_ADDR="https://$HOST:$BASE" BAO_CACERT="$DIR/ca.pem" \
    "$BAO_BIN" operator init -key-shares=1 -key-threshold=1 -format=json)"
  (
    umask 077
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["unseal_keys_b64"][0])' \
      <<<"$init" >"$DIR/unseal-key"
    python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])' \
      <<<"$init" >"$DIR/root-token"
    printf 'export BAO_ADDR=%q BAO_CACERT=%q BAO_TOKEN=%q\n' "https://$HOST:$BASE" \
      "$DIR/ca.pem" "$(cat "$DIR/root-token")" >"$DIR/env"
  )
  unseal 1
  wait_health 1 200
  # Joining nodes start as non-voters until autopilot finds them stable (10 s by default); a
  # cluster whose followers cannot vote cannot elect a new leader when the first one dies.
  bao_root operator raft autopilot set-config -server-stabilization-time=1s \
    -cleanup-dead-servers=false >/dev/null

  for node in $(seq 2 "$NODES"); do
    start_node "$node"
    # A joining node answers 501 (not initialised) until retry_join has fetched the keyring
    # challenge, then needs the unseal key; it settles as a standby (429).
    local deadline=$((SECONDS + WAIT_S))
    until [[ "$(health_code "$node")" == 429 ]]; do
      ((SECONDS < deadline)) || die "node $node did not join as a standby within ${WAIT_S}s"
      if [[ "$(health_code "$node")" =~ ^(501|503)$ ]]; then
        unseal "$node" 2>/dev/null || true
      fi
      sleep 0.2
    done
  done
  local deadline=$((SECONDS + WAIT_S))
  until [[ "$(voters)" == "$NODES" ]]; do
    ((SECONDS < deadline)) || die "the cluster did not reach $NODES voters within ${WAIT_S}s"
    sleep 0.2
  done
  trap - ERR
  log "3-node raft cluster up: $(paste -sd' ' "$DIR/addresses")"
}

stop_all() {
  local pids=()
  for node in $(seq 1 "$NODES"); do
    local pidfile="$DIR/node$node/server.pid"
    [[ -f "$pidfile" ]] || continue
    local pid
    pid="$(cat "$pidfile")"
    # A frozen node never exits on SIGTERM.
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

[[ $# -ge 2 ]] || usage
COMMAND="$1"
DIR="$2"
case "$COMMAND" in
  start)
    [[ $# -eq 3 && "$3" =~ ^[0-9]+$ ]] || usage
    BASE="$3"
    BAO_BIN="${BAO_BIN:-$(bash "$(dirname "${BASH_SOURCE[0]}")/install-bao.sh")}"
    [[ -x "$BAO_BIN" ]] || die "no OpenBao binary (scripts/install-bao.sh failed)"
    start
    ;;
  stop)
    [[ -d "$DIR" ]] || exit 0
    DIR="$(cd "$DIR" && pwd -P)"
    stop_all
    ;;
  *) usage ;;
esac
