#!/usr/bin/env bash
# Time to bug: how long `scenario` fuzzing takes to find a silent loss with one legacy rule
# switched on over the fixed rules (target `scenario_rule`, rule from FWSIM_FUZZ_RULE), and with
# the whole legacy preset for reference. Per rule, RUNS runs (libFuzzer -seed=1..RUNS), each
# from a copy of the committed `scenario` corpus minus the inputs that already lose under that
# rule (so the fuzzer has to make the bug), each capped at CAP seconds. A run's time is the wall
# time of `cargo fuzz run` until its first crash (cargo-fuzz start-up included); the median
# counts a run that found nothing as slower than any that did. Then fuzz/throughput.sh prints
# `scenario` executions/s beside `ingress` in the same run.
# Usage: fuzz/time_to_bug.sh [CAP_SECONDS=120] [RUNS=5] [THROUGHPUT_SECONDS=15]
# RULES="L3 L7" runs only those (default: L1 L2 L3 L4 L5 L6 L7 legacy).
set -euo pipefail
cd "$(dirname "$0")"
cap="${1:-120}"
runs="${2:-5}"
tp_secs="${3:-15}"
rules="${RULES:-L1 L2 L3 L4 L5 L6 L7 legacy}"
flags=(-s none --no-trace-compares)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build "${flags[@]}" scenario_rule >/dev/null
host="$(rustc -vV | sed -n 's/^host: //p')"
bin="target/$host/release/scenario_rule"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Copies the scenario corpus into $1, leaving out the inputs that already lose under rule $2
# (replayed one by one through the target's own body); prints how many were left out.
corpus_without_failing() {
  local dir="$1" rule="$2" dropped=0 f
  mkdir -p "$dir"
  for f in corpus/scenario/*; do
    if FWSIM_FUZZ_RULE="$rule" "$bin" "$f" >/dev/null 2>&1; then
      cp "$f" "$dir/"
    else
      dropped=$((dropped + 1))
    fi
  done
  echo "$dropped"
}

# One run: prints "SECONDS EXECUTIONS found|none|error".
one_run() {
  local rule="$1" seed="$2" dir="$tmp/$1-$2" log="$tmp/$1-$2.log" start end secs execs what
  rm -rf "$dir" "$dir.art" && mkdir -p "$dir.art"
  corpus_without_failing "$dir" "$rule" >/dev/null
  start=$(date +%s.%N)
  FWSIM_FUZZ_RULE="$rule" cargo fuzz run "${flags[@]}" scenario_rule "$dir" -- \
    -seed="$seed" -max_total_time="$cap" -print_final_stats=1 \
    -artifact_prefix="$dir.art/" >"$log" 2>&1 || true
  end=$(date +%s.%N)
  secs=$(echo "$end - $start" | bc)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if compgen -G "$dir.art/crash-*" >/dev/null; then
    what=found
  elif grep -q '^Done [0-9]* runs' "$log"; then
    what=none
  else
    what=error
    tail -20 "$log" >&2
  fi
  printf '%.2f %s %s\n' "$secs" "${execs:-0}" "$what"
}

printf '%s\n' "time to bug: cap ${cap} s per run, ${runs} runs per rule, $(date -u +%Y-%m-%dT%H:%MZ)"
summary=()
for rule in $rules; do
  dropped=$(corpus_without_failing "$tmp/check-$rule" "$rule")
  rm -rf "$tmp/check-$rule"
  times=() total_secs=0 total_execs=0 sortable=()
  for seed in $(seq 1 "$runs"); do
    read -r secs execs what < <(one_run "$rule" "$seed")
    echo "$rule run $seed: $what after $secs s, $execs executions"
    total_secs=$(echo "$total_secs + $secs" | bc)
    total_execs=$((total_execs + execs))
    if [ "$what" = found ]; then
      times+=("$secs")
      sortable+=("$secs")
    else
      times+=("-")
      # Slower than any run that found it: a miss is "more than the cap".
      sortable+=(999999)
    fi
  done
  median=$(printf '%s\n' "${sortable[@]}" | sort -g | sed -n "$(((runs + 1) / 2))p")
  rate=$(echo "$total_execs / $total_secs" | bc)
  if [ "$median" = 999999 ]; then
    result="not found in ${cap} s"
  else
    result="median ${median} s"
  fi
  summary+=("$(printf '%-7s %-22s runs: %-40s %6s exec/s  (corpus: %s failing inputs left out)' \
    "$rule" "$result" "${times[*]}" "$rate" "$dropped")")
done
echo
echo "rule    result                 (seconds to the first silent loss per run; - = none within ${cap} s; exec/s over the runs' wall time)"
printf '%s\n' "${summary[@]}"
echo
./throughput.sh "$tp_secs" --no-trace-compares
