#!/usr/bin/env bash
# tests/cli/families_train.sh - recipes/tiny.yaml on a tiny Qwen2 model (q/k/v biases, as R1-Distill-Qwen)
# and a tiny Qwen3 model (q/k norms, explicit head_dim), made with random weights by make_tiny_family over
# models/tiny's tokenizer: each trains on the CPU and its accuracy rises from chance; the merged folder keeps
# the family (its config, biases and norms) and scores as the adapter did. A Qwen2 with tied embeddings (as
# R1-Distill-Qwen-1.5B) trains and merges without growing an lm_head. (Its accuracy is not asked for: the
# random tied embedding makes logits too large for the tiny adapter to move far in 20 epochs; the gradients
# of tied models are checked against PEFT in test_engine_families.)
# usage: bash families_train.sh PATH_TO_DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "${1:?usage: families_train.sh PATH_TO_DSFT SHARED_DIR}")
source "$(dirname "$0")/lib/checks.sh"
BIN=$(dirname "$DSFT")
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1

acc() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]['acc'])" "$@"; }

for fam in qwen2 qwen3; do
    "$BIN/make_tiny_family" $fam "$T/$fam" models/tiny 128 256 2 4 2 >/dev/null || fail "make_tiny_family $fam"
    run=$T/run-$fam
    expect 0 "tiny.yaml on a tiny $fam" -- recipes/tiny.yaml base_model="$T/$fam" output_dir="$run" device=cpu \
        save.every_steps=0
    has "$T/err" "model: $T/$fam, 2 layers" "the run names the model"
    before=$(acc "$run/eval/eval.json" before) after=$(acc "$run/eval/eval.json" after)
    python3 -c "import sys; sys.exit(not (float(sys.argv[1]) <= 0.4 and float(sys.argv[2]) >= 0.8))" "$before" "$after" \
        && ok "$fam: accuracy $before -> $after" || fail "$fam: accuracy $before -> $after (want <= 0.4 -> >= 0.8)"
    expect 0 "inspect the merged $fam folder" -- inspect "$run/merged"
    arch=$([ $fam = qwen2 ] && echo Qwen2ForCausalLM || echo Qwen3ForCausalLM)
    has "$T/out" "$arch" "the merged folder is still $arch"
    if [ $fam = qwen2 ]; then
        has "$T/out" "model.layers.1.self_attn.v_proj.bias" "the merged qwen2 keeps its biases"
    else
        has "$T/out" "model.layers.1.self_attn.k_norm.weight" "the merged qwen3 keeps its k_norm"
    fi
    expect 0 "eval the merged $fam folder" -- eval --model "$run/merged" --data data/tiny/eval.jsonl:mcq \
        --mcq-format cloze --chat-template plain --device cpu
    merged=$(python3 -c "import json,sys; print(json.load(sys.stdin)[0]['base']['acc'])" < "$T/out")
    python3 -c "import sys; sys.exit(abs(float(sys.argv[1]) - float(sys.argv[2])) > 0.05)" "$merged" "$after" \
        && ok "$fam: the merged model scores $merged (the adapter $after)" || fail "$fam: merged $merged vs adapter $after"
done

# Tied embeddings: a short run, merged without an lm_head.
"$BIN/make_tiny_family" qwen2 "$T/tied" models/tiny 128 256 2 4 2 tied >/dev/null || fail "make_tiny_family qwen2 tied"
expect 0 "a tiny qwen2 with tied embeddings" -- recipes/tiny.yaml base_model="$T/tied" output_dir="$T/run-tied" \
    device=cpu train.max_steps=8 save.every_steps=0 eval.before_training=false
expect 0 "inspect its merged folder" -- inspect "$T/run-tied/merged"
has "$T/out" "tied embeddings       yes" "the merged folder keeps its tied embeddings"
grep -q "lm_head.weight" "$T/out" && fail "the merged qwen2 grew an lm_head" || ok "no lm_head.weight in it"

finish families_train
