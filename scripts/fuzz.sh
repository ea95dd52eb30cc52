#!/usr/bin/env bash
# Fuzz every cargo-fuzz target in fuzz/ for a fixed time, starting from the committed corpora.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     # default 20 (or $FUZZ_SECONDS)
#
# Steps: install cargo-fuzz 0.13.2 if it is missing; build every target once; run each target
# for the given time on a throw-away copy of fuzz/corpus/<target>/ (so runs never dirty the
# repository); print the executions per target as a table. Exits non-zero when any target
# crashes, leaks, times out or fails to run, and prints the path of each crashing input
# (kept under fuzz/artifacts/<target>/, which git ignores). docs/fuzzing.md explains how to
# turn one into a regression test.
#
# Environment:
#   FUZZ_SECONDS=N     seconds per target when no argument is given (default 20)
#   FUZZ_TARGETS="a b" run only these targets (default: every target, `cargo fuzz list`)
#   FUZZ_JOBS=N        parallel fuzzing processes per target (cargo fuzz --jobs; default 1)
#   FUZZ_NIGHTLY=1     build with `cargo +nightly fuzz` and AddressSanitizer instead of the
#                      default stable toolchain without a sanitizer (`-s none`)
#   FUZZ_KEEP_CORPUS=1 keep the grown working corpora and print where they are
#   FUZZ_TARGET_DIR=d  cargo target dir of the instrumented build (default fuzz/target)
#   FUZZ_CODEGEN_UNITS=n  codegen units of the instrumented build (default 16)
#
# At the default 20 s the runs take about 4 minutes once the targets are built; a cold build
# of the instrumented workspace adds about 5.5 minutes on 2 cores, and installing cargo-fuzz
# about 1 minute.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$(repo_root)"

readonly CARGO_FUZZ_VERSION="0.13.2"
seconds="${1:-${FUZZ_SECONDS:-20}}"
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || die "seconds per target must be a positive integer, got '$seconds'"
jobs="${FUZZ_JOBS:-1}"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "FUZZ_JOBS must be a positive integer, got '$jobs'"

if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# Stable (the toolchain rust-toolchain.toml pins) cannot build AddressSanitizer: it needs
# -Zsanitizer. `-s none` fuzzes without a sanitizer; safe Rust still panics on every bug the
# checks look for. Nightly, when present, adds ASan.
toolchain=()
sanitizer=(-s none)
if [[ "${FUZZ_NIGHTLY:-0}" == "1" ]]; then
  toolchain=(+nightly)
  sanitizer=(-s address)
fi
# A target dir of its own: the instrumented build never contends with (or invalidates) the
# workspace's ordinary target/. The release profile's thin LTO would make linking each of the
# ten targets take minutes on a small machine and buys nothing for fuzzing, so it is off (for
# the build and the runs alike, or cargo would rebuild).
# cargo-fuzz builds with one codegen unit by default, which leaves one of two cores idle for
# most of a cold build (7 min against 5.5 min with 16 units on the 2-core CI machine).
build_flags=("${sanitizer[@]}" --target-dir "${FUZZ_TARGET_DIR:-fuzz/target}"
  --codegen-units "${FUZZ_CODEGEN_UNITS:-16}")
export CARGO_PROFILE_RELEASE_LTO=false

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi
((${#targets[@]} > 0)) || die "no fuzz targets found"

log "building ${#targets[@]} fuzz targets (${toolchain[*]:-stable} ${sanitizer[*]})"
cargo "${toolchain[@]}" fuzz build "${build_flags[@]}"

work="$(mktemp -d "${TMPDIR:-/tmp}/bao-kms-fuzz.XXXXXX")"
if [[ "${FUZZ_KEEP_CORPUS:-0}" != "1" ]]; then
  trap 'rm -rf "$work"' EXIT
fi

# Executions of one run, from libFuzzer's final stats (summed over jobs); `Done N runs` and the
# last `#N` status line are fallbacks, `?` when the output has none of them.
executions() {
  local total
  total="$({ grep -o 'stat::number_of_executed_units: *[0-9]*' "$1" || true; } |
    awk '{ total += $2 } END { if (NR) print total }')"
  [[ -n "$total" ]] || total="$({ grep -o 'Done [0-9]* runs' "$1" || true; } | tail -n1 | awk '{ print $2 }')"
  [[ -n "$total" ]] || total="$({ grep -o '^#[0-9]*' "$1" || true; } | tail -n1 | tr -d '#')"
  printf '%s\n' "${total:-?}"
}

# What a reader of the CI log needs from a failed run: the panic message with its assertion
# (libFuzzer's last lines are only statistics), the sanitizer or libFuzzer error lines, and the
# tail of the output for context.
report_failure() {
  local target="$1" output="$2"
  log "$target failed; the panic and the assertion that failed:"
  if grep -q 'panicked at' "$output"; then
    # The first panic, with the message and assertion lines that follow it.
    awk '/panicked at/ { show = 1 } show && /^(==[0-9]+==|note: )/ { exit }
      show && shown < 25 { print; shown++ }' "$output" >&2
  else
    echo "  (no Rust panic in the output)" >&2
  fi
  grep -E '^(==[0-9]+==|SUMMARY:|ERROR:|MS: |Base64: )' "$output" | head -n 20 >&2 || true
  log "$target: the last lines of its output:"
  tail -n 15 "$output" >&2
}

rows=()
failures=()
for target in "${targets[@]}"; do
  corpus="$work/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  output="$work/$target.log"
  mkdir -p "$corpus" "$artifacts"
  if [[ -d "fuzz/corpus/$target" ]]; then
    cp -R "fuzz/corpus/$target/." "$corpus/"
  fi
  seeds="$(find "$corpus" -type f | wc -l)"
  log "fuzzing $target for ${seconds}s from $seeds corpus files"
  status=0
  # -timeout: one input may run 25 s before it counts as a hang; -rss_limit_mb: libFuzzer's
  # default memory limit, stated explicitly.
  cargo "${toolchain[@]}" fuzz run "${build_flags[@]}" --jobs "$jobs" "$target" "$corpus" -- \
    -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$output" 2>&1 || status=$?
  # libFuzzer's own count; `Done N runs` and the last `#N` status line are fallbacks.
  runs="$(executions "$output")"
  grown="$(find "$corpus" -type f | wc -l)"
  verdict="ok"
  if ((status != 0)); then
    verdict="FAILED (exit $status)"
    crashes="$(grep -o 'Test unit written to .*' "$output" | sed 's/^Test unit written to //' || true)"
    report_failure "$target" "$output"
    if [[ -n "$crashes" ]]; then
      while IFS= read -r crash; do
        log "$target: crashing input: $crash"
        failures+=("$target: $crash")
      done <<<"$crashes"
    else
      failures+=("$target: exit $status, no crashing input written (see the output above)")
    fi
  fi
  rows+=("$(printf '%-20s %14s %9s %8s  %s' "$target" "$runs" "$seeds" "$grown" "$verdict")")
done

printf '\n%-20s %14s %9s %8s  %s\n' "target" "executions" "corpus" "grown" "result"
printf '%s\n' "${rows[@]}"
printf '\n(%s s per target, %s, %s job(s))\n' "$seconds" "${toolchain[*]:-stable} ${sanitizer[*]}" "$jobs"
if [[ "${FUZZ_KEEP_CORPUS:-0}" == "1" ]]; then
  log "working corpora kept in $work/corpus"
fi

if ((${#failures[@]} > 0)); then
  log "fuzzing found ${#failures[@]} failure(s):"
  printf '  %s\n' "${failures[@]}" >&2
  exit 1
fi
log "no crash in ${#targets[@]} targets"
