#!/usr/bin/env bash
# Run on the GPU machine, from the repository root, after scripts/device-pack.sh
# filled .device/ here and it travelled along:
#
#   bash scripts/gpu-check.sh
#
# 1. the GPU test binaries (.device/bin/test_gpu_*), every case, in parallel;
# 2. the kernel benchmarks of the 7B shapes (ds-ft bench kernels), both forward kernels;
# 3. compute-sanitizer memcheck on the suite (heavy cases skipped);
# 4. compute-sanitizer racecheck on the ops that use shared memory.
# Logs go to $OUT (else .device/logs); a short summary is printed last.
# GPU_CHECK_BUDGET (seconds, default 440) bounds the whole run: each stage gets
# at most what is left, so that the summary always comes out.
set -uo pipefail
cd "$(dirname "$0")/.."

dev=.device
logs=${OUT:-$dev/logs}
mkdir -p "$logs"
budget=${GPU_CHECK_BUDGET:-440}
start=$SECONDS
summary="$logs/summary.txt"
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }

source scripts/device-env.sh
missing=$(ldd "$dev"/bin/test_gpu_ops 2>/dev/null | grep "not found" || true)

left() { echo $((budget - (SECONDS - start))); }
# stage_timeout CAP: the smaller of CAP and what the budget leaves (minus a reserve for the summary)
stage_timeout() {
  local cap=$1 l
  l=$(($(left) - 15))
  [ "$l" -lt "$cap" ] && cap=$l
  echo "$cap"
}

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer \
  /usr/local/cuda*/compute-sanitizer/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH; carried libraries used: $(ls "$uselib" | tr '\n' ' ')"
  [ -n "$missing" ] && echo "missing libraries: $missing"
  echo "compute-sanitizer: ${sanitizer:-not found}"
  [ -n "$sanitizer" ] && "$sanitizer" --version 2>&1 | tail -1
} >"$logs/env.txt" 2>&1

# ---- 1. the suites
suite_rc=0
for t in "$dev"/bin/test_gpu_*; do
  name=$(basename "$t")
  to=$(stage_timeout 200)
  timeout -k 5 "$to" "$t" --jobs 8 --verbose >"$logs/$name.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && suite_rc=$rc
  echo "== $name: exit $rc (timeout ${to}s)" >>"$logs/$name.log"
done

# ---- 2. benchmarks (the default forward - wgmma on an H100 - and the mma.sync one)
to=$(stage_timeout 120)
if [ "$to" -gt 20 ]; then
  {
    echo "-- default forward kernel"
    timeout -k 5 $((to / 2)) "$dev/bin/ds-ft" bench kernels 2>&1 | sed 's/^/BENCH /'
    echo "-- the mma.sync forward, 32 query rows per warp"
    timeout -k 5 $((to / 2)) "$dev/bin/ds-ft" bench kernels --attn-fwd-rows 32 2>&1 | sed 's/^/BENCH /'
  } >"$logs/bench.log" 2>&1
fi

# ---- 3./4. compute-sanitizer
sanitize() {   # tool cap ops-filter
  local tool=$1 cap=$2 ops=$3 to
  to=$(stage_timeout "$cap")
  if [ -z "$sanitizer" ] || [ "$to" -lt 30 ]; then
    echo "== $tool: skipped (${sanitizer:-no compute-sanitizer}, ${to}s left)" >"$logs/$tool.log"
    return
  fi
  DSFT_GPU_QUICK=1 DSFT_GPU_OPS="$ops" timeout -k 5 "$to" "$sanitizer" --tool "$tool" --target-processes all \
    --print-limit 20 "$dev/bin/test_gpu_ops" --filter 'gpu_ops/*' --jobs 4 >"$logs/$tool.log" 2>&1
  echo "== $tool: exit $? (timeout ${to}s, ops: ${ops:-all})" >>"$logs/$tool.log"
}
# positive control: a planted out-of-bounds access must be reported
if [ -n "$sanitizer" ]; then
  DSFT_GPU_SANITIZER_PROBE=1 timeout -k 5 60 "$sanitizer" --tool memcheck --target-processes all --print-limit 5 \
    "$dev/bin/test_gpu_ops" --filter 'gpu_probe/*' >"$logs/probe.log" 2>&1
fi
sanitize memcheck 150 ""
sanitize racecheck 110 "attention_fwd,attention_bwd,sumsq,logits_stats,rmsnorm_fwd,nf4_dequant,gemm,nf4_gemv,attention_cached"

# ---- summary
say "==================== ds-ft GPU check: ${gpu:-no GPU found}"
[ -n "$missing" ] && say "MISSING LIBRARIES: $missing"
for t in "$dev"/bin/test_gpu_*; do
  name=$(basename "$t")
  say "$name: $(grep -h 'Synthesis' "$logs/$name.log" | tail -1 | sed 's/.*Synthesis: //') $(tail -1 "$logs/$name.log")"
  grep -hE '^\[(FAIL|----)\]|Assertion|CRASH|crash' "$logs/$name.log" | grep -v 'Criterion v' | head -15 | sed 's/^/  /' | tee -a "$summary"
done
say "worst relative error per op (over all cases):"
grep -h '^GPUCASE' "$logs"/test_gpu_*.log 2>/dev/null | awk '{op=$2; e=$NF+0; if (!(op in w) || e > w[op]) w[op]=e; n[op]++}
  END {for (op in w) printf "  %-14s %3d cases  %.3e\n", op, n[op], w[op]}' | sort | tee -a "$summary"
say "benchmarks:"
grep -hE '^(--|BENCH)' "$logs/bench.log" 2>/dev/null | sed 's/^/  /' | tee -a "$summary"
for tool in memcheck racecheck; do
  f="$logs/$tool.log"
  [ -f "$f" ] || continue
  if [ "$tool" = memcheck ]; then key='ERROR SUMMARY'; else key='RACECHECK SUMMARY'; fi
  nproc_seen=$(grep -c "$key" "$f")
  nerr=$(grep -h "$key" "$f" | awk '{s += $4} END {print s + 0}')
  say "$tool: $nerr reported ($nproc_seen summaries); $(grep -h 'Synthesis' "$f" | tail -1 | sed 's/.*Synthesis: //'); $(tail -1 "$f")"
  grep -hE 'Invalid|Race|hazard|rror' "$f" | grep -vE "$key" | sed 's/0x[0-9a-f]*/ADDR/g' | sort | uniq -c | sort -rn | head -8 |
    sed 's/^/  /' | tee -a "$summary"
done
if [ -f "$logs/probe.log" ]; then
  say "sanitizer positive control (planted out-of-bounds access in a test process): $(grep -h 'ERROR SUMMARY' "$logs/probe.log" | tail -1 | sed 's/=* *//') (must not be 0)"
fi
say "elapsed $((SECONDS - start)) s; logs in $logs"
[ "$suite_rc" -eq 0 ]
