#!/usr/bin/env bash
# The project's test entry point (the README's test command; CI runs it too):
#   1. make sure the OpenBao 2.7.2 binary is installed and export BAO_BIN so the
#      integration tests start the real server instead of skipping or guessing;
#   2. cargo test for the whole workspace (--locked when Cargo.lock exists, so CI
#      never silently resolves different versions), with the test-only fault-injection
#      feature of the plugin binary;
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

# The crash-only tests inject faults (a panicking driver, a stalled task) into the real binary;
# the hook exists only in builds with this feature, never in a release.
features=(--features bao-kms-runtime-tokio/fault-injection)
log "cargo test --workspace ${locked[*]} ${features[*]} $*"
cargo test --workspace "${locked[@]}" "${features[@]}" "$@"

log "checking bao-kms-core purity"
bash scripts/check-core-purity.sh
