#!/usr/bin/env bash
# Quickstart: a local OpenBao dev server with TLS, the plugin serving on a Unix socket, and a
# KMS v2 client that does what kube-apiserver does: Status, Encrypt, Decrypt. Then the Transit
# key is rotated in OpenBao, the plugin observes and promotes the new version, and the key_id
# hash in the metrics changes. Everything runs on 127.0.0.1 and is stopped on exit.
#
# With --with-kube-apiserver it also starts a real etcd and kube-apiserver (built once by
# scripts/install-kube.sh: several minutes the first time, Go 1.26 needed) whose
# EncryptionConfiguration uses the plugin, creates a Secret through the Kubernetes API and shows
# its raw value in etcd: encrypted, prefixed with k8s:enc:kms:v2:quickstart-kms:.
#
# Usage: ./scripts/quickstart.sh [--with-kube-apiserver]
set -euo pipefail

WITH_KUBE=0
case "${1:-}" in
  "") ;;
  --with-kube-apiserver) WITH_KUBE=1 ;;
  *) printf 'usage: %s [--with-kube-apiserver]\n' "$0" >&2; exit 2 ;;
esac

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT="$(repo_root)"
cd "$ROOT"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bao-kms-quickstart.XXXXXX")"
PLUGIN_PID=""
APISERVER_PID=""
ETCD_PID=""

cleanup() {
  local status=$?
  local pid
  for pid in "$APISERVER_PID" "$ETCD_PID"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [[ -n "$PLUGIN_PID" ]] && kill -0 "$PLUGIN_PID" 2>/dev/null; then
    kill -TERM "$PLUGIN_PID" 2>/dev/null || true
    wait "$PLUGIN_PID" 2>/dev/null || true
  fi
  bash scripts/openbao-dev.sh stop "$WORK/bao" >/dev/null 2>&1 || true
  if [[ $status -ne 0 ]]; then
    log "quickstart failed; plugin log:"
    tail -n 40 "$WORK/plugin.log" >&2 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT INT TERM


read -r BAO_PORT METRICS_PORT HEALTH_PORT < <(free_ports)

log "installing OpenBao 2.7.2 if needed"
BAO_BIN="$(bash scripts/install-bao.sh)"
export BAO_BIN
BAO_DIR="$(dirname "$BAO_BIN")"
export PATH="$BAO_DIR:$PATH"

log "starting OpenBao dev server with TLS on 127.0.0.1:$BAO_PORT"
mkdir -p "$WORK/bao"
bash scripts/openbao-dev.sh start "$WORK/bao" "$BAO_PORT" >/dev/null
log "enabling transit (disable_upsert), creating key kms-key, writing policy and AppRole"
bash scripts/openbao-setup-transit.sh "$WORK/bao" transit kms-key

log "building the plugin and the example client"
cargo build --quiet -p bao-kms-runtime-tokio -p bao-kms-examples
PLUGIN="$ROOT/target/debug/bao-kms-provider"
CLIENT="$ROOT/target/debug/kms_client"

install -d -m 0750 "$WORK/run" "$WORK/state" "$WORK/etc"
chmod 0644 "$WORK/bao/ca.pem"
SOCKET="$WORK/run/kms.sock"
LINEAGE="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
cat > "$WORK/etc/config.yaml" <<YAML
configVersion: v1alpha1
server:
  socketPath: $SOCKET
  socketDirectories: ["$WORK/run"]
  socketMode: "0660"
  metricsAddress: 127.0.0.1:$METRICS_PORT
  healthAddress: 127.0.0.1:$HEALTH_PORT
openbao:
  address: https://127.0.0.1:$BAO_PORT
  caCertFile: $WORK/bao/ca.pem
  tlsServerName: 127.0.0.1
  instanceId: bao-quickstart
  timeout: 2s
auth:
  method: approle
  approle:
    roleIdFile: $WORK/bao/role-id
    secretIdFile: $WORK/bao/secret-id
transit:
  mountPath: transit
  keyName: kms-key
  keyIdScope:
    providerName: quickstart-kms
    clusterId: quickstart-cluster
    transitMountId: transit-quickstart
    keyLineageId: "$LINEAGE"
state:
  path: $WORK/state/key-registry.json
bootstrap:
  graceTimeout: 30s
  retryInterval: 1s
status:
  probeInterval: 2s
  deepProbeInterval: 1m
  statusMaxStaleness: 20s
rotation:
  activationDelay: 5s
  requireStableObservationCount: 2
logging:
  level: info
  format: json
YAML
chmod 0640 "$WORK/etc/config.yaml"

log "starting the plugin"
"$PLUGIN" serve --config "$WORK/etc/config.yaml" >"$WORK/plugin.log" 2>&1 &
PLUGIN_PID=$!
for _ in $(seq 1 300); do
  [[ -S "$SOCKET" ]] && break
  kill -0 "$PLUGIN_PID" 2>/dev/null || die "the plugin exited during startup"
  sleep 0.1
done
[[ -S "$SOCKET" ]] || die "the plugin did not bind its socket within 30 s"

# An HTTPS call to the demo kube-apiserver as its admin: prints the status, a newline, the body.
kube_api() {
  python3 - "$KUBE_PORT" "$WORK/kube/ca.pem" "$KUBE_TOKEN" "$@" <<'PY'
import ssl, sys, urllib.error, urllib.request
port, ca, token, method, path = sys.argv[1:6]
body = sys.argv[6].encode() if len(sys.argv) > 6 else None
request = urllib.request.Request(f"https://127.0.0.1:{port}{path}", data=body, method=method)
request.add_header("Authorization", f"Bearer {token}")
request.add_header("Content-Type", "application/json")
try:
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=ca), timeout=10) as answer:
        print(answer.status); print(answer.read().decode())
except urllib.error.HTTPError as error:
    print(error.code); print(error.read().decode())
except OSError as error:
    print(0); print(error)
PY
}

# Real etcd and kube-apiserver using the plugin: one Secret created through the API, its raw
# value shown from etcd.
kube_demo() {
  log "building (first time: several minutes) or finding kube-apiserver and etcd"
  local bins kube etcd dir peer status answer
  bins="$(bash scripts/install-kube.sh)"
  kube="$(sed -n 1p <<<"$bins")"
  etcd="$(sed -n 2p <<<"$bins")"
  read -r ETCD_PORT peer KUBE_PORT < <(free_ports)
  dir="$WORK/kube"
  install -d -m 0700 "$dir"
  log "making a CA, kube-apiserver's serving certificate, service-account keys and an admin token"
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
      -subj /CN=quickstart-ca -keyout "$dir/ca.key" -out "$dir/ca.pem"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj /CN=kube-apiserver -keyout "$dir/apiserver.key" -out "$dir/apiserver.csr"
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$dir/apiserver.ext"
    openssl x509 -req -in "$dir/apiserver.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 1 -extfile "$dir/apiserver.ext" -out "$dir/apiserver.pem"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/sa.key"
    openssl pkey -in "$dir/sa.key" -pubout -out "$dir/sa.pub"
  } >/dev/null 2>&1 || die "openssl could not make the demo credentials"
  KUBE_TOKEN="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
  printf '%s,admin,admin-uid,"system:masters"\n' "$KUBE_TOKEN" >"$dir/tokens.csv"
  cat >"$dir/encryption-config.yaml" <<YAML
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: ["secrets"]
    providers:
      - kms:
          apiVersion: v2
          name: quickstart-kms
          endpoint: unix://$SOCKET
          timeout: 3s
      - identity: {}
YAML

  log "starting etcd on 127.0.0.1:$ETCD_PORT"
  "$etcd" --name=default --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$peer" --initial-advertise-peer-urls="http://127.0.0.1:$peer" \
    --initial-cluster="default=http://127.0.0.1:$peer" --log-level=warn >"$WORK/etcd.log" 2>&1 &
  ETCD_PID=$!
  log "starting kube-apiserver on 127.0.0.1:$KUBE_PORT with the plugin as its KMS v2 provider"
  "$kube" --etcd-servers="http://127.0.0.1:$ETCD_PORT" --secure-port="$KUBE_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
    --cert-dir="$dir/certs" --tls-cert-file="$dir/apiserver.pem" --tls-private-key-file="$dir/apiserver.key" \
    --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$dir/sa.pub" --service-account-signing-key-file="$dir/sa.key" \
    --encryption-provider-config="$dir/encryption-config.yaml" \
    --enable-priority-and-fairness=false --profiling=false >"$WORK/kube-apiserver.log" 2>&1 &
  APISERVER_PID=$!
  status=0
  for _ in $(seq 1 240); do
    kill -0 "$APISERVER_PID" 2>/dev/null || die "kube-apiserver exited; see its log: $(tail -n 5 "$WORK/kube-apiserver.log")"
    status="$(kube_api GET /readyz)"
    status="${status%%$'\n'*}"
    [[ "$status" == 200 ]] && break
    sleep 0.5
  done
  [[ "$status" == 200 ]] || die "kube-apiserver was not ready within 120 s"

  echo
  echo "== kube-apiserver's readiness check of the KMS provider"
  answer="$(kube_api GET '/readyz?verbose')"
  grep kms <<<"$answer" || true
  echo
  echo "== creating Secret default/quickstart through the Kubernetes API"
  answer="$(kube_api POST /api/v1/namespaces/default/secrets \
    '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"quickstart"},"stringData":{"password":"s3cr3t"}}')"
  [[ "${answer%%$'\n'*}" == 201 ]] || die "creating the Secret failed: $answer"
  echo "HTTP 201 Created"
  answer="$(kube_api GET /api/v1/namespaces/default/secrets/quickstart)"
  echo "read back through the API: password=$(tail -n +2 <<<"$answer" \
    | python3 -c 'import base64, json, sys; print(base64.b64decode(json.load(sys.stdin)["data"]["password"]).decode())')"
  echo
  echo "== its raw value in etcd (/registry/secrets/default/quickstart)"
  python3 - "$ETCD_PORT" <<'PY'
import base64, json, sys, urllib.request
key = base64.b64encode(b"/registry/secrets/default/quickstart").decode()
request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v3/kv/range", data=json.dumps({"key": key}).encode())
value = base64.b64decode(json.load(urllib.request.urlopen(request, timeout=10))["kvs"][0]["value"])
prefix = b"k8s:enc:kms:v2:quickstart-kms:"
print(f"starts with {value[:len(prefix)].decode()!r}: {value.startswith(prefix)}; {len(value)} bytes; plaintext visible: {b's3cr3t' in value}")
# EncryptedObject field 2 (keyID): walk the length-delimited fields of the protobuf message.
data, i, fields = value[len(prefix):], 0, {}
while i < len(data):
    tag, shift = 0, 0
    while True:
        byte = data[i]; i += 1; tag |= (byte & 0x7F) << shift; shift += 7
        if byte < 0x80: break
    if tag & 7 != 2: break
    length, shift = 0, 0
    while True:
        byte = data[i]; i += 1; length |= (byte & 0x7F) << shift; shift += 7
        if byte < 0x80: break
    fields.setdefault(tag >> 3, data[i:i + length]); i += length
print(f"EncryptedObject.keyID = {fields.get(2, b'').decode()}")
PY
  echo "the plugin's key_id     = $OLD_KEY_ID"
}

metrics_key_hash() {
  python3 - "$METRICS_PORT" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
print("\n".join(l for l in text.splitlines() if l.startswith("openbao_kms_status_key_id_hash{") or l.startswith("openbao_kms_key_version ")))
PY
}

echo
echo "== Status, Encrypt and Decrypt over $SOCKET"
"$CLIENT" --socket "$SOCKET" roundtrip
OLD_KEY_ID="$("$CLIENT" --socket "$SOCKET" status | sed -n 's/.*key_id=//p')"
echo
echo "== metrics before the rotation"
metrics_key_hash

if ((WITH_KUBE)); then
  kube_demo
fi

echo
echo "== rotating the Transit key in OpenBao"
(
  # shellcheck disable=SC1091
  . "$WORK/bao/env"
  "$BAO_BIN" write -f transit/keys/kms-key/rotate >/dev/null
)
echo "waiting for the plugin to observe, stabilise and promote version 2"
NEW_KEY_ID="$("$CLIENT" --socket "$SOCKET" wait-key-change --from "$OLD_KEY_ID" --timeout 90)"
echo "key_id changed: $OLD_KEY_ID -> $NEW_KEY_ID"
echo
echo "== metrics after the rotation"
metrics_key_hash
echo
echo "== a round trip with the new key"
"$CLIENT" --socket "$SOCKET" roundtrip
echo
echo "quickstart finished: everything started here is being stopped"
