#!/usr/bin/env bash
# Build the real Kubernetes control plane the integration tests run against, and print two
# absolute paths on stdout, one per line: kube-apiserver first, then etcd. Progress goes to
# stderr, so `mapfile -t bins < <(scripts/install-kube.sh)` works.
#
# The versions are pinned by the Go module tests/kube (go.mod + go.sum): k8s.io/kubernetes
# builds cmd/kube-apiserver, go.etcd.io/etcd/server/v3 is etcd's server binary. Both are built
# from the Go module proxy into <repo>/.work/kube/<key>/bin, where <key> names the two
# versions, the Go release and a digest of go.sum: a second run with that directory present
# only checks the binaries and takes well under a second. GOMODCACHE and GOCACHE stay the
# user's, so a rebuild after a version bump reuses every module and package already built.
#
# Overrides: KUBE_APISERVER_BIN and ETCD_BIN, when both are set and executable, are printed
# as they are (nothing is built).
#
# Usage: scripts/install-kube.sh
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT="$(repo_root)"
readonly ROOT
readonly MODULE_DIR="$ROOT/tests/kube"

if [[ -n "${KUBE_APISERVER_BIN:-}" && -x "${KUBE_APISERVER_BIN:-}" && -n "${ETCD_BIN:-}" && -x "${ETCD_BIN:-}" ]]; then
  readlink -f "$KUBE_APISERVER_BIN"
  readlink -f "$ETCD_BIN"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is required to build kube-apiserver and etcd (Go 1.26 or later)"
[[ -f "$MODULE_DIR/go.mod" && -f "$MODULE_DIR/go.sum" ]] || die "missing $MODULE_DIR/go.mod or go.sum"

# The version of module "$1" as go.mod requires it.
required_version() {
  awk -v mod="$1" '$1 == mod && $2 ~ /^v/ { print $2; exit }' "$MODULE_DIR/go.mod"
}
KUBE_VERSION="$(required_version k8s.io/kubernetes)"
ETCD_VERSION="$(required_version go.etcd.io/etcd/server/v3)"
[[ -n "$KUBE_VERSION" && -n "$ETCD_VERSION" ]] || die "tests/kube/go.mod does not pin k8s.io/kubernetes and go.etcd.io/etcd/server/v3"
GO_VERSION="$(go env GOVERSION)"
SUM_DIGEST="$(cat "$MODULE_DIR/go.mod" "$MODULE_DIR/go.sum" | sha256sum | cut -c1-12)"
readonly KEY="kube-${KUBE_VERSION}_etcd-${ETCD_VERSION}_${GO_VERSION}_${SUM_DIGEST}"
readonly BIN_DIR="$ROOT/.work/kube/$KEY/bin"
readonly APISERVER="$BIN_DIR/kube-apiserver"
readonly ETCD="$BIN_DIR/etcd"

cached() {
  [[ -x "$APISERVER" && -x "$ETCD" ]]
}
emit() {
  printf '%s\n%s\n' "$APISERVER" "$ETCD"
  exit 0
}

if cached; then
  emit
fi

# Serialise concurrent installers (test set-up and CI at once); re-check after waiting.
mkdir -p "$ROOT/.work/kube"
exec 9>"$ROOT/.work/kube/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
  if cached; then
    emit
  fi
fi

STAGE="$(mktemp -d "$ROOT/.work/kube/.build.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

# Version strings kube-apiserver reports (`--version`, /version); the module proxy has no VCS
# metadata, so without them it would call itself v0.0.0-master.
minor="${KUBE_VERSION#v1.}"
minor="${minor%%.*}"
kube_ldflags="-s -w"
for pair in "gitVersion=$KUBE_VERSION" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean"; do
  kube_ldflags+=" -X k8s.io/component-base/version.$pair"
  kube_ldflags+=" -X k8s.io/client-go/pkg/version.$pair"
done

cd "$MODULE_DIR"
t0=$SECONDS
log "building kube-apiserver $KUBE_VERSION (first time: several minutes on 2 cores)"
go build -mod=readonly -trimpath -ldflags "$kube_ldflags" -o "$STAGE/kube-apiserver" \
  k8s.io/kubernetes/cmd/kube-apiserver >&2 || die "go build k8s.io/kubernetes/cmd/kube-apiserver failed"
log "kube-apiserver built in $((SECONDS - t0))s"
t1=$SECONDS
log "building etcd $ETCD_VERSION"
go build -mod=readonly -trimpath -ldflags "-s -w" -o "$STAGE/etcd" go.etcd.io/etcd/server/v3 >&2 \
  || die "go build go.etcd.io/etcd/server/v3 failed"
log "etcd built in $((SECONDS - t1))s"

"$STAGE/kube-apiserver" --version >&2 || die "the built kube-apiserver does not run"
"$STAGE/etcd" --version >&2 || die "the built etcd does not run"
# Only whole, working binaries enter the cache (`cached` needs both).
mkdir -p "$BIN_DIR"
mv -f "$STAGE/etcd" "$ETCD"
mv -f "$STAGE/kube-apiserver" "$APISERVER"
log "cached in $BIN_DIR ($((SECONDS - t0))s)"
emit
