#!/usr/bin/env bash
# `ds-ft bench train` on the CPU with the tiny shape: tokens/s and the memory
# plan (what lives where: the engine's arenas, the host's peak resident set),
# in the log line and the RESULT record, consistent with what was allocated;
# without checkpointing the activations take more than with it; with the layers'
# inputs offloaded to host memory, less, and the host memory is in the record
# (more of it with the attention output kept too); the projections kept as
# well take more of the device's activations and none of the host's;
# DPO with --precompute-ref runs (and is refused without DPO); --profile (time by
# op) is refused on the CPU by name.
# usage: bench_train.sh DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "$1")
source "$(dirname "$0")/lib/checks.sh"
cd "$(dirname "$0")/../.."

run="bench train --shape tiny --device cpu --seq 64 --batch 2 --steps 1 --warmup 0"
# shellcheck disable=SC2086
expect 0 "bench train, checkpointing on" -- $run --checkpointing on
cp "$T/out" "$T/on"
has "$T/on" "memory plan on the cpu: weights" "the memory plan line"
has "$T/on" "host: peak resident" "the host's memory in it"
# shellcheck disable=SC2086
expect 0 "bench train, checkpointing off" -- $run --checkpointing off
cp "$T/out" "$T/off"
# shellcheck disable=SC2086
expect 0 "bench train, offload on" -- $run --checkpointing on --offload on
cp "$T/out" "$T/offload"
has "$T/offload" "of which the offloaded activations" "the offloaded inputs in the host's memory"
# shellcheck disable=SC2086
expect 0 "bench train, offload on, the attention output kept" -- $run --checkpointing on --offload on --keep-attention on
cp "$T/out" "$T/keep"
has "$T/keep" "each layer's attention output offloaded too" "the plan says the attention output is offloaded"
# shellcheck disable=SC2086
expect 0 "bench train, offload on, the attention output and projections kept" -- $run --checkpointing on \
    --offload on --keep-attention on --keep-projections on
cp "$T/out" "$T/proj"
has "$T/proj" "q, k, v and the residual after attention kept in 2 layers" "the run says in how many layers"
# shellcheck disable=SC2086
expect 64 "the projections kept without the attention output" -- $run --keep-projections on
has "$T/err" "goes with --keep-attention on" "the refusal says why"
# shellcheck disable=SC2086
expect 78 "the attention output kept without checkpointing" -- $run --checkpointing off --keep-attention on
has "$T/err" "needs gradient checkpointing" "the refusal says why"
# shellcheck disable=SC2086
expect 78 "offload without checkpointing" -- $run --checkpointing off --offload on
has "$T/err" "needs gradient checkpointing" "the refusal says why"
# shellcheck disable=SC2086
expect 0 "DPO with the reference computed once" -- $run --loss dpo --precompute-ref
has "$T/out" "reference log-probs computed once" "the run says so"
has "$T/out" "micro-batch  2 pairs" "and measures the pairs"
# shellcheck disable=SC2086
expect 64 "--precompute-ref without DPO" -- $run --precompute-ref
has "$T/err" "goes with --loss dpo" "the refusal says why"
# shellcheck disable=SC2086
expect 64 "time by op on the CPU" -- $run --profile
has "$T/err" "--profile times ops on a CUDA device" "the refusal says why"
python3 - "$T/on" "$T/off" "$T/offload" "$T/keep" "$T/proj" > "$T/plan" <<'PY'
import json, sys
def result(path):
    return json.loads(next(l for l in open(path) if l.startswith("RESULT "))[len("RESULT "):])
on, off, offload, keep, proj = (result(p) for p in sys.argv[1:6])
arenas = sum(on[k] for k in ("weights_bytes", "adapter_bytes", "activations_bytes", "workspace_bytes"))
print("arenas", arenas, "allocated", on["peak_alloc_bytes"])
print("positive", all(on[k] > 0 for k in ("weights_bytes", "adapter_bytes", "activations_bytes", "workspace_bytes",
                                            "host_peak_bytes", "tokens_per_s")))
print("within", arenas <= on["peak_alloc_bytes"])
print("more without checkpointing", off["activations_bytes"] > on["activations_bytes"])
print("less offloaded", offload["activations_bytes"] < on["activations_bytes"] and offload["offload"]
      and not on["offload"] and offload["host_offload_bytes"] > 0 and on["host_offload_bytes"] == 0)
print("kept in the host's memory", keep["keep_attention"] and not offload["keep_attention"]
      and keep["host_offload_bytes"] > offload["host_offload_bytes"])
print("projections on the device", proj["keep_projections"] == 2 and keep["keep_projections"] == 0
      and proj["activations_bytes"] > keep["activations_bytes"]
      and proj["host_offload_bytes"] == keep["host_offload_bytes"])
PY
has "$T/plan" "positive True" "every arena, the host's peak and tokens/s are reported"
has "$T/plan" "within True" "the arenas are within what was allocated"
has "$T/plan" "more without checkpointing True" "without checkpointing the activations take more"
has "$T/plan" "less offloaded True" "offloaded, the device's activations take less and the host's memory is counted"
has "$T/plan" "kept in the host's memory True" "the kept attention output is counted in the host's memory"
has "$T/plan" "projections on the device True" "the kept projections are counted on the device, not the host"
finish bench_train
