#!/usr/bin/env bash
# Data parallelism on the CPU (--cpu-ranks: the ranks' logic with rank 0 summing
# in place of NCCL): the same global batch split over 1, 2 and 4 ranks gives the
# same losses and the same adapter; Ctrl-C stops every rank after the same step
# and a different number of ranks resumes; a rank killed stops the run with its
# reason, leaves the last checkpoint whole, and --resume finishes it; --gpus is
# refused where there are no GPUs.
# usage: ranks.sh DSFT SHARED_DIR
DSFT=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/cli/lib/checks.sh

# lr constant: a resumed run may say another max_steps without changing the schedule
common=(train recipes/tiny.yaml eval.datasets=[] save.merge=false train.logging_steps=1 train.micro_batch_size=2
        adapter.lora_dropout=0.1 train.lr_scheduler=constant train.warmup_steps=0 save.every_steps=5)
losses() { grep -o '"step":[0-9]*,"epoch":[^,]*,"loss":[^,]*' "$1" | sed 's/"epoch":[^,]*,//; s/"step"://; s/"loss"://'; }
rows() { grep -c '"loss"' "$1" 2>/dev/null || true; }
# The ranks add their partial sums of the gradients in another order than one
# process accumulating all micro-batches: fp32 rounding noise, which AdamW
# (dividing by sqrt(v)) lifts for the smallest gradients. Same means within
# 1e-5 relative for each step's loss and 1e-3 of the largest adapter value; a
# different global batch (below) misses that by far.
same_losses() {
    python3 -c "
import sys
a = [l.split(',') for l in open(sys.argv[1]).read().split()]
b = [l.split(',') for l in open(sys.argv[2]).read().split()]
worst = max((abs(float(x[1]) - float(y[1])) / abs(float(x[1])) for x, y in zip(a, b)), default=1)
print('largest relative loss difference %.3g over %d steps' % (worst, len(a)))
sys.exit(0 if len(a) == len(b) and len(a) > 0 and all(x[0] == y[0] for x, y in zip(a, b)) and worst <= 1e-5 else 1)
" <(losses "$1/metrics.jsonl") <(losses "$2/metrics.jsonl")
}
adapter_gap() {
    python3 tests/cli/lib/adapter_diff.py "$1/adapter/adapter_model.safetensors" "$2/adapter/adapter_model.safetensors" |
        awk '{printf "%.3g\n", $2 / $4}'
}
same_run() {
    local l g
    l=$(same_losses "$1" "$2") && ok "$3: same losses ($l)" || fail "$3: losses differ ($l)"
    g=$(adapter_gap "$1" "$2")
    echo "$3: largest adapter difference / largest adapter value: $g"
    awk -v g="$g" 'BEGIN { exit !(g <= 1e-3) }' && ok "$3: same adapter" || fail "$3: adapters differ by $g"
}

expect 0 "one process, 4 micro-batches a step" -- "${common[@]}" train.max_steps=12 train.gradient_accumulation_steps=4 output_dir="$T/one"
expect 0 "2 ranks x 2 micro-batches" -- "${common[@]}" train.max_steps=12 train.gradient_accumulation_steps=2 output_dir="$T/two" --cpu-ranks 2
has "$T/err" "ranks: 2 (test sum through rank 0), each 2 micro-batches of each step" "rank 0 says how the step is split"
[ "$(grep -c '^step 12/12' "$T/err")" -eq 1 ] && ok "only rank 0 logs" || fail "step lines: $(grep -c '^step 12/12' "$T/err")"
expect 0 "4 ranks x 1 micro-batch" -- "${common[@]}" train.max_steps=12 train.gradient_accumulation_steps=1 output_dir="$T/four" --cpu-ranks 4
same_run "$T/one" "$T/two" "1 rank vs 2"
same_run "$T/one" "$T/four" "1 rank vs 4"
[ "$(losses "$T/one/metrics.jsonl" | wc -l)" -eq 12 ] || fail "expected 12 logged steps"
# the check can fail: half the global batch (2 ranks x 1) is another run
expect 0 "2 ranks x 1 micro-batch (another global batch)" -- "${common[@]}" train.max_steps=12 \
    train.gradient_accumulation_steps=1 output_dir="$T/half" --cpu-ranks 2
g=$(adapter_gap "$T/one" "$T/half")
echo "another global batch: largest adapter difference / largest adapter value: $g"
awk -v g="$g" 'BEGIN { exit !(g > 1e-2) }' && ok "another global batch: far apart" || fail "another batch differs by $g only"

# Ctrl-C: every rank stops after the same step, rank 0 writes the checkpoint; 1 process resumes
"$DSFT" "${common[@]}" train.max_steps=400 train.gradient_accumulation_steps=2 output_dir="$T/int" --cpu-ranks 2 \
    >"$T/int.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    [ "$(rows "$T/int/metrics.jsonl")" -ge 8 ] 2>/dev/null && break
    sleep 0.05
done
kill -INT "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 130 ] && ok "Ctrl-C: exit 130" || fail "Ctrl-C: exit $rc: $(tail -3 "$T/int.log")"
has "$T/int.log" "the 2 ranks stopped after the same step" "Ctrl-C: said"
last=$(ls "$T/int/checkpoints" | sed 's/step-//' | sort -n | tail -1)
[ "$last" -ge 8 ] && [ "$last" -lt 400 ] && ok "Ctrl-C: checkpoint step-$last" || fail "Ctrl-C: checkpoint step-$last"
expect 0 "resumed by 1 process (4 micro-batches a step)" -- "${common[@]}" train.max_steps=$((last + 4)) \
    train.gradient_accumulation_steps=4 output_dir="$T/int" --resume
expect 0 "the same run in one process" -- "${common[@]}" train.max_steps=$((last + 4)) train.gradient_accumulation_steps=4 \
    output_dir="$T/int1"
same_run "$T/int1" "$T/int" "2 ranks interrupted, resumed by 1"

# a rank killed: the run stops with the reason, the checkpoint is whole, --resume finishes
"$DSFT" "${common[@]}" train.max_steps=400 train.gradient_accumulation_steps=2 output_dir="$T/kill" --cpu-ranks 2 \
    >"$T/kill.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    [ "$(rows "$T/kill/metrics.jsonl")" -ge 7 ] 2>/dev/null && break
    sleep 0.05
done
rank1=$(for c in $(pgrep -P "$pid"); do tr '\0' '\n' < /proc/$c/environ | grep -qx RANK=1 && echo "$c"; done)
kill -KILL $rank1
wait "$pid"
rc=$?
[ "$rc" -eq 1 ] && ok "rank 1 killed: exit 1" || fail "rank 1 killed: exit $rc: $(tail -3 "$T/kill.log")"
has "$T/kill.log" "rank 1 stopped (its connection closed)" "rank 0 names the rank that stopped"
has "$T/kill.log" "rank 1 of 2 was killed by signal 9" "the launcher says how"
last=$(ls "$T/kill/checkpoints" | sed 's/step-//' | sort -n | tail -1)
[ -e "$T/kill/checkpoints/step-$last/checkpoint.complete" ] && ok "last checkpoint step-$last whole" || fail "no whole checkpoint"
# rank 1 takes the checkpoint's state from rank 0: the finished run is the one never killed ($T/one)
expect 0 "--resume after the kill, 2 ranks" -- "${common[@]}" train.max_steps=12 train.gradient_accumulation_steps=2 \
    output_dir="$T/kill" --resume --cpu-ranks 2
has "$T/err" "resume: from" "the resumed run said where it started"
same_run "$T/one" "$T/kill" "2 ranks killed, resumed by 2"

# no GPU here (or a build without CUDA): --gpus is refused, nothing written, no fallback
if [ "$("$DSFT" --version | grep -c 'cuda devices: [1-9]')" -eq 0 ]; then
    expect 64 "--gpus 2 without GPUs" -- "${common[@]}" output_dir="$T/gpus" --gpus 2
    has "$T/err" "--gpus 2:" "the refusal names --gpus"
    nothing_at "$T/gpus"
fi
expect 64 "--cpu-ranks with device: cuda" -- "${common[@]}" device=cuda output_dir="$T/c" --cpu-ranks 2
expect 64 "--gpus under torchrun" -- env WORLD_SIZE=2 "$DSFT" "${common[@]}" output_dir="$T/c" --gpus 2
WORLD_SIZE=2 RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 "$DSFT" "${common[@]}" output_dir="$T/c" >"$T/out" 2>"$T/err"
[ $? -eq 64 ] && ok "torchrun variables without MASTER_PORT: exit 64" || fail "torchrun variables without MASTER_PORT"
has "$T/err" "MASTER_PORT is not" "the missing variable is named"
finish ranks
