#!/usr/bin/env bash
# Release artifacts of bao-kms-provider, and their verification.
#
#   scripts/release.sh OUTDIR            build every artifact into OUTDIR (must be absent or empty)
#   scripts/release.sh --verify OUTDIR   check them as an operator would, and more
#
# Build, from a clean tree (tracked files unchanged; RELEASE_ALLOW_DIRTY=1 overrides, and the
# binary then says dirty: true):
#   bao-kms-provider-VERSION-ARCH-linux.tar.gz  binary, shell completions, deploy/, monitoring/,
#                                              docs/, LICENSE, README, CHANGELOG, SECURITY
#   bao-kms-provider_VERSION_DEBARCH.deb        /usr/bin binary, systemd unit, sysusers.d and
#                                              tmpfiles.d entries, completions, example configs
#   bao-kms-provider-VERSION.cdx.json          CycloneDX 1.5 SBOM from `cargo metadata` + Cargo.lock
#   SHA256SUMS, SHA256SUMS.sig, allowed_signers  checksums and an `ssh-keygen -Y sign` signature
# No man pages: `--help` and docs/reference/cli.md are the reference.
#
# Signing: RELEASE_SIGNING_KEY names the OpenSSH private key (kept offline for real releases)
# and RELEASE_SIGNER the principal (default release@bao-kms-provider). Without a key an
# ephemeral one is generated: the signature then proves only that the files were not changed
# after this run (what CI checks), not who made them.
#
# Timestamps come from SOURCE_DATE_EPOCH (default: the commit time), so two runs on one commit
# produce the same tarball, package and SBOM bytes for the same binary.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="$(repo_root)"
cd "$ROOT"

NAME=bao-kms-provider
PRINCIPAL="${RELEASE_SIGNER:-release@bao-kms-provider}"

version() {
  cargo metadata --locked --no-deps --format-version 1 \
    | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="bao-kms-runtime-tokio"))'
}

# ---------------------------------------------------------------------------------------------
# Build

stage_tarball() {
  local dir="$1" binary="$2"
  install -D -m 0755 "$binary" "$dir/bin/$NAME"
  install -d -m 0755 "$dir/completions"
  "$binary" completion bash >"$dir/completions/$NAME.bash"
  "$binary" completion zsh >"$dir/completions/_$NAME"
  "$binary" completion fish >"$dir/completions/$NAME.fish"
  cp -R deploy monitoring docs "$dir/"
  cp LICENSE README.md CHANGELOG.md SECURITY.md Containerfile "$dir/"
  chmod -R u+rwX,go+rX,go-w "$dir"
}

stage_deb() {
  local dir="$1" binary="$2" version="$3" arch="$4"
  install -D -m 0755 "$binary" "$dir/usr/bin/$NAME"
  # The packaged binary lives in /usr/bin; deploy/ documents a manual /usr/local/bin install.
  install -d -m 0755 "$dir/lib/systemd/system"
  sed "s#/usr/local/bin/$NAME#/usr/bin/$NAME#g" deploy/systemd/$NAME.service \
    >"$dir/lib/systemd/system/$NAME.service"
  chmod 0644 "$dir/lib/systemd/system/$NAME.service"
  install -D -m 0644 deploy/sysusers.d/openbao-kms.conf "$dir/usr/lib/sysusers.d/openbao-kms.conf"
  install -D -m 0644 deploy/tmpfiles.d/openbao-kms.conf "$dir/usr/lib/tmpfiles.d/openbao-kms.conf"
  install -d -m 0755 "$dir/usr/share/bash-completion/completions" \
    "$dir/usr/share/zsh/vendor-completions" "$dir/usr/share/fish/vendor_completions.d"
  "$binary" completion bash >"$dir/usr/share/bash-completion/completions/$NAME"
  "$binary" completion zsh >"$dir/usr/share/zsh/vendor-completions/_$NAME"
  "$binary" completion fish >"$dir/usr/share/fish/vendor_completions.d/$NAME.fish"
  local doc="$dir/usr/share/doc/$NAME"
  install -d -m 0755 "$doc/examples" "$doc/monitoring"
  install -m 0644 deploy/config/*.yaml deploy/kubernetes/*.yaml "$doc/examples/"
  install -m 0644 monitoring/alerts.yaml monitoring/grafana-dashboard.json "$doc/monitoring/"
  install -m 0644 LICENSE "$doc/copyright"
  gzip -9n <CHANGELOG.md >"$doc/changelog.gz"
  install -m 0644 README.md SECURITY.md docs/install.md "$doc/"
  install -D -m 0644 docs/operations/upgrade.md "$doc/upgrade.md"
  find "$dir" -type f -exec chmod go-w {} +

  install -d -m 0755 "$dir/DEBIAN"
  local size
  size="$(du -sk --exclude=DEBIAN "$dir" | cut -f1)"
  cat >"$dir/DEBIAN/control" <<EOF
Package: $NAME
Version: ${version//-/\~}
Architecture: $arch
Maintainer: bao-kms-provider maintainers <maintainers@bao-kms-provider.invalid>
Installed-Size: $size
Depends: libc6 (>= 2.34), libgcc-s1, systemd
Section: admin
Priority: optional
Homepage: https://example.invalid/bao-kms-provider
Description: Kubernetes KMS v2 plugin backed by OpenBao Transit
 Encrypts Kubernetes Secrets at rest with the OpenBao Transit engine. kube-apiserver talks to
 it over a Unix socket. The package installs the binary, a hardened systemd unit and the
 openbao-kms user, group and directories; it does not enable or start the service, which
 needs /etc/openbao-kms/config.yaml first (see /usr/share/doc/$NAME/install.md).
EOF
  cat >"$dir/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Users, groups and directories from the shipped sysusers.d and tmpfiles.d entries. The service
# is neither enabled nor (re)started: a KMS plugin restart is an operator decision (upgrade
# runbook), and a first start needs a configuration.
set -e
if [ "$1" = configure ]; then
  if command -v systemd-sysusers >/dev/null 2>&1; then systemd-sysusers openbao-kms.conf; fi
  if command -v systemd-tmpfiles >/dev/null 2>&1; then systemd-tmpfiles --create openbao-kms.conf; fi
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
exit 0
EOF
  cat >"$dir/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# Stop the service only when the package is removed; an upgrade leaves the running process
# alone until the operator restarts it.
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop bao-kms-provider.service || true
fi
exit 0
EOF
  cat >"$dir/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
EOF
  chmod 0755 "$dir/DEBIAN/postinst" "$dir/DEBIAN/prerm" "$dir/DEBIAN/postrm"
  (cd "$dir" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum >DEBIAN/md5sums)
  chmod 0644 "$dir/DEBIAN/md5sums"
  find "$dir" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# CycloneDX 1.5 from the resolved dependency graph of the binary's package (normal and build
# dependencies for this target; dev-dependencies are not shipped), with Cargo.lock checksums.
sbom() {
  local target="$1"
  cargo metadata --locked --format-version 1 --filter-platform "$target" >"$WORK/metadata.json"
  python3 - "$WORK/metadata.json" Cargo.lock "$SOURCE_DATE_EPOCH" <<'PY'
import datetime, json, sys, tomllib, uuid
meta = json.load(open(sys.argv[1]))
lock = tomllib.load(open(sys.argv[2], "rb"))
epoch = int(sys.argv[3])
checksums = {(p["name"], p["version"]): p.get("checksum") for p in lock["package"]}
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
root = next(i for i, p in packages.items() if p["name"] == "bao-kms-runtime-tokio")

def shipped(dep):
    return any(k["kind"] in (None, "build") for k in dep["dep_kinds"])

seen, todo, edges = set(), [root], {}
while todo:
    current = todo.pop()
    if current in seen:
        continue
    seen.add(current)
    deps = sorted({d["pkg"] for d in nodes[current]["deps"] if shipped(d)})
    edges[current] = deps
    todo.extend(deps)

def ref(pid):
    p = packages[pid]
    if p["source"] is None:
        return f"pkg:cargo/{p['name']}@{p['version']}?repository_url=local"
    return f"pkg:cargo/{p['name']}@{p['version']}"

def component(pid, kind="library"):
    p = packages[pid]
    c = {"type": kind, "bom-ref": ref(pid), "name": p["name"], "version": p["version"],
         "purl": ref(pid)}
    if p.get("license"):
        c["licenses"] = [{"expression": p["license"]}]
    digest = checksums.get((p["name"], p["version"]))
    if digest:
        c["hashes"] = [{"alg": "SHA-256", "content": digest}]
    if p["source"] is None:
        c["description"] = p.get("description") or ""
    return c

stamp = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
main = component(root, "application")
main["name"] = "bao-kms-provider"
bom = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.5",
    # Derived from the content, so the same inputs give the same document.
    "serialNumber": "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(sorted(edges.items())) + stamp)),
    "version": 1,
    "metadata": {
        "timestamp": stamp,
        "tools": {"components": [{"type": "application", "name": "scripts/release.sh"}]},
        "component": main,
    },
    "components": [component(pid) for pid in sorted(seen - {root}, key=ref)],
    "dependencies": [{"ref": ref(pid), "dependsOn": [ref(d) for d in deps]}
                     for pid, deps in sorted(edges.items(), key=lambda e: ref(e[0]))],
}
json.dump(bom, sys.stdout, indent=2, sort_keys=False)
print()
PY
}

sign() {
  local out="$1" key="${RELEASE_SIGNING_KEY:-}"
  if [[ -z "$key" ]]; then
    log "no RELEASE_SIGNING_KEY: signing with an ephemeral key (integrity of this run only)"
    key="$WORK/ephemeral-signing-key"
    ssh-keygen -q -t ed25519 -N '' -C "$PRINCIPAL (ephemeral)" -f "$key"
  fi
  local public
  public="$(ssh-keygen -y -f "$key")"
  printf '%s namespaces="file" %s\n' "$PRINCIPAL" "$public" >"$out/allowed_signers"
  ssh-keygen -q -Y sign -f "$key" -n file "$out/SHA256SUMS"
}

build() {
  local out="$1"
  if [[ -e "$out" ]] && [[ -n "$(ls -A "$out")" ]]; then die "$out exists and is not empty" 2; fi
  if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    [[ "${RELEASE_ALLOW_DIRTY:-}" == 1 ]] || die "tracked files have local changes; commit them (or RELEASE_ALLOW_DIRTY=1)" 2
    log "warning: building from a dirty tree"
  fi
  for tool in cargo python3 dpkg-deb ssh-keygen sha256sum tar gzip; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
  done
  SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}"
  export SOURCE_DATE_EPOCH
  mkdir -p "$out"
  out="$(cd "$out" && pwd -P)"
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT

  local v target arch debarch t0=$SECONDS
  v="$(version)"
  target="$(rustc -vV | sed -n 's/^host: //p')"
  arch="${target%%-*}"
  debarch="$(dpkg --print-architecture)"
  log "release build of $NAME $v for $target (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
  cargo build --release --locked -p bao-kms-runtime-tokio --bin "$NAME"
  log "release build: $((SECONDS - t0))s"
  local binary="$ROOT/target/release/$NAME"

  local base="$NAME-$v-$arch-linux"
  stage_tarball "$WORK/$base" "$binary"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    -C "$WORK" -cf - "$base" | gzip -9n >"$out/$base.tar.gz"

  stage_deb "$WORK/deb" "$binary" "$v" "$debarch"
  dpkg-deb --root-owner-group -Zxz --build "$WORK/deb" "$out/${NAME}_${v//-/\~}_${debarch}.deb" >/dev/null

  sbom "$target" >"$out/$NAME-$v.cdx.json"

  (cd "$out" && sha256sum -- *.tar.gz *.deb *.cdx.json >SHA256SUMS)
  sign "$out"
  log "artifacts in $out:"
  (cd "$out" && ls -l) >&2
}

# ---------------------------------------------------------------------------------------------
# Verify

verify() {
  local out
  out="$(cd "$1" && pwd -P)"
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    [[ "${CI:-}" == true ]] && die "$1 is required in CI"
    log "warning: $1 not installed; skipping: $2"
    return 1
  }
  cd "$out"
  log "checksums"
  sha256sum --strict -c SHA256SUMS
  log "signature"
  local signer
  signer="$(cut -d' ' -f1 allowed_signers)"
  ssh-keygen -Y verify -f allowed_signers -I "$signer" -n file -s SHA256SUMS.sig <SHA256SUMS
  # The check above must be able to fail: a changed list is refused.
  sed '1s/^./0/;1s/^0/1/' SHA256SUMS >"$WORK/tampered"
  if ssh-keygen -Y verify -f allowed_signers -I "$signer" -n file -s SHA256SUMS.sig \
    <"$WORK/tampered" >/dev/null 2>&1; then die "a modified SHA256SUMS passed the signature check"; fi

  local deb tarball sbom_file
  deb="$(ls ./*.deb)"
  tarball="$(ls ./*.tar.gz)"
  sbom_file="$(ls ./*.cdx.json)"
  log "package: $deb"
  dpkg-deb --info "$deb" >"$WORK/info"
  dpkg-deb --contents "$deb" >"$WORK/contents"
  for field in "Package: $NAME" "Architecture: $(dpkg --print-architecture)" "Depends:"; do
    grep -q "^ $field" "$WORK/info" || die "control lacks $field"
  done
  local path
  for path in \
    "-rwxr-xr-x root/root .* ./usr/bin/$NAME" \
    "-rw-r--r-- root/root .* ./lib/systemd/system/$NAME.service" \
    "-rw-r--r-- root/root .* ./usr/lib/sysusers.d/openbao-kms.conf" \
    "-rw-r--r-- root/root .* ./usr/lib/tmpfiles.d/openbao-kms.conf" \
    "./usr/share/bash-completion/completions/$NAME" \
    "./usr/share/doc/$NAME/examples/provider-systemd.yaml" \
    "./usr/share/doc/$NAME/copyright"; do
    grep -Eq -- "$path\$" "$WORK/contents" || die "package lacks $path"
  done
  # Listed to a file first: `grep -q` closing the pipe early would fail the pipeline.
  dpkg-deb --ctrl-tarfile "$deb" | tar -t >"$WORK/control-files"
  for path in ./postinst ./prerm ./postrm ./md5sums; do
    grep -qx -- "$path" "$WORK/control-files" || die "package lacks $path"
  done

  log "install into a throwaway root"
  local root="$WORK/root"
  dpkg -x "$deb" "$root"
  local unit="$root/lib/systemd/system/$NAME.service"
  grep -q "^ExecStart=/usr/bin/$NAME serve" "$unit" || die "the packaged unit does not start /usr/bin/$NAME"
  "$root/usr/bin/$NAME" version --output json >"$WORK/version.json"
  python3 - "$WORK/version.json" "$deb" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
assert report["commit"] not in ("", "unknown"), report
assert report["buildDate"] not in ("", "unknown"), report
assert report["version"].lstrip("v").replace("-", "~") in sys.argv[2], (report["version"], sys.argv[2])
print(f"version {report['version']} commit {report['commit']} built {report['buildDate']} dirty {report['dirty']}")
PY
  if need systemd-analyze "systemd-analyze verify and security of the unit"; then
    # ExecStart names /usr/bin/bao-kms-provider, which exists only in the throwaway root: check
    # a copy that points there. verify exits 0 even for lines it ignores, so any output fails.
    sed "s#/usr/bin/$NAME#$root/usr/bin/$NAME#g" "$unit" >"$WORK/$NAME.service"
    SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$WORK/$NAME.service" >"$WORK/analyze" 2>&1 || true
    if [[ -s "$WORK/analyze" ]]; then
      cat "$WORK/analyze" >&2
      die "systemd-analyze verify reported problems with the unit"
    fi
    # The sandboxing must keep the exposure score low (0 is best, 10 worst).
    systemd-analyze security --offline=true --threshold=15 "$WORK/$NAME.service" >"$WORK/security" 2>&1 \
      || { tail -n 30 "$WORK/security" >&2; die "systemd-analyze security scores the unit above 1.5"; }
    log "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$WORK/security")"
  fi
  if need systemd-sysusers "the sysusers.d and tmpfiles.d entries"; then
    # What postinst does, applied to the throwaway root: the users, groups and directories.
    mkdir -p "$root/etc"
    systemd-sysusers --root="$root" "$root/usr/lib/sysusers.d/openbao-kms.conf"
    grep -q '^openbao-kms:' "$root/etc/passwd" || die "sysusers.d did not create openbao-kms"
    grep -q '^openbao-kms-socket:' "$root/etc/group" || die "sysusers.d did not create openbao-kms-socket"
    systemd-tmpfiles --root="$root" --create "$root/usr/lib/tmpfiles.d/openbao-kms.conf"
    [[ "$(stat -c %a "$root/run/openbao-kms")" == 2750 ]] || die "tmpfiles.d: /run/openbao-kms is not 2750"
    [[ -d "$root/var/lib/openbao-kms/state" ]] || die "tmpfiles.d did not create the state directory"
  fi

  log "tarball: $tarball"
  tar -xzf "$tarball" -C "$WORK"
  local top="$WORK/$(basename "$tarball" .tar.gz)"
  for path in "bin/$NAME" "completions/$NAME.bash" "completions/_$NAME" LICENSE CHANGELOG.md \
    SECURITY.md deploy/systemd/$NAME.service monitoring/alerts.yaml docs/install.md; do
    [[ -e "$top/$path" ]] || die "tarball lacks $path"
  done
  cmp "$top/bin/$NAME" "$root/usr/bin/$NAME" || die "tarball and package binaries differ"
  grep -q "Apache License" "$top/LICENSE" || die "LICENSE is not the Apache License"

  log "SBOM: $sbom_file"
  python3 - "$sbom_file" <<'PY'
import json, sys
bom = json.load(open(sys.argv[1]))
assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.5"
names = {c["name"] for c in bom["components"]}
for needed in ("tokio", "tonic", "prost", "ureq", "bao-kms-core", "bao-kms-proto"):
    assert needed in names, needed
assert not {"proptest", "tempfile"} & names, "dev-dependencies must not be listed"
refs = {c["bom-ref"] for c in bom["components"]} | {bom["metadata"]["component"]["bom-ref"]}
for dep in bom["dependencies"]:
    assert dep["ref"] in refs and set(dep["dependsOn"]) <= refs, dep["ref"]
missing = [c["name"] for c in bom["components"] if "purl" not in c]
assert not missing, missing
print(f"{len(bom['components'])} components")
PY
  log "all release checks passed"
}

case "${1:-}" in
  --verify)
    [[ $# -eq 2 ]] || die "usage: $0 --verify OUTDIR" 2
    verify "$2"
    ;;
  -* | "")
    die "usage: $0 OUTDIR | $0 --verify OUTDIR" 2
    ;;
  *)
    [[ $# -eq 1 ]] || die "usage: $0 OUTDIR" 2
    build "$1"
    ;;
esac
