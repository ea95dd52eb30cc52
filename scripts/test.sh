#!/usr/bin/env bash
# The project's test entry point (the README's test command; CI runs it too):
#   1. make sure the OpenBao 2.7.2 binary is installed and export BAO_BIN so the
#      integration tests start the real server instead of skipping or guessing;
#   2. cargo test for the whole workspace (--locked when Cargo.lock exists, so CI
#      never silently resolves different versions);
#   3. the core purity check.
#
# Usage: ./scripts/test.sh [extra cargo test args...]
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$(repo_root)"

BAO_BIN="$(bash scripts/install-bao.sh)" || die "installing the OpenBao binary failed"
export BAO_BIN
log "BAO_BIN=$BAO_BIN"

locked=()
[[ -f Cargo.lock ]] && locked=(--locked)

log "cargo test --workspace ${locked[*]} $*"
cargo test --workspace "${locked[@]}" "$@"

log "checking bao-kms-core purity"
bash scripts/check-core-purity.sh
