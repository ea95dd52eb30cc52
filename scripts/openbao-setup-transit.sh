#!/usr/bin/env bash
# Configure a (dev) OpenBao for the KMS plugin: a transit mount with upsert
# disabled, an aes256-gcm96 key, the least-privilege `kms-plugin` policy, an
# AppRole for the plugin and a periodic orphan token carrying the same policy.
#
# Usage: scripts/openbao-setup-transit.sh DIR [MOUNT] [KEY]
#   DIR    directory of a server started by `scripts/openbao-dev.sh start DIR`
#          (DIR/env must hold BAO_ADDR, BAO_CACERT and a root BAO_TOKEN)
#   MOUNT  transit mount path, default `transit`
#   KEY    transit key name,  default `kms-key`
#
# Writes into DIR (secrets are mode 0600, one line each):
#   role-id, secret-id   AppRole credentials for role `kms-plugin`
#   token                periodic (1h) orphan service token with policy kms-plugin only
#   kms-plugin.hcl       the rendered policy (not secret)
#
# Re-running is safe: existing mount/key/auth backend are kept (after checking
# their type); the policy and role are rewritten; a NEW secret-id and token are
# issued each time. Nothing secret is printed.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
readonly SCRIPT_DIR
readonly POLICY_NAME="kms-plugin"
readonly ROLE_NAME="kms-plugin"
readonly APPROLE_PATH="approle"
readonly TEMPLATE="$SCRIPT_DIR/policy/kms-plugin.hcl.tmpl"

(($# >= 1 && $# <= 3)) || { echo "usage: $0 DIR [MOUNT] [KEY]" >&2; exit 2; }
DIR="$1"
MOUNT="${2:-transit}"
KEY="${3:-kms-key}"

# The names are pasted into HCL and API paths, so only allow plain path
# segments: no quotes, globs (`*`, `+`), `..`, or leading/trailing slashes.
[[ "$MOUNT" =~ ^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$ ]] || die "invalid MOUNT: $MOUNT"
[[ "$KEY" =~ ^[A-Za-z0-9_-]+$ ]] || die "invalid KEY: $KEY"

[[ -f "$DIR/env" ]] || die "$DIR/env not found; start a server with scripts/openbao-dev.sh start $DIR"
DIR="$(cd "$DIR" && pwd -P)"
# shellcheck disable=SC1091 # generated at runtime by openbao-dev.sh
. "$DIR/env"
: "${BAO_ADDR:?BAO_ADDR missing from $DIR/env}"
: "${BAO_TOKEN:?BAO_TOKEN missing from $DIR/env}"
export BAO_ADDR BAO_TOKEN BAO_CACERT

BAO="$("$SCRIPT_DIR/install-bao.sh")" || die "could not obtain the bao binary"
readonly BAO

# Run bao for its side effect only: its stdout ("Success! ...", key tables) is
# dropped to keep logs short; errors still reach stderr. Commands whose output
# is a secret capture -field output into a variable instead.
bao_quiet() {
  "$BAO" "$@" </dev/null >/dev/null
}

# Print the `type` field of a sys/mounts or sys/auth entry, empty if absent.
mount_type() {
  "$BAO" read -field=type "$1" 2>/dev/null || true
}

umask 077

# Write a secret value as a single line with mode 0600, atomically, so a reader
# never sees a half-written file.
write_secret() {
  local file="$1" value="$2"
  [[ -n "$value" && "$value" != *$'\n'* ]] || die "refusing to write an empty or multi-line value to $file"
  printf '%s\n' "$value" >"$file.tmp"
  chmod 600 "$file.tmp"
  mv -f "$file.tmp" "$file"
}

"$BAO" token lookup >/dev/null 2>&1 || die "cannot authenticate to $BAO_ADDR with the token in $DIR/env (is the server running?)"

# --- transit mount ------------------------------------------------------------
existing="$(mount_type "sys/mounts/$MOUNT")"
case "$existing" in
  "") log "enabling transit at $MOUNT/"; bao_quiet secrets enable -path="$MOUNT" transit ;;
  transit) log "transit already enabled at $MOUNT/" ;;
  *) die "$MOUNT/ is already mounted with type $existing, not transit" ;;
esac

# Server-side guard: encrypt must never auto-create a missing key, whatever
# policy the caller holds.
log "setting $MOUNT/config/keys disable_upsert=true"
bao_quiet write "$MOUNT/config/keys" disable_upsert=true

# --- key ----------------------------------------------------------------------
ktype="$("$BAO" read -field=type "$MOUNT/keys/$KEY" 2>/dev/null || true)"
case "$ktype" in
  "")
    log "creating key $MOUNT/keys/$KEY (aes256-gcm96, not exportable)"
    bao_quiet write "$MOUNT/keys/$KEY" type=aes256-gcm96
    ;;
  aes256-gcm96) log "key $MOUNT/keys/$KEY already exists" ;;
  *) die "key $MOUNT/keys/$KEY exists with type $ktype, expected aes256-gcm96" ;;
esac

# --- policy -------------------------------------------------------------------
[[ -f "$TEMPLATE" ]] || die "policy template missing: $TEMPLATE"
policy="$(<"$TEMPLATE")"
policy="${policy//'{{MOUNT}}'/$MOUNT}"
policy="${policy//'{{KEY}}'/$KEY}"
[[ "$policy" != *'{{'* ]] || die "unsubstituted placeholder left in $TEMPLATE"
printf '%s\n' "$policy" >"$DIR/kms-plugin.hcl"
chmod 644 "$DIR/kms-plugin.hcl"
log "writing policy $POLICY_NAME"
bao_quiet policy write "$POLICY_NAME" "$DIR/kms-plugin.hcl"

# --- AppRole ------------------------------------------------------------------
existing="$(mount_type "sys/auth/$APPROLE_PATH")"
case "$existing" in
  "") log "enabling approle auth at $APPROLE_PATH/"; bao_quiet auth enable -path="$APPROLE_PATH" approle ;;
  approle) log "approle auth already enabled at $APPROLE_PATH/" ;;
  *) die "auth/$APPROLE_PATH/ is already enabled with type $existing, not approle" ;;
esac

# No default policy: the kms-plugin policy already carries the self-token paths
# the plugin needs. secret_id_ttl=0: dev/test secret ids do not expire.
log "writing role $ROLE_NAME"
bao_quiet write "auth/$APPROLE_PATH/role/$ROLE_NAME" \
  token_policies="$POLICY_NAME" \
  token_no_default_policy=true \
  token_ttl=1h \
  token_max_ttl=24h \
  token_type=service \
  secret_id_ttl=0

role_id="$("$BAO" read -field=role_id "auth/$APPROLE_PATH/role/$ROLE_NAME/role-id")"
write_secret "$DIR/role-id" "$role_id"
secret_id="$("$BAO" write -f -field=secret_id "auth/$APPROLE_PATH/role/$ROLE_NAME/secret-id")"
write_secret "$DIR/secret-id" "$secret_id"
unset role_id secret_id

# --- periodic token -----------------------------------------------------------
# Orphan so it outlives the root token's children; periodic so it can be renewed
# indefinitely (every <1h) without a max TTL; no default policy, like the role.
token="$("$BAO" token create -policy="$POLICY_NAME" -no-default-policy \
  -period=1h -orphan -type=service -display-name=kms-plugin -field=token)"
write_secret "$DIR/token" "$token"
unset token

log "done: $DIR/{role-id,secret-id,token} written (0600); policy in $DIR/kms-plugin.hcl"
