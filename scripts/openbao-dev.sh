#!/usr/bin/env bash
# Start/stop a throw-away OpenBao dev server (in-memory, auto-unsealed, TLS) on
# loopback for integration tests and the quickstart. Never use this for anything
# that matters: dev mode keeps everything in memory and the root token is on disk.
#
# Usage:
#   scripts/openbao-dev.sh start DIR [PORT]   # PORT defaults to 8200; PORT+1 is also bound
#   scripts/openbao-dev.sh stop DIR
#   scripts/openbao-dev.sh env DIR            # print the export lines (contain the root token!)
#
# Environment: BAO_DEV_AUDIT_LOG=FILE adds a file audit device writing to FILE.
#
# Files in DIR (all created by `start`):
#   server.pid   PID of the real bao server process
#   server.log   server stdout+stderr, mode 0600 (dev mode prints the root token and unseal key)
#   root-token   random dev root token, mode 0600
#   ca.pem       stable copy of the dev CA (tls/vault-ca.pem is deleted by the server on stop)
#   env          `export BAO_ADDR=... BAO_CACERT=... BAO_TOKEN=...`, mode 0600
#   tls/         -dev-tls-cert-dir: vault-ca.pem, vault-cert.pem, vault-key.pem while running
#
# Ports: the dev listener is 127.0.0.1:PORT and OpenBao derives the cluster
# (request-forwarding) listener as 127.0.0.1:PORT+1. OpenBao 2.7.2 has no flag to
# change or disable it in -dev mode (`bao server -h` lists only -dev-listen-address),
# so both ports must be free. Only 127.0.0.1 is ever used.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly HOST="127.0.0.1"
readonly START_TIMEOUT_S=30
readonly STOP_TIMEOUT_S=10
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
readonly SCRIPT_DIR

usage() {
  cat >&2 <<EOF
usage: $0 start DIR [PORT]
       $0 stop DIR
       $0 env DIR
EOF
  exit 2
}

# Absolute, symlink-free path, so DIR/env stays valid from any working directory.
abs_dir() {
  (cd "$1" && pwd -P)
}

# Microseconds since the epoch (EPOCHREALTIME, bash >= 5; strip the locale's
# decimal separator). `date +%s` would make a 30 s deadline anywhere in 29-30 s.
now_us() {
  printf '%s\n' "${EPOCHREALTIME//[!0-9]/}"
}

# 0 if PID "$1" is a live (non-zombie) process. kill -0 alone is not enough:
# if PID 1 in a container does not reap orphans, a dead server stays a zombie.
is_alive() {
  local pid="$1" state
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ "$state" != "Z" && "$state" != "X" ]]
}

# 0 if PID "$1" is the bao dev server started for DIR "$2". Guards stop/start
# against a stale pid file whose PID has since been reused by another process:
# our server is the only process whose argv carries DIR/tls as cert dir.
is_our_server() {
  local pid="$1" dir="$2" cmdline
  is_alive "$pid" || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *" server "* && "$cmdline" == *"-dev-tls-cert-dir=$dir/tls"* ]]
}

# 0 if something accepts TCP connections on HOST:"$1".
port_in_use() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# HTTP status code of GET "$1" verified against CA file "$2"; "000" if no answer.
# curl when available (fast in a poll loop), else python3 so the script also
# works on a machine without curl.
http_status() {
  local url="$1" ca="$2"
  if command -v curl >/dev/null 2>&1; then
    curl -sS -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$ca" "$url" 2>/dev/null || true
  else
    python3 - "$url" "$ca" <<'PY' 2>/dev/null || printf '000'
import ssl, sys, urllib.error, urllib.request
url, ca = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
try:
    with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
        code = r.status
except urllib.error.HTTPError as e:
    code = e.code
except Exception:
    code = 0
print(f"{code:03d}", end="")
PY
  fi
}

dump_log_and_die() {
  local dir="$1" msg="$2"
  if [[ -f "$dir/server.log" ]]; then
    # The log contains the root token and unseal key; mask them before printing.
    log "last lines of $dir/server.log:"
    tail -n 40 "$dir/server.log" \
      | sed -E 's/^(Root Token|Unseal Key):.*/\1: <redacted>/' >&2 || true
  fi
  die "$msg"
}

cmd_stop() {
  local dir="$1" pid
  [[ -d "$dir" ]] || { log "no such directory $dir; nothing to stop"; return 0; }
  dir="$(abs_dir "$dir")"
  if [[ ! -f "$dir/server.pid" ]]; then
    log "no server.pid in $dir; nothing to stop"
    return 0
  fi
  pid="$(<"$dir/server.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] || die "corrupt pid file $dir/server.pid"

  if ! is_our_server "$pid" "$dir"; then
    log "server (pid $pid) is not running"
    rm -f "$dir/server.pid"
    return 0
  fi

  log "stopping OpenBao dev server (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline
  deadline=$(($(now_us) + STOP_TIMEOUT_S * 1000000))
  while is_alive "$pid" && (($(now_us) < deadline)); do
    sleep 0.1
  done
  if is_alive "$pid"; then
    log "pid $pid ignored SIGTERM for ${STOP_TIMEOUT_S}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$(($(now_us) + 5000000))
    while is_alive "$pid" && (($(now_us) < deadline)); do
      sleep 0.1
    done
    is_alive "$pid" && die "pid $pid survived SIGKILL"
  fi
  rm -f "$dir/server.pid"
  log "stopped"
}

cmd_start() {
  local dir="$1" port="$2"
  if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65534)); then
    die "PORT must be an integer in 1..65534 (PORT+1 is the cluster port): $port"
  fi

  mkdir -p "$dir"
  dir="$(abs_dir "$dir")"

  if [[ -f "$dir/server.pid" ]]; then
    local old
    old="$(<"$dir/server.pid")"
    if [[ "$old" =~ ^[0-9]+$ ]] && is_our_server "$old" "$dir"; then
      die "a dev server is already running for $dir (pid $old); run: $0 stop $dir"
    fi
    rm -f "$dir/server.pid"
  fi

  # Refuse early rather than let the health poll below talk to someone else's
  # server on the same port.
  local p
  for p in "$port" "$((port + 1))"; do
    if port_in_use "$p"; then
      die "$HOST:$p is already in use (the dev server needs PORT=$port and PORT+1=$((port + 1)))"
    fi
  done

  local bao
  bao="$("$SCRIPT_DIR/install-bao.sh")" || die "could not obtain the bao binary"

  # Everything below may contain secrets; keep it private to the owner.
  umask 077
  # -dev-tls refuses to start unless the cert dir exists; stale files from a
  # SIGKILLed run would be confusing, so start from a clean dir.
  mkdir -p "$dir/tls"
  rm -f "$dir/tls/vault-ca.pem" "$dir/tls/vault-cert.pem" "$dir/tls/vault-key.pem" \
    "$dir/ca.pem" "$dir/env"

  local token
  token="dev-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  printf '%s\n' "$token" >"$dir/root-token"
  chmod 600 "$dir/root-token"

  : >"$dir/server.log"
  chmod 600 "$dir/server.log"

  # OpenBao 2.x enables audit devices only from configuration (the API refuses), so a test
  # that counts what the server received asks for a file audit device here.
  local extra_config=()
  if [[ -n "${BAO_DEV_AUDIT_LOG:-}" ]]; then
    printf 'audit "file" "kms-test" {\n  options {\n    file_path = "%s"\n  }\n}\n' \
      "$BAO_DEV_AUDIT_LOG" >"$dir/audit.hcl"
    extra_config=(-config="$dir/audit.hcl")
  fi

  log "starting OpenBao dev server on https://$HOST:$port (cluster port $((port + 1)))"
  # The root token goes through the environment (BAO_DEV_ROOT_TOKEN_ID) rather
  # than -dev-root-token-id=..., so it does not show up in `ps` for other users;
  # /proc/PID/environ is owner-only. Client-side BAO_* variables of the caller
  # are dropped so they cannot influence the server. -dev-no-store-token keeps
  # the dev token out of ~/.vault-token. stdin from /dev/null and stdout/stderr
  # to the log so that a caller capturing our output with $(...) never hangs on
  # the inherited pipe.
  env -u BAO_ADDR -u BAO_TOKEN -u BAO_CACERT -u BAO_DEV_LISTEN_ADDRESS \
    -u VAULT_ADDR -u VAULT_TOKEN -u VAULT_CACERT \
    BAO_DEV_ROOT_TOKEN_ID="$token" \
    "$bao" server -dev -dev-tls \
    -dev-tls-cert-dir="$dir/tls" \
    -dev-listen-address="$HOST:$port" \
    -dev-no-store-token \
    "${extra_config[@]}" \
    </dev/null >"$dir/server.log" 2>&1 &
  local pid=$!
  printf '%s\n' "$pid" >"$dir/server.pid"
  chmod 644 "$dir/server.pid"

  # Poll /v1/sys/health (200 = initialized, unsealed, active). The CA file only
  # appears once the server has generated it.
  local url="https://$HOST:$port/v1/sys/health" t0 code="000"
  t0="$(now_us)"
  local deadline=$((t0 + START_TIMEOUT_S * 1000000))
  while :; do
    if ! is_alive "$pid"; then
      rm -f "$dir/server.pid"
      dump_log_and_die "$dir" "server (pid $pid) exited during startup"
    fi
    if [[ -s "$dir/tls/vault-ca.pem" ]]; then
      code="$(http_status "$url" "$dir/tls/vault-ca.pem")"
      [[ "$code" == "200" ]] && break
    fi
    if (($(now_us) >= deadline)); then
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$dir/server.pid"
      dump_log_and_die "$dir" "server not healthy after ${START_TIMEOUT_S}s (last status $code)"
    fi
    sleep 0.05
  done
  # Belt and braces: the 200 must have come from our process, not a server that
  # grabbed the port between the in-use check and our bind.
  is_alive "$pid" || dump_log_and_die "$dir" "server (pid $pid) exited right after becoming healthy"

  # The server deletes tls/vault-ca.pem on shutdown; clients get a stable copy.
  cp "$dir/tls/vault-ca.pem" "$dir/ca.pem"
  chmod 644 "$dir/ca.pem"

  {
    printf '# Generated by scripts/openbao-dev.sh for a DEV server; contains the root token.\n'
    printf 'export BAO_ADDR=%q\n' "https://$HOST:$port"
    printf 'export BAO_CACERT=%q\n' "$dir/ca.pem"
    printf 'export BAO_TOKEN=%q\n' "$token"
  } >"$dir/env"
  chmod 600 "$dir/env"

  local ms=$((($(now_us) - t0) / 1000))
  log "healthy after ${ms} ms; pid $pid; env: $dir/env"
}

cmd_env() {
  local dir="$1"
  [[ -f "$dir/env" ]] || die "no $dir/env; run: $0 start $dir"
  cat "$dir/env"
}

main() {
  (($# >= 2)) || usage
  local cmd="$1" dir="$2"
  case "$cmd" in
    start)
      (($# <= 3)) || usage
      cmd_start "$dir" "${3:-8200}"
      ;;
    stop)
      (($# == 2)) || usage
      cmd_stop "$dir"
      ;;
    env)
      (($# == 2)) || usage
      cmd_env "$dir"
      ;;
    *) usage ;;
  esac
}

main "$@"
