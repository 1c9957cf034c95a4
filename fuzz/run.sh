#!/usr/bin/env bash
# Runs every fuzz target of sse-core for a short, fixed time and fails on any
# crash (a panic, a broken property, a sanitizer report, a hang).
#
#   fuzz/run.sh                               # every target, 30 s each
#   SSE_FUZZ_SECONDS=600 fuzz/run.sh last_event_id
#   SSE_FUZZ_SANITIZER=none fuzz/run.sh       # without the address sanitizer
#
# cargo-fuzz passes nightly-only flags to rustc; the stable toolchain accepts
# them with RUSTC_BOOTSTRAP=1. New inputs are kept in fuzz/corpus/<target>
# (not committed), crashes in fuzz/artifacts/<target> and the log of each
# run in fuzz/artifacts/<target>.log; fuzz/seeds/<target>
# holds the committed seed inputs and <target>.dict a dictionary.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${SSE_FUZZ_SECONDS:-30}"
sanitizer="${SSE_FUZZ_SANITIZER:-address}"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(publish_request encode_roundtrip last_event_id)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

printf '==> building the fuzz targets (sanitizer: %s)\n' "$sanitizer"
cargo fuzz build --sanitizer "$sanitizer"

for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  corpora=("corpus/$target")
  if [ -d "seeds/$target" ]; then
    corpora+=("seeds/$target")
  fi
  options=("-max_total_time=$seconds" "-timeout=20")
  if [ -f "$target.dict" ]; then
    options+=("-dict=$target.dict")
  fi
  printf '==> fuzzing %s for %s s\n' "$target" "$seconds"
  mkdir -p artifacts
  log="artifacts/$target.log"
  if cargo fuzz run --sanitizer "$sanitizer" "$target" "${corpora[@]}" -- "${options[@]}" >"$log" 2>&1; then
    grep -E '^(#[0-9]+[[:space:]]+DONE|Done )' "$log"
  else
    tail -n 100 "$log"
    echo "fuzz target $target failed: see fuzz/$log; the failing input is in fuzz/artifacts/$target" >&2
    exit 1
  fi
done
