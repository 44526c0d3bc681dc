#!/usr/bin/env bash
# tiny.yaml with device: cuda against the same run with device: cpu: the loss
# at every logged step (the mean over its logging window, as Hugging Face's
# Trainer logs it) within 2%, and the same evaluation accuracy; on the GPU
# train.keep_attention and train.keep_projections at auto keep both in every
# layer (a tiny model fits any card), which changes no arithmetic. Skips
# (exit 0 with a line saying so) where there is no GPU.
# usage: gpu_tiny.sh DSFT SHARED_DIR
set -euo pipefail
DSFT=$(realpath "$1")
cd "$(dirname "$0")/../.."
if ! "$DSFT" --version | grep -q "cuda devices: [1-9]"; then
  echo "gpu_tiny: no CUDA device: skipped"
  exit 0
fi
tmp=${DSFT_KEEP:-$(mktemp -d)}
over=(save.merge=false)
"$DSFT" recipes/tiny.yaml device=cpu output_dir="$tmp/cpu" "${over[@]}" > "$tmp/cpu.log" 2>&1
"$DSFT" recipes/tiny.yaml device=cuda output_dir="$tmp/cuda" "${over[@]}" > "$tmp/cuda.log" 2>&1
grep -q "q, k, v and the residual after attention kept on the GPU in 2 of 2 layers" "$tmp/cuda.log" ||
  { grep "memory:" "$tmp/cuda.log"; echo "FAIL: the cuda run did not keep the projections"; exit 1; }
echo "gpu_tiny: the cuda run kept the attention output and every layer's projections"
losses() { grep '"loss"' "$1" | grep -v '"eval"' | grep -o '"step":[0-9]*,"epoch":[^,]*,"loss":[^,]*' | sed 's/"epoch":[^,]*,//; s/"step"://; s/,"loss":/ /'; }
paste <(losses "$tmp/cpu/metrics.jsonl") <(losses "$tmp/cuda/metrics.jsonl") | tee "$tmp/curves.txt" | awk '
  { if ($1 != $3) { print "FAIL: step mismatch " $1 " " $3; bad = 1 }
    d = ($4 - $2) / $2; if (d < 0) d = -d; if (d > worst) worst = d
    if (d > 0.02) { print "FAIL: step " $1 ": cpu " $2 ", cuda " $4 " (" d * 100 "%)"; bad = 1 } n++ }
  END { printf "gpu_tiny: %d logged steps, largest loss difference %.3f%%\n", n, worst * 100; exit bad }'
acc() { tr -d ' \n' < "$1/eval/eval.json" | grep -o '"after":{[^}]*}' | grep -o '"acc":[0-9.]*' | cut -d: -f2; }
a=$(acc "$tmp/cpu") b=$(acc "$tmp/cuda")
echo "gpu_tiny: accuracy after training: cpu $a, cuda $b"
[ "$a" = "$b" ] || { echo "FAIL: accuracies differ"; exit 1; }

# DPO trains on the GPU too (a short run of recipes/dpo.yaml).
"$DSFT" recipes/dpo.yaml device=cuda output_dir="$tmp/dpo" train.max_steps=8 > "$tmp/dpo.log" 2>&1 ||
  { tail -5 "$tmp/dpo.log"; echo "FAIL: dpo.yaml on cuda"; exit 1; }
grep -q '"rewards/accuracies"' "$tmp/dpo/metrics.jsonl" || { echo "FAIL: no DPO metrics"; exit 1; }
echo "gpu_tiny: dpo.yaml trains on cuda ($(grep -c '"rewards/margins"' "$tmp/dpo/metrics.jsonl") logged steps)"
