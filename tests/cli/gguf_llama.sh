#!/usr/bin/env bash
# tests/cli/gguf_llama.sh - `ds-ft export --format gguf|gguf-lora` and `ds-ft inspect FILE.gguf`:
# the command line (exit codes 64, 66, 73, --force, nothing left behind), then the files in a
# real client: llama.cpp as node-llama-cpp 3.21.1 ships it, installed from the npm registry
# once into build/node-llama-cpp (lib/gguf_llama.mjs lists what it checks). Where npm cannot
# reach the registry the llama.cpp half is skipped with a line saying so.
# usage: bash gguf_llama.sh PATH_TO_DSFT SHARED_DIR
set -uo pipefail

DSFT=$(realpath "${1:?usage: gguf_llama.sh PATH_TO_DSFT SHARED_DIR}")
source "$(dirname "$0")/lib/checks.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(dirname "$DSFT")
cd "$ROOT"

# 1. The command line.
expect 0 "export --format gguf --type f16" -- export --format gguf --model models/tiny --out "$T/tiny-f16.gguf" --type f16
has "$T/out" "llama, f16, 21 tensors" "summary line"
has "$T/out" "pre-tokenizer deepseek-v3" "pre-tokenizer named"
expect 73 "an existing --out" -- export --format gguf --model models/tiny --out "$T/tiny-f16.gguf" --type f16
has "$T/err" "pass --force" "the message says how to replace it"
expect 0 "--force replaces it" -- export --format gguf --model models/tiny --out "$T/tiny-f16.gguf" --type f16 --force
expect 64 "an unknown --type" -- export --format gguf --model models/tiny --out "$T/x.gguf" --type q3_k_s
has "$T/err" "q4_k_m" "the message lists the types"
expect 64 "an unknown --format" -- export --format onnx --model models/tiny --out "$T/x.gguf"
expect 64 "gguf-lora without --adapter" -- export --format gguf-lora --model models/tiny --out "$T/x.gguf"
expect 64 "--type with gguf-lora" -- export --format gguf-lora --model models/tiny --adapter "$T" --out "$T/x.gguf" --type f16
expect 66 "a missing model folder" -- export --format gguf --model "$T/none" --out "$T/x.gguf"
expect 64 "--out a folder" -- export --format gguf --model models/tiny --out "$T"
[ -e "$T/x.gguf" ] && fail "a refused export left $T/x.gguf"
expect 0 "inspect FILE.gguf" -- inspect "$T/tiny-f16.gguf"
has "$T/out" "tokenizer.ggml.pre" "inspect lists the keys"
has "$T/out" "blk.1.attn_q.weight" "inspect lists the tensors"
head -c 4000 "$T/tiny-f16.gguf" > "$T/cut.gguf"
expect 65 "inspect a truncated GGUF" -- inspect "$T/cut.gguf"
has "$T/err" "cut.gguf" "the message names the file"

# 2. The files llama.cpp loads: models/tiny in every type, a larger llama and qwen2/qwen3 models,
# a bitsandbytes 4-bit folder, an adapter at run time and merged.
# (2 layers with rows of 256: q4_K and q6_K themselves; models/tiny's rows of 128 take the fallbacks)
for m in llama qwen2 qwen3; do
    "$BIN/make_tiny_family" $m "$T/$m" models/tiny 256 512 2 4 2 >/dev/null || fail "make_tiny_family $m"
done
"$BIN/make_tiny_family" qwen2 "$T/qwen2z" models/tiny 256 512 2 4 2 zero-bias >/dev/null || fail "make_tiny_family qwen2 zero-bias"
"$BIN/make_tiny_family" adapter "$T/adapter" models/tiny >/dev/null || fail "make_tiny_family adapter"
expect 0 "quantize the tiny model (bitsandbytes 4-bit)" -- quantize --model models/tiny --out "$T/tiny4"
for type in bf16 q8_0 q4_0 q4_k_m; do
    expect 0 "tiny $type" -- export --format gguf --model models/tiny --out "$T/tiny-$type.gguf" --type "$type"
done
expect 0 "the default type is q4_k_m" -- export --format gguf --model models/tiny --out "$T/tiny-default.gguf"
has "$T/out" "q4_k_m" "q4_k_m by default"
for type in f16 bf16 q8_0 q4_0 q4_k_m; do
    expect 0 "llama $type" -- export --format gguf --model "$T/llama" --out "$T/llama-$type.gguf" --type "$type"
done
for m in qwen2 qwen3; do
    for type in f16 q8_0 q4_k_m; do
        expect 0 "$m $type" -- export --format gguf --model "$T/$m" --out "$T/$m-$type.gguf" --type "$type"
    done
done
expect 0 "qwen2 zero-bias f16" -- export --format gguf --model "$T/qwen2z" --out "$T/qwen2z-f16.gguf" --type f16
# DeepSeek-V2 (models/tiny-moe): llama.cpp's deepseek2, and an adapter of a short run merged into it
for type in f16 q8_0 q4_k_m; do
    expect 0 "tiny-moe $type" -- export --format gguf --model models/tiny-moe --out "$T/moe-$type.gguf" --type "$type"
done
has "$T/out" "deepseek2, q4_k_m" "tiny-moe is written as deepseek2"
expect 0 "inspect the deepseek2 file" -- inspect "$T/moe-q4_k_m.gguf"
has "$T/out" "blk.1.ffn_down_exps.weight" "the routed experts are stacked"
has "$T/out" "blk.0.attn_k_b.weight" "kv_b_proj is split into attn_k_b"
has "$T/out" "deepseek2.expert_count" "the expert keys are written"
# the transformers-made fixtures: V2 with YaRN (mscale = mscale_all_dim), V3's sigmoid router with its bias,
# groups and renormalised weights, and YaRN with mscale != mscale_all_dim
for f in tiny-deepseek-v2 tiny-deepseek-v3; do
    expect 0 "$f f16" -- export --format gguf --model tests/data/fixtures/$f --out "$T/$f-f16.gguf" --type f16
done
expect 0 "inspect the V3 file" -- inspect "$T/tiny-deepseek-v3-f16.gguf"
has "$T/out" "blk.1.exp_probs_b.bias" "V3's e_score_correction_bias is exp_probs_b"
has "$T/out" "deepseek2.rope.scaling.attn_factor" "YaRN's cos/sin factor is written where mscale differs"
expect 0 "a short tiny-moe run for an adapter" -- recipes/tiny-moe.yaml output_dir="$T/moe-run" train.max_steps=4 \
    eval.datasets=[] eval.before_training=false save.every_steps=0
expect 0 "the tiny-moe adapter merged (original weights)" -- export --format gguf --model models/tiny-moe \
    --adapter "$T/moe-run/adapter" --source original --type f16 --out "$T/moe-merged-f16.gguf"
expect 65 "a LoRA GGUF of a DeepSeek adapter" -- export --format gguf-lora --model models/tiny-moe \
    --adapter "$T/moe-run/adapter" --out "$T/x.gguf"
has "$T/err" "merge the adapter into the model's GGUF instead" "the refusal says what to do instead"
# the weights each llama file holds, dequantized into model folders for ds-ft's engine
for m in tiny llama; do
    src=$([ $m = tiny ] && echo models/tiny || echo "$T/llama")
    for type in bf16 q8_0 q4_0 q4_k_m; do
        "$BIN/make_tiny_family" dequantize "$T/$m-$type.gguf" "$T/$m-$type-dq" "$src" || fail "dequantize $m $type"
    done
done
expect 0 "a 4-bit checkpoint as f16" -- export --format gguf --model "$T/tiny4" --out "$T/tiny4-f16.gguf" --type f16
expect 64 "--source original with a 4-bit checkpoint" -- export --format gguf --model "$T/tiny4" --adapter "$T/adapter" \
    --source original --out "$T/x.gguf"
expect 0 "the adapter as a LoRA GGUF" -- export --format gguf-lora --adapter "$T/adapter" --model models/tiny --out "$T/lora.gguf"
expect 0 "the adapter merged (original weights)" -- export --format gguf --model models/tiny --adapter "$T/adapter" \
    --source original --type f16 --out "$T/merged-f16.gguf"

CACHE="$BIN/node-llama-cpp"
if [ ! -f "$CACHE/node_modules/node-llama-cpp/package.json" ]; then
    if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
        echo "gguf_llama: node/npm are not installed: the llama.cpp checks are skipped"
        finish gguf_llama
        exit 0
    fi
    if ! timeout 60 npm ping >/dev/null 2>&1; then
        echo "gguf_llama: the npm registry cannot be reached: the llama.cpp checks are skipped"
        finish gguf_llama
        exit 0
    fi
    # On Linux x86-64 only the CPU build is fetched (about 80 MB instead of 730 with the CUDA and Vulkan ones).
    only=()
    [ "$(uname -sm)" = "Linux x86_64" ] && only=(@node-llama-cpp/linux-x64@3.21.1 --omit=optional)
    mkdir -p "$CACHE"
    (cd "$CACHE" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true timeout 900 npm i -E node-llama-cpp@3.21.1 "${only[@]}" \
        --no-audit --no-fund --loglevel=error >"$T/npm.log" 2>&1) || { cat "$T/npm.log"; fail "npm i -E node-llama-cpp@3.21.1"; }
fi
node "$ROOT/tests/cli/lib/gguf_llama.mjs" "$DSFT" "$T" "$CACHE/node_modules/node-llama-cpp/dist/index.js" ||
    fail "llama.cpp checks (above)"
finish gguf_llama
