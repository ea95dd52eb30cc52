#!/usr/bin/env bash
# Quickstart: a local OpenBao dev server with TLS, the plugin serving on a Unix socket, and a
# KMS v2 client that does what kube-apiserver does: Status, Encrypt, Decrypt. Then the Transit
# key is rotated in OpenBao, the plugin observes and promotes the new version, and the key_id
# hash in the metrics changes. Everything runs on 127.0.0.1 and is stopped on exit.
#
# Usage: ./scripts/quickstart.sh
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT="$(repo_root)"
cd "$ROOT"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bao-kms-quickstart.XXXXXX")"
PLUGIN_PID=""

cleanup() {
  local status=$?
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
