#!/usr/bin/env bash
# Data parallelism on GPUs: one rank through NCCL (WORLD_SIZE=1 as torchrun sets
# it, and --gpus 1) gives the losses and the adapter of the plain run; with 2 or
# more GPUs, --gpus 2 with half the accumulation (the same global batch) follows
# the one-GPU run's losses. Skips (exit 0 with a line saying so) where there is no
# GPU, or no NCCL library.
# usage: gpu_ranks.sh DSFT SHARED_DIR
DSFT=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/cli/lib/checks.sh
ngpu=$("$DSFT" --version | sed -n 's/^cuda devices: //p')
if [ "${ngpu:-0}" -lt 1 ]; then echo "gpu_ranks: no CUDA device: skipped"; exit 0; fi
if ! ldconfig -p | grep -q libnccl.so.2 && [ -z "${DSFT_NCCL_LIBRARY:-}" ] &&
   ! find ${LD_LIBRARY_PATH//:/ } -maxdepth 1 -name 'libnccl.so.2' 2>/dev/null | grep -q .; then
  echo "gpu_ranks: no libnccl.so.2 on this machine: skipped"; exit 0
fi
if [ -n "${DSFT_KEEP:-}" ]; then T0=$T; trap 'rm -rf "$T0"' EXIT; T=$DSFT_KEEP; fi

common=(train recipes/tiny.yaml device=cuda eval.datasets=[] save.merge=false train.logging_steps=1
        train.max_steps=40 adapter.lora_dropout=0.1 save.every_steps=20)
losses() { grep -o '"step":[0-9]*,"epoch":[^,]*,"loss":[^,]*' "$1/metrics.jsonl" | sed 's/"epoch":[^,]*,//'; }
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Float atomics in the CUDA backward make two plain runs differ a little: their
# difference is the noise floor the NCCL runs are held to.
gap() {   # largest relative loss difference, largest adapter difference / largest adapter value
    python3 - "$1" "$2" <<'PY'
import json, subprocess, sys
def losses(d):
    rows = [json.loads(l) for l in open(d + "/metrics.jsonl")]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r and "eval" not in r]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
if [s for s, _ in a] != [s for s, _ in b] or len(a) != 40:
    sys.exit("steps differ")
worst = max(abs(x - y) / abs(x) for (_, x), (_, y) in zip(a, b))
out = subprocess.run(["python3", "tests/cli/lib/adapter_diff.py", sys.argv[1] + "/adapter/adapter_model.safetensors",
                      sys.argv[2] + "/adapter/adapter_model.safetensors"], capture_output=True, text=True, check=True)
d, m = float(out.stdout.split()[1]), float(out.stdout.split()[3])
print("%.3g %.3g" % (worst, d / m))
PY
}
expect 0 "plain run on one GPU" -- "${common[@]}" train.gradient_accumulation_steps=2 output_dir="$T/plain"
expect 0 "the plain run again" -- "${common[@]}" train.gradient_accumulation_steps=2 output_dir="$T/plain2"
floor=$(gap "$T/plain" "$T/plain2")
echo "plain vs plain: largest loss difference, adapter difference: $floor"
env WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$(port) \
    "$DSFT" "${common[@]}" train.gradient_accumulation_steps=2 output_dir="$T/nccl" >"$T/out" 2>"$T/err"
rc=$?
[ $rc -eq 0 ] && ok "WORLD_SIZE=1 through NCCL (exit 0)" || fail "WORLD_SIZE=1: exit $rc: $(tail -3 "$T/err")"
has "$T/err" "ranks: 1 (NCCL)" "the run said it went through NCCL"
expect 0 "--gpus 1" -- "${common[@]}" train.gradient_accumulation_steps=2 output_dir="$T/gpus1" --gpus 1
has "$T/err" "ranks: 1 (NCCL)" "--gpus 1 went through NCCL"
for run in nccl gpus1; do
    g=$(gap "$T/plain" "$T/$run")
    echo "$run vs plain: largest loss difference, adapter difference: $g"
    # one rank: NCCL's sum is a copy, so only the runs' own noise may show (10 x the floor, or 1e-6 if none)
    awk -v g="$g" -v f="$floor" 'BEGIN { split(g, a, " "); split(f, b, " ");
        exit !(a[1] <= 10 * b[1] + 1e-6 && a[2] <= 10 * b[2] + 1e-6) }' && ok "$run: the plain run's results" ||
        fail "$run: differs from the plain run by $g (noise floor $floor)"
done

if [ "$ngpu" -ge 2 ]; then
    expect 0 "--gpus 2, half the accumulation" -- "${common[@]}" train.gradient_accumulation_steps=1 output_dir="$T/two" \
        --gpus 2
    # bf16 activations: the ranks' partial sums round differently; the same 2% as gpu_tiny's cpu/cuda check
    paste <(losses "$T/plain" | sed 's/"step"://; s/,"loss":/ /') <(losses "$T/two" | sed 's/"step"://; s/,"loss":/ /') |
        awk '{ d = ($4 - $2) / $2; if (d < 0) d = -d; if (d > w) w = d; if ($1 != $3 || d > 0.02) bad = 1; n++ }
             END { printf "2 GPUs vs 1: %d steps, largest loss difference %.3f%%\n", n, w * 100; exit bad || n != 40 }' &&
        ok "2 GPUs follow the one-GPU losses" || fail "2 GPUs: losses differ"
    d=$(python3 tests/cli/lib/adapter_diff.py "$T/plain/adapter/adapter_model.safetensors" \
        "$T/two/adapter/adapter_model.safetensors")
    echo "2 GPUs vs 1: $d"
fi
finish gpu_ranks
