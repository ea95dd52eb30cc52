#!/usr/bin/env bash
# Renders the Graphviz sources in docs/diagrams/*.dot into the SVG files next to them.
#
#   scripts/render-diagrams.sh           write docs/diagrams/*.svg
#   scripts/render-diagrams.sh --check   fail if a committed SVG differs from a fresh rendering
#                                        (or is missing, or has no source)
#
# Needs `dot` (Debian package `graphviz`). The rendering depends on the Graphviz version; the
# committed files come from Debian 12's graphviz 2.43.0, the version CI installs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(repo_root)/docs/diagrams"

command -v dot >/dev/null 2>&1 || die "dot is required (apt-get install graphviz)"
mode="${1:-write}"
case "$mode" in write | --check) ;; *) die "usage: $0 [--check]" 2 ;; esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
stale=0
for source in *.dot; do
  svg="${source%.dot}.svg"
  dot -Tsvg "$source" -o "$tmp/$svg"
  if [[ "$mode" == --check ]]; then
    if ! cmp -s "$tmp/$svg" "$svg"; then
      log "stale: docs/diagrams/$svg (run scripts/render-diagrams.sh)"
      stale=1
    fi
  else
    cp "$tmp/$svg" "$svg"
  fi
done
for svg in *.svg; do
  [[ -e "${svg%.svg}.dot" ]] || { log "docs/diagrams/$svg has no source"; stale=1; }
done
if ((stale)); then exit 1; fi
log "diagrams: $([[ "$mode" == --check ]] && echo current || echo rendered) ($(ls ./*.dot | wc -l) files)"
