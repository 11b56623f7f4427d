#!/usr/bin/env bash
# Runs every fuzz target over its committed corpus and stops at the first
# crash. CI: `bash fuzz/run.sh 20` (20 s per target). The long run:
# `bash fuzz/run.sh runs=10000000` (ten million executions per target).
# New inputs go to a scratch corpus, so the committed one changes only when
# a run is minimised into it on purpose (docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")"

limit="${1:-30}"
case "$limit" in
  runs=*) bound="-runs=${limit#runs=}" ;;
  *) bound="-max_total_time=$limit" ;;
esac

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# No sanitizer: outside src/kernels/ the crate forbids `unsafe`, so what a
# parser can do wrong is panic, overflow or hang, which the default build's
# debug assertions and overflow checks catch; ASan would halve the rate.
cargo fuzz build -s none

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in $(cargo fuzz list); do
  mkdir -p "$scratch/$target"
  echo "== $target ($limit)"
  log="$scratch/$target.log"
  if ! cargo fuzz run -s none "$target" "$scratch/$target" "corpus/$target" -- \
    "$bound" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed: its input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E "^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)" "$log"
done
