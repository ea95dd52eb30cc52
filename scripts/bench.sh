#!/usr/bin/env bash
# Benchmark (issue 9): a local OpenBao dev server with TLS, the release plugin serving on a Unix
# socket, and target/release/kms_bench measuring the plugin over the socket side by side with
# raw Transit driven by wrk (scripts/bench/transit.lua) against the same OpenBao, in one run:
# 5 s per cell, the plugin's memory, ratios to raw and the issue's targets (PASS/FAIL).
# Everything runs on 127.0.0.1, is bounded (about 1.5 minutes after the build) and is stopped on
# exit. See docs/benchmarks.md.
#
# Usage: ./scripts/bench.sh [kms_bench options, e.g. --json or --cell-seconds 3]
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

# The raw Transit baseline is wrk (Debian package `wrk`), an HTTP load tool independent of the
# plugin's code.
if ! command -v wrk >/dev/null 2>&1; then
  log "wrk is missing; installing the Debian package"
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2 \
      || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2; } \
      || die "apt-get could not install wrk; install it (Debian/Ubuntu: apt-get install wrk)"
  else
    die "wrk is required for the raw Transit baseline; install it (Debian/Ubuntu: apt-get install wrk)"
  fi
fi
WRK="$(command -v wrk)" || die "wrk is still not on PATH"

log "installing OpenBao 2.7.2 if needed"
BAO_BIN="$(bash scripts/install-bao.sh)"
export BAO_BIN
BAO_VERSION="$("$BAO_BIN" version 2>/dev/null | head -n 1 || true)"

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

log "running kms_bench (about 80 s; progress on stderr, results on stdout)"
# $WORK/bao/token is a token with the plugin's kms-plugin policy (openbao-setup-transit.sh), the
# same rights as the AppRole token the plugin logs in for; wrk sends it in X-Vault-Token.
"$BENCH" \
  --config "$WORK/etc/config.yaml" \
  --socket "$SOCKET" \
  --pid "$PLUGIN_PID" \
  --bao-dir "$WORK/bao" \
  --openbao-version "${BAO_VERSION:-unknown}" \
  --token-file "$WORK/bao/token" \
  --wrk "$WRK" \
  --wrk-script "$ROOT/scripts/bench/transit.lua" \
  --work-dir "$WORK" \
  --plugin-bin "$PLUGIN" \
  --plugin-log "$WORK/plugin-restarts.log" \
  "$@"
