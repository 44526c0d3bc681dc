#!/usr/bin/env bash
# tiny.yaml with device: cuda against the same run with device: cpu: the loss
# at every logged step within 2%, and the same evaluation accuracy. Skips
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
over=(train.logging_steps=8 save.merge=false)
"$DSFT" recipes/tiny.yaml device=cpu output_dir="$tmp/cpu" "${over[@]}" > "$tmp/cpu.log" 2>&1
"$DSFT" recipes/tiny.yaml device=cuda output_dir="$tmp/cuda" "${over[@]}" > "$tmp/cuda.log" 2>&1
losses() { grep '"loss"' "$1" | grep -v '"eval"' | grep -o '"step":[0-9]*,"epoch":[^,]*,"loss":[^,]*' | sed 's/"epoch":[^,]*,//; s/"step"://; s/,"loss":/ /'; }
paste <(losses "$tmp/cpu/metrics.jsonl") <(losses "$tmp/cuda/metrics.jsonl") | awk '
  { if ($1 != $3) { print "FAIL: step mismatch " $1 " " $3; bad = 1 }
    d = ($4 - $2) / $2; if (d < 0) d = -d; if (d > worst) worst = d
    if (d > 0.02) { print "FAIL: step " $1 ": cpu " $2 ", cuda " $4 " (" d * 100 "%)"; bad = 1 } n++ }
  END { printf "gpu_tiny: %d logged steps, largest loss difference %.3f%%\n", n, worst * 100; exit bad }'
acc() { grep -o '"after": *{[^}]*}' "$1/eval/eval.json" | grep -o '"acc": *[0-9.]*' | grep -o '[0-9.]*$'; }
a=$(acc "$tmp/cpu") b=$(acc "$tmp/cuda")
echo "gpu_tiny: accuracy after training: cpu $a, cuda $b"
[ "$a" = "$b" ] || { echo "FAIL: accuracies differ"; exit 1; }
