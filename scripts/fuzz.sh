#!/usr/bin/env bash
# Runs each libFuzzer target of fuzz/ for RUNS iterations (default 1,000,000) on the nightly
# toolchain, starting from the committed corpus fuzz/corpus/NAME (left untouched: new inputs go
# to a scratch corpus), and prints per target: runs, coverage (libFuzzer's cov/ft counters),
# corpus size and crashes. A crashing input lands in $WORK/artifacts/NAME/: copy it to
# fuzz/regressions/NAME/ with the fix, so the stable harness (device/tests/fuzz.rs) replays it.
#
#   scripts/fuzz.sh [NAME ...]          all targets when none is named
#   RUNS=100000 scripts/fuzz.sh photo
#
# Needs `cargo +nightly` and cargo-fuzz (installed here with `cargo install cargo-fuzz --locked`
# when missing). The build goes to $CARGO_TARGET_DIR (default ~/.cache/papilla/fuzz-target),
# never inside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-1000000}"
WORK="${WORK:-${TMPDIR:-/tmp}/papilla-fuzz}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/papilla/fuzz-target}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(bundle index mask config photo)
status=0
for t in "${targets[@]}"; do
  mkdir -p "$WORK/corpus/$t" "$WORK/artifacts/$t"
  log="$WORK/$t.log"
  start=$(date +%s)
  # -timeout: one input may take 10 s at most; -rss_limit_mb: a bomb that allocates is a crash.
  extra=()
  # jpeg-decoder decodes a JPEG wider than 128 px on detached worker threads (one per colour
  # component) that exit after handing back their plane; LeakSanitizer can look while one is
  # still exiting and report its thread-local destructor list (64 bytes in
  # __cxa_thread_atexit_impl; the input alone never reproduces it). Leaks stay checked on the
  # other targets; the photo path's memory is what the soak's RSS bound watches.
  [ "$t" = photo ] && extra+=(-detect_leaks=0)
  if cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$WORK/corpus/$t" "fuzz/corpus/$t" -- \
      -runs="$RUNS" -timeout=10 -rss_limit_mb=2048 -max_len=65536 "${extra[@]}" \
      -artifact_prefix="$WORK/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see $log and $WORK/artifacts/$t/)"; status=1
  fi
  secs=$(( $(date +%s) - start ))
  done_line=$(grep -E '^#[0-9]+\s+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true)
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  echo "$t: $result; runs $runs in ${secs} s; last: $done_line"
done
exit $status
