#!/usr/bin/env bash
# Enforce that bao-kms-core stays IO-free: none of the async runtime, gRPC,
# protobuf, HTTP or TLS stacks may appear among its normal (non-dev, non-build)
# dependencies, directly or transitively. Those belong in runtime-tokio/proto.
#
# Usage: scripts/check-core-purity.sh
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$(repo_root)"

readonly CORE_PKG="bao-kms-core"
# Whole crate names at line start, plus their family (tokio-util, hyper-util,
# prost-types, rustls-pki-types, ...). `--prefix none` prints "name vX.Y.Z ...".
readonly FORBIDDEN='^(tokio|tonic|prost|hyper|ureq|rustls)([-_][a-z0-9_-]+)? v'

locked=()
[[ -f Cargo.lock ]] && locked=(--locked)

# --target all: also see platform-specific deps that the host target would hide.
# Captured first (not piped) so a cargo failure fails the script instead of
# looking like an empty, "clean" tree.
tree="$(cargo tree "${locked[@]}" -p "$CORE_PKG" -e normal --prefix none --target all)" \
  || die "cargo tree -p $CORE_PKG failed"

# Sanity: an empty or unexpected tree must not pass silently.
[[ "$(head -n1 <<<"$tree")" == "$CORE_PKG v"* ]] \
  || die "unexpected cargo tree output (first line: $(head -n1 <<<"$tree"))"

if offenders="$(grep -E "$FORBIDDEN" <<<"$tree" | sort -u)"; then
  log "$CORE_PKG must stay IO-free, but its normal dependency tree contains:"
  printf '  %s\n' "$offenders" >&2
  log "run: cargo tree -p $CORE_PKG -e normal -i <crate> to see who pulls it in"
  exit 1
fi

echo "OK: $CORE_PKG has no tokio/tonic/prost/hyper/ureq/rustls in its normal dependencies"
