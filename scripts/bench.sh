#!/usr/bin/env bash
# Benchmark: a local OpenBao dev server with TLS, the release plugin serving on a Unix socket,
# and target/release/kms_bench measuring the plugin over the socket side by side with raw
# Transit calls to the same OpenBao, the plugin's memory, and its restart time. Everything runs
# on 127.0.0.1, is bounded (about a minute) and is stopped on exit. See docs/benchmarks.md.
#
# Usage: ./scripts/bench.sh [kms_bench options, e.g. --json or --sequential 500]
#   BENCH_NO_BUILD=1 reuses target/release/{bao-kms-provider,kms_bench} as they are.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT="$(repo_root)"
cd "$ROOT"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bao-kms-bench.XXXXXX")"
PLUGIN_PID=""

cleanup() {
  local status=$?
  # The bench stops this plugin itself before the restarts; stop it here if it did not get there.
  if [[ -n "$PLUGIN_PID" ]] && kill -0 "$PLUGIN_PID" 2>/dev/null; then
    kill -TERM "$PLUGIN_PID" 2>/dev/null || true
    wait "$PLUGIN_PID" 2>/dev/null || true
  fi
  bash scripts/openbao-dev.sh stop "$WORK/bao" >/dev/null 2>&1 || true
  if [[ $status -ne 0 ]]; then
    log "bench failed; plugin logs:"
    tail -n 20 "$WORK/plugin.log" >&2 2>/dev/null || true
    tail -n 20 "$WORK/plugin-restarts.log" >&2 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT INT TERM


read -r BAO_PORT METRICS_PORT HEALTH_PORT < <(free_ports)

log "installing OpenBao 2.7.2 if needed"
BAO_BIN="$(bash scripts/install-bao.sh)"
export BAO_BIN

PLUGIN="$ROOT/target/release/bao-kms-provider"
BENCH="$ROOT/target/release/kms_bench"
if [[ "${BENCH_NO_BUILD:-0}" == 1 ]]; then
  [[ -x "$PLUGIN" && -x "$BENCH" ]] || die "BENCH_NO_BUILD=1 but $PLUGIN or $BENCH is missing"
  log "BENCH_NO_BUILD=1: using the release binaries as they are"
else
  log "building the plugin and kms_bench in release mode"
  cargo build --quiet --release -p bao-kms-runtime-tokio -p bao-kms-examples
fi

log "starting OpenBao dev server with TLS on 127.0.0.1:$BAO_PORT"
mkdir -p "$WORK/bao"
bash scripts/openbao-dev.sh start "$WORK/bao" "$BAO_PORT" >/dev/null
log "enabling transit (disable_upsert), creating key kms-key, writing policy and AppRole"
bash scripts/openbao-setup-transit.sh "$WORK/bao" transit kms-key

install -d -m 0750 "$WORK/run" "$WORK/state" "$WORK/etc"
chmod 0644 "$WORK/bao/ca.pem"
SOCKET="$WORK/run/kms.sock"
LINEAGE="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
# The quickstart's configuration with the defaults for everything that is not named.
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
  instanceId: bao-bench
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
    providerName: bench-kms
    clusterId: bench-cluster
    transitMountId: transit-bench
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
logging:
  level: info
  format: json
YAML
chmod 0640 "$WORK/etc/config.yaml"

log "starting the release plugin"
"$PLUGIN" serve --config "$WORK/etc/config.yaml" >"$WORK/plugin.log" 2>&1 &
PLUGIN_PID=$!
for _ in $(seq 1 300); do
  [[ -S "$SOCKET" ]] && break
  kill -0 "$PLUGIN_PID" 2>/dev/null || die "the plugin exited during startup"
  sleep 0.1
done
[[ -S "$SOCKET" ]] || die "the plugin did not bind its socket within 30 s"

log "running kms_bench (about a minute; progress on stderr, results on stdout)"
"$BENCH" \
  --config "$WORK/etc/config.yaml" \
  --socket "$SOCKET" \
  --pid "$PLUGIN_PID" \
  --bao-dir "$WORK/bao" \
  --plugin-bin "$PLUGIN" \
  --plugin-log "$WORK/plugin-restarts.log" \
  "$@"
