#!/usr/bin/env bash
# A long fuzzing campaign: every fuzz target (fuzz/fuzz_*.c) under ASan + UBSan
# for about HOURS hours of wall-clock time in all, with execs and crashes per
# target recorded in a results file.
#
# usage: scripts/fuzz-campaign.sh HOURS [TARGET ...]      (HOURS may be a fraction: 0.5)
#   FUZZ_JOBS      targets fuzzed at the same time (default: the number of cores)
#   FUZZ_DIR       where the campaign keeps its binaries, corpora, crashes, logs and
#                  results (default build-fuzz/campaign); corpora grow across campaigns
#   FUZZ_NICE      niceness of the fuzzers (default 10), so a campaign can run beside work
#   FUZZ_BUILD=0   use the fuzz targets already in build-fuzz/fuzz (default: build them first)
#
# Each target gets HOURS * 3600 * FUZZ_JOBS / (number of targets) seconds. A crash does
# not end a target's share: libFuzzer stops at the crash, the input is kept in
# FUZZ_DIR/NAME/crashes/, and the target starts again on its corpus until its time is
# used. The results file (FUZZ_DIR/results.md) has one row per target: seconds, execs,
# execs/s, crashes, timeouts, out-of-memory inputs, corpus size. Exit status 1 when any
# target crashed, timed out or ran out of memory. Reproduce a crash with
#   FUZZ_DIR/bin/fuzz_NAME FUZZ_DIR/NAME/crashes/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  echo "usage: scripts/fuzz-campaign.sh HOURS [TARGET ...]" >&2
  exit 64
fi
hours=$1
shift
jobs=${FUZZ_JOBS:-$(nproc)}
dir=$(realpath -m "${FUZZ_DIR:-build-fuzz/campaign}")
nice_level=${FUZZ_NICE:-10}

if [ "${FUZZ_BUILD:-1}" != 0 ]; then
  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DDSFT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-fuzz -j"$(nproc)" >/dev/null
fi

# The binaries are copied, so that a rebuild during the campaign does not change them.
mkdir -p "$dir/bin"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in build-fuzz/fuzz/fuzz_*; do [ -x "$f" ] && targets+=("$(basename "$f")"); done
fi
for t in "${targets[@]}"; do cp "build-fuzz/fuzz/$t" "$dir/bin/$t"; done
n=${#targets[@]}
# The targets that load the tiny tokenizer find it in $DSFT_SHARED (as scripts/test.sh sets it).
configured=$(sed -n 's/^DSFT_SHARED_DIR:PATH=//p' build/CMakeCache.txt 2>/dev/null || true)
export DSFT_SHARED=${DSFT_SHARED:-${configured:-$(realpath -m ../shared)}}
share=$(awk -v h="$hours" -v j="$jobs" -v n="$n" 'BEGIN { s = h * 3600 * j / n; printf "%d", s < 1 ? 1 : s }')
echo "fuzz campaign: ${n} targets, ${share}s each, ${jobs} at a time, in $dir"

# fuzz_one NAME: runs NAME for $share seconds (restarting after a crash), then writes
# NAME/summary: seconds execs crashes timeouts ooms corpus_files
fuzz_one() {
  local name=$1 work="$dir/$1" start now left execs=0 runs=0
  mkdir -p "$work/corpus" "$work/crashes"
  local seeds="fuzz/corpus/${name#fuzz_}"
  [ -d "$seeds" ] && cp -rn "$seeds"/. "$work/corpus"/
  start=$(date +%s)
  while :; do
    now=$(date +%s)
    left=$((share - (now - start)))
    [ "$left" -ge 5 ] || break
    runs=$((runs + 1))
    nice -n "$nice_level" "$dir/bin/$name" -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$work/crashes/" "$work/corpus" >"$work/run-$runs.log" 2>&1 || true
    local got
    got=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/run-$runs.log" | tail -1)
    if [ -z "$got" ]; then   # killed before its final stats: take the last progress line
      got=$(grep -oE '^#[0-9]+' "$work/run-$runs.log" | tail -1 | tr -d '#')
    fi
    execs=$((execs + ${got:-0}))
    # A target that stops at once without finding anything cannot start (a missing fixture):
    # say so instead of starting it again and again.
    if [ "${got:-0}" -eq 0 ] && [ -z "$(ls -A "$work/crashes")" ]; then
      echo "fuzz: $name does not start:" >&2
      tail -3 "$work/run-$runs.log" >&2
      echo 1 >"$work/broken"
      break
    fi
  done
  # A timeout is kept as a finding only when its input is slow again on its own: one that
  # runs at once was a stall of the machine (a shared machine under load), not of the code.
  mkdir -p "$work/stalls"
  local slow
  for slow in "$work"/crashes/timeout-*; do
    [ -e "$slow" ] || continue
    if "$dir/bin/$name" -timeout=10 -rss_limit_mb=2048 "$slow" >/dev/null 2>&1; then mv "$slow" "$work/stalls/"; fi
  done
  local secs=$(( $(date +%s) - start ))
  local crashes timeouts ooms files
  crashes=$(find "$work/crashes" -name 'crash-*' -o -name 'leak-*' -o -name 'deadly-*' | wc -l)
  timeouts=$(find "$work/crashes" -name 'timeout-*' | wc -l)
  ooms=$(find "$work/crashes" -name 'oom-*' | wc -l)
  files=$(find "$work/corpus" -type f | wc -l)
  local stalls
  stalls=$(find "$work/stalls" -type f | wc -l)
  echo "$secs $execs $crashes $timeouts $ooms $files $stalls" >"$work/summary"
  echo "fuzz: $name: $execs execs in ${secs}s, $crashes crashes, $timeouts timeouts, $ooms out of memory"
}

pids=()
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  fuzz_one "$t" &
  pids+=($!)
done
wait

results="$dir/results.md"
bad=0
{
  echo "Fuzz campaign of $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, ${jobs} targets at a time, nice ${nice_level}"
  echo
  echo "| target | seconds | execs | execs/s | crashes | timeouts | out of memory | corpus files | stalls (not reproduced) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for t in "${targets[@]}"; do
    read -r secs execs crashes timeouts ooms files stalls <"$dir/$t/summary"
    rate=$(awk -v e="$execs" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? e / s : 0) }')
    echo "| $t | $secs | $execs | $rate | $crashes | $timeouts | $ooms | $files | $stalls |"
    [ $((crashes + timeouts + ooms)) -eq 0 ] || bad=1
    [ ! -e "$dir/$t/broken" ] || bad=1
  done
} >"$results"
cat "$results"
exit $bad
