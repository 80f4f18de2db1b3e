#!/usr/bin/env bash
# Fuzz throughput, measured in one run: `scenario` executions per second against `ingress` (the
# cheapest target), each from a copy of its committed seed corpus, interleaved twice.
# Usage: fuzz/throughput.sh [SECONDS_PER_RUN] [extra cargo-fuzz build flags, e.g. --no-trace-compares]
# Set GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=268435456
# to see what the allocator's page churn costs (ingress: about 7x faster here).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-20}"
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build -s none "$@" scenario >/dev/null
cargo fuzz build -s none "$@" ingress >/dev/null
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
declare -A total
for round in 1 2; do
  for target in scenario ingress; do
    rm -rf "$tmp/$target" && cp -r "corpus/$target" "$tmp/$target"
    rate=$(cargo fuzz run -s none "$@" "$target" "$tmp/$target" -- \
        -max_total_time="$secs" -print_final_stats=1 2>&1 |
      sed -n 's/^stat::average_exec_per_sec: *//p')
    echo "round $round: $target $rate exec/s"
    total[$target]=$(( ${total[$target]:-0} + rate ))
  done
done
echo "scenario/ingress: $(echo "scale=2; ${total[scenario]} / ${total[ingress]}" | bc)x;" \
  "scenario mean $(( total[scenario] / 2 )) exec/s (aim: 2000)"
