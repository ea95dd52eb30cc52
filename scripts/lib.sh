#!/usr/bin/env bash
# Shared helpers for the scripts in this directory. Source it, do not run it:
#   # shellcheck source=scripts/lib.sh
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It deliberately sets no shell options; each caller owns `set -euo pipefail`.

# Absolute path of the repository root. Derived from this file's location (not
# from `git rev-parse`) so it also works from a tarball or a worktree without git.
repo_root() {
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
  printf '%s\n' "$(dirname "$here")"
}

# Diagnostics go to stderr so that stdout stays machine-readable (install-bao.sh
# prints only the binary path on stdout, and callers capture it with $(...)).
log() {
  printf '[%s] %s\n' "$(basename "${0:-bash}")" "$*" >&2
}

# Print an error and exit non-zero; an optional second argument sets the code.
die() {
  log "error: $1"
  exit "${2:-1}"
}

# Three free loopback ports "BAO_PORT METRICS_PORT HEALTH_PORT": OpenBao's dev server also binds
# BAO_PORT+1 (its cluster port), so that one is checked too.
free_ports() {
  python3 - <<'PY'
import socket
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
def pick():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
while True:
    p = pick()
    if p < 65000 and free(p + 1):
        break
print(p, pick(), pick())
PY
}
