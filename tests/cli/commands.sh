#!/usr/bin/env bash
# Each command's normal use and its documented exit codes for bad input.
# usage: commands.sh DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "$1")
source "$(dirname "$0")/lib/checks.sh"
SHARED=$(realpath "$2")
FIX="$SHARED/fixtures"
cd "$(dirname "$0")/../.."

expect 0 "--help" -- --help
has "$T/out" "train.learning_rate" "--help lists the recipe keys"
expect 0 "--version" -- --version
expect 0 "train --help" -- train --help
expect 64 "no arguments" --
expect 64 "unknown command" -- frobnicate
expect 64 "dump without --out" -- dump --model "$FIX/tiny-llama" --input x
expect 64 "unexpected argument" -- export --adapter a --out b --bogus
expect 66 "missing recipe" -- "$T/none.yaml"

# inspect
expect 0 "inspect model" -- inspect "$FIX/tiny-llama"
expect 0 "inspect 4-bit model" -- inspect "$FIX/tiny-llama-bnb-4bit"
has "$T/out" "bytes per parameter" "inspect reports bytes per parameter"
expect 0 "inspect adapter" -- inspect "$FIX/tiny-llama/adapter"
expect 0 "inspect file" -- inspect "$FIX/nf4-bitsandbytes.safetensors"
expect 66 "inspect missing" -- inspect "$T/nothing"
head -c 100 "$FIX/tiny-llama/model.safetensors" > "$T/trunc.safetensors"
expect 65 "inspect truncated file" -- inspect "$T/trunc.safetensors"
has "$T/err" "trunc.safetensors" "the message names trunc.safetensors"
printf '\x00\x00\x10\x00\x00\x00\x00\x00{}' > "$T/long.safetensors"
expect 65 "header length past the end" -- inspect "$T/long.safetensors"
has "$T/err" "past the end" "the message names past the end"
mkdir -p "$T/badcfg" && cp "$FIX/tiny-llama/model.safetensors" "$T/badcfg/" && echo '{"architectures": ["Qwen2ForCausalLM"]' > "$T/badcfg/config.json"
expect 65 "malformed config.json" -- inspect "$T/badcfg"
has "$T/err" "config.json" "the message names config.json"
sed 's/"rope_type": "default"/"rope_type": "yarn"/' "$FIX/tiny-llama/config.json" > "$T/badcfg/config.json"
expect 65 "unsupported rope type" -- inspect "$T/badcfg"
has "$T/err" "yarn" "the message names yarn"

# export / import
expect 0 "export" -- export --adapter "$FIX/tiny-llama/adapter" --out "$T/a.dsft"
expect 0 "import" -- import --in "$T/a.dsft" --out "$T/imported"
if cmp -s "$T/imported/adapter_model.safetensors" "$FIX/tiny-llama/adapter/adapter_model.safetensors"; then
  ok "import gives back the adapter"; else fail "import does not give back the adapter"; fi
size=$(stat -c %s "$T/a.dsft")
cp "$T/a.dsft" "$T/bad.dsft"
printf '\x55' | dd of="$T/bad.dsft" bs=1 seek=$((size / 2)) conv=notrunc status=none
expect 65 "import of a corrupted bundle" -- import --in "$T/bad.dsft" --out "$T/bad-import"
nothing_at "$T/bad-import"

# merge
expect 0 "merge" -- merge --model "$FIX/tiny-llama" --adapter "$FIX/tiny-llama/adapter" --out "$T/merged" --source original
expect 0 "inspect merged" -- inspect "$T/merged"
expect 64 "merge original of a 4-bit checkpoint" -- merge --model "$FIX/tiny-llama-bnb-4bit" --adapter "$FIX/tiny-llama/adapter" --out "$T/m2" --source original
expect 65 "merge an adapter that does not fit" -- merge --model models/tiny --adapter "$FIX/tiny-llama/adapter" --out "$T/m3"
has "$T/err" "does not fit" "the message names does not fit"
expect 64 "merge with a bad source" -- merge --model models/tiny --adapter a --out "$T/m4" --source best
nothing_at "$T/m2"
nothing_at "$T/m3"

# generate, eval, dump
expect 0 "generate" -- generate --model models/tiny --prompt "Question: Which organism causes" --max-new-tokens 8 --device cpu
if grep -q "^Question: Which organism causes" "$T/out"; then ok "generate continues the prompt"; else fail "generate does not continue the prompt"; fi
expect 0 "generate top-p" -- generate --model "$FIX/tiny-llama" --adapter "$FIX/tiny-llama/adapter" --prompt "Hello" --max-new-tokens 5 --temperature 0.8 --top-p 0.9 --seed 3 --device cpu
expect 0 "eval files" -- eval --model models/tiny --data data/tiny/eval.jsonl:mcq --mcq-format cloze --device cpu
has "$T/out" '"acc"' "eval prints the accuracy"
expect 66 "eval of a missing data file" -- eval --model models/tiny --data "$T/none.jsonl"
expect 0 "dump" -- dump --model "$FIX/tiny-llama" --adapter "$FIX/tiny-llama/adapter" --input "$FIX/tiny-llama/reference.safetensors" --out "$T/dump.safetensors" --device cpu
expect 0 "dump 4-bit" -- dump --model "$FIX/tiny-llama-bnb-4bit" --input "$FIX/tiny-llama-bnb-4bit/reference.safetensors" --out "$T/dump4.safetensors" --device cpu
expect 64 "unknown device" -- dump --model "$FIX/tiny-llama" --input "$FIX/tiny-llama/reference.safetensors" --out "$T/d.st" --device tpu

finish commands
