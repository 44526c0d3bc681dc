#!/usr/bin/env bash
# tests/cli/moe_tiny.sh - a mixture-of-experts model end to end on the CPU:
# tools/make_tiny_moe writes models/tiny-moe's DeepSeek-V2 (the committed
# folder must be what it writes), recipes/tiny-moe.yaml trains it briefly
# (QLoRA on attention, dense, shared and routed experts): the accuracy rises,
# every step's metrics row carries the expert load, the log says it, the
# adapter has a LoRA per routed expert, the merged folder (save.merge) keeps
# every tensor and scores as the adapter does, `ds-ft merge` writes the same;
# the moe keys are refused on a model without experts (the GPU's refusal of
# DeepSeek: tests/gpu/test_gpu_families.c), train.keep_attention: true on
# DeepSeek's layers or without checkpointing, train.keep_projections: true
# without it; train.keep_projections: true with it trains on the CPU.
# usage: bash moe_tiny.sh PATH_TO_DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "${1:?usage: moe_tiny.sh PATH_TO_DSFT SHARED_DIR}")
source "$(dirname "$0")/lib/checks.sh"
BIN=$(dirname "$DSFT")
cd "$(dirname "$0")/../.."

"$BIN/make_tiny_moe" "$T/tiny-moe" models/tiny >/dev/null || fail "make_tiny_moe"
cmp -s "$T/tiny-moe/model.safetensors" models/tiny-moe/model.safetensors && ok "models/tiny-moe is make_tiny_moe's" \
    || fail "models/tiny-moe/model.safetensors differs from make_tiny_moe's"
for f in config.json generation_config.json; do cmp -s "$T/tiny-moe/$f" "models/tiny-moe/$f" && ok "$f is make_tiny_moe's" \
    || fail "models/tiny-moe/$f differs"; done

expect 0 "train tiny-moe (6 epochs), merged at the end" -- recipes/tiny-moe.yaml output_dir="$T/run" \
    train.num_epochs=6 save.every_steps=0 train.logging_steps=5 save.merge=true
has "$T/run/train.log" "experts: 8 routed (top 2) + 1 shared in 1 MoE layers; balance loss alpha 0.001 (the model's)" \
    "the log names the experts and the model's balance-loss coefficient"
has "$T/run/train.log" "  experts: max load" "the log has each logged step's expert load"
rows=$(grep -c '"moe_tokens_per_expert":\[' "$T/run/metrics.jsonl")
steps=$(grep -c '"loss":' "$T/run/metrics.jsonl")
[ "$rows" -gt 0 ] && [ "$rows" -eq "$steps" ] && ok "every metrics row ($rows) has tokens per expert" \
    || fail "$rows of $steps metrics rows have moe_tokens_per_expert"
has "$T/run/metrics.jsonl" '"moe_dropped":0' "no capacity factor: nothing dropped"
acc() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]['acc'])" "$1" "$2"; }
before=$(acc "$T/run/eval/eval.json" before) after=$(acc "$T/run/eval/eval.json" after)
python3 -c "import sys; sys.exit(0 if float(sys.argv[2]) >= float(sys.argv[1]) + 0.15 else 1)" "$before" "$after" \
    && ok "accuracy $before -> $after" || fail "accuracy $before -> $after did not rise by 0.15"
python3 - "$T/run/adapter/adapter_model.safetensors" <<'PY' && ok "a LoRA per routed expert (PEFT keys)" || fail "expert adapters"
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    keys = json.loads(f.read(n))
want = [f"base_model.model.model.layers.1.mlp.experts.{e}.{p}.lora_{w}.weight"
        for e in range(8) for p in ("gate_proj", "up_proj", "down_proj") for w in "AB"]
want += ["base_model.model.model.layers.1.mlp.shared_experts.down_proj.lora_A.weight",
         "base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight",
         "base_model.model.model.layers.1.self_attn.kv_b_proj.lora_A.weight"]
sys.exit(0 if all(k in keys for k in want) else 1)
PY

# a capacity factor drops slots, and says so
expect 0 "train with capacity_factor 0.5" -- recipes/tiny-moe.yaml output_dir="$T/cap" train.max_steps=2 \
    save.every_steps=0 moe.capacity_factor=0.5 moe.aux_loss_alpha=0.01 eval.before_training=false
grep -q '"moe_dropped":[1-9]' "$T/cap/metrics.jsonl" && ok "capacity factor 0.5 drops slots" \
    || fail "no dropped slots with capacity factor 0.5: $(head -c 400 "$T/cap/metrics.jsonl")"
has "$T/cap/train.log" "balance loss alpha 0.01;" "moe.aux_loss_alpha overrides the model's"

# refusals
expect 78 "moe keys on a model without experts" -- recipes/tiny.yaml output_dir="$T/dense" moe.capacity_factor=1.0
has "$T/err" "moe.capacity_factor" "the message names the key"
expect 78 "a LoRA target the model lacks" -- recipes/tiny-moe.yaml output_dir="$T/kproj" \
    'adapter.lora_target_modules=[k_proj]'
has "$T/err" "k_proj" "the message names k_proj"
expect 78 "train.keep_attention: true on DeepSeek's layers" -- recipes/tiny-moe.yaml output_dir="$T/keep" \
    train.keep_attention=true
has "$T/err" "train.keep_attention" "the message names the key"
nothing_at "$T/keep"
expect 78 "train.keep_attention: true without checkpointing" -- recipes/tiny.yaml output_dir="$T/keep2" \
    train.keep_attention=true train.gradient_checkpointing=false
has "$T/err" "gradient_checkpointing" "the message names what it needs"
nothing_at "$T/keep2"
expect 78 "train.keep_projections: true without train.keep_attention: true" -- recipes/tiny.yaml \
    output_dir="$T/keep3" train.keep_projections=true
has "$T/err" "train.keep_attention: true" "the message names what it needs"
nothing_at "$T/keep3"
expect 0 "train.keep_projections: true with train.keep_attention: true" -- recipes/tiny.yaml output_dir="$T/keep4" \
    train.keep_attention=true train.keep_projections=true train.max_steps=2 eval.before_training=false save.merge=false

# the merged folder: every tensor of the checkpoint, still DeepSeek-V2, scoring as the adapter does
expect 0 "inspect the merged folder" -- inspect "$T/run/merged"
has "$T/out" "DeepseekV2ForCausalLM" "the merged folder is still DeepseekV2ForCausalLM"
python3 - models/tiny-moe/model.safetensors "$T/run/merged/model.safetensors" <<'PY' \
    && ok "the merged folder has the checkpoint's tensors, shapes and bf16" || fail "merged tensors"
import json, struct, sys
def header(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return {k: v for k, v in json.loads(f.read(n)).items() if k != "__metadata__"}
a, b = header(sys.argv[1]), header(sys.argv[2])
sys.exit(0 if a.keys() == b.keys() and all(a[k]["shape"] == b[k]["shape"] and b[k]["dtype"] == "BF16" for k in a)
         else 1)
PY
expect 0 "eval the merged folder" -- eval --model "$T/run/merged" --data data/tiny/eval.jsonl:mcq --mcq-format cloze \
    --chat-template plain --device cpu
merged=$(python3 -c "import json,sys; print(json.load(sys.stdin)[0]['base']['acc'])" < "$T/out")
python3 -c "import sys; sys.exit(abs(float(sys.argv[1]) - float(sys.argv[2])) > 0.05)" "$merged" "$after" \
    && ok "the merged model scores $merged (the adapter $after)" || fail "merged $merged vs adapter $after"
expect 0 "ds-ft merge of the adapter" -- merge --model models/tiny-moe --adapter "$T/run/adapter" --out "$T/merged"
cmp -s "$T/merged/model.safetensors" "$T/run/merged/model.safetensors" && ok "ds-ft merge writes what save.merge wrote" \
    || fail "ds-ft merge and save.merge differ"
finish moe_tiny
