#!/usr/bin/env bash
# Each command's normal use and its documented exit codes for bad input.
# usage: commands.sh DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "$1")
SHARED=$(realpath "$2")
FIX="$SHARED/fixtures"
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
expect() {   # expect CODE DESCRIPTION -- command...
  local want=$1 what=$2
  shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, expected $want"; sed 's/^/  | /' "$tmp/err" | head -5
    failures=$((failures + 1))
  fi
}
expect_msg() { grep -q -- "$1" "$tmp/err" || { echo "FAIL: message lacks '$1':"; sed 's/^/  | /' "$tmp/err" | head -3; failures=$((failures + 1)); }; }

expect 0 "--help" -- "$DSFT" --help
grep -q "train.learning_rate" "$tmp/out" || { echo "FAIL: --help lists no recipe keys"; failures=$((failures + 1)); }
expect 0 "--version" -- "$DSFT" --version
expect 0 "train --help" -- "$DSFT" train --help
expect 64 "no arguments" -- "$DSFT"
expect 64 "unknown command" -- "$DSFT" frobnicate
expect 64 "dump without --out" -- "$DSFT" dump --model "$FIX/tiny-llama" --input x
expect 64 "unexpected argument" -- "$DSFT" export --adapter a --out b --bogus
expect 66 "missing recipe" -- "$DSFT" "$tmp/none.yaml"

# inspect
expect 0 "inspect model" -- "$DSFT" inspect "$FIX/tiny-llama"
expect 0 "inspect 4-bit model" -- "$DSFT" inspect "$FIX/tiny-llama-bnb-4bit"
grep -q "bytes per parameter" "$tmp/out" || { echo "FAIL: no bytes per parameter"; failures=$((failures + 1)); }
expect 0 "inspect adapter" -- "$DSFT" inspect "$FIX/tiny-llama/adapter"
expect 0 "inspect file" -- "$DSFT" inspect "$FIX/nf4-bitsandbytes.safetensors"
expect 66 "inspect missing" -- "$DSFT" inspect "$tmp/nothing"
head -c 100 "$FIX/tiny-llama/model.safetensors" > "$tmp/trunc.safetensors"
expect 65 "inspect truncated file" -- "$DSFT" inspect "$tmp/trunc.safetensors"
expect_msg "trunc.safetensors"
printf '\x00\x00\x10\x00\x00\x00\x00\x00{}' > "$tmp/long.safetensors"
expect 65 "header length past the end" -- "$DSFT" inspect "$tmp/long.safetensors"
expect_msg "past the end"
mkdir -p "$tmp/badcfg" && cp "$FIX/tiny-llama/model.safetensors" "$tmp/badcfg/" && echo '{"architectures": ["Qwen2ForCausalLM"]' > "$tmp/badcfg/config.json"
expect 65 "malformed config.json" -- "$DSFT" inspect "$tmp/badcfg"
expect_msg "config.json"
sed 's/"rope_type": "default"/"rope_type": "yarn"/' "$FIX/tiny-llama/config.json" > "$tmp/badcfg/config.json"
expect 65 "unsupported rope type" -- "$DSFT" inspect "$tmp/badcfg"
expect_msg "yarn"

# export / import
expect 0 "export" -- "$DSFT" export --adapter "$FIX/tiny-llama/adapter" --out "$tmp/a.dsft"
expect 0 "import" -- "$DSFT" import --in "$tmp/a.dsft" --out "$tmp/imported"
cmp -s "$tmp/imported/adapter_model.safetensors" "$FIX/tiny-llama/adapter/adapter_model.safetensors" ||
  { echo "FAIL: import does not give back the adapter"; failures=$((failures + 1)); }
size=$(stat -c %s "$tmp/a.dsft")
cp "$tmp/a.dsft" "$tmp/bad.dsft"
printf '\x55' | dd of="$tmp/bad.dsft" bs=1 seek=$((size / 2)) conv=notrunc status=none
expect 65 "import of a corrupted bundle" -- "$DSFT" import --in "$tmp/bad.dsft" --out "$tmp/bad-import"
[ ! -e "$tmp/bad-import" ] || { echo "FAIL: a corrupted import left a folder"; failures=$((failures + 1)); }

# merge
expect 0 "merge" -- "$DSFT" merge --model "$FIX/tiny-llama" --adapter "$FIX/tiny-llama/adapter" --out "$tmp/merged" --source original
expect 0 "inspect merged" -- "$DSFT" inspect "$tmp/merged"
expect 64 "merge original of a 4-bit checkpoint" -- "$DSFT" merge --model "$FIX/tiny-llama-bnb-4bit" --adapter "$FIX/tiny-llama/adapter" --out "$tmp/m2" --source original
expect 65 "merge an adapter that does not fit" -- "$DSFT" merge --model models/tiny --adapter "$FIX/tiny-llama/adapter" --out "$tmp/m3"
expect_msg "does not fit"
expect 64 "merge with a bad source" -- "$DSFT" merge --model models/tiny --adapter a --out "$tmp/m4" --source best
[ ! -e "$tmp/m2" ] && [ ! -e "$tmp/m3" ] || { echo "FAIL: a failed merge left a folder"; failures=$((failures + 1)); }

# generate, eval, dump
expect 0 "generate" -- "$DSFT" generate --model models/tiny --prompt "Question: Which organism causes" --max-new-tokens 8 --device cpu
grep -q "^Question: Which organism causes" "$tmp/out" || { echo "FAIL: generate does not continue the prompt"; failures=$((failures + 1)); }
expect 0 "generate top-p" -- "$DSFT" generate --model "$FIX/tiny-llama" --adapter "$FIX/tiny-llama/adapter" --prompt "Hello" --max-new-tokens 5 --temperature 0.8 --top-p 0.9 --seed 3 --device cpu
expect 0 "eval files" -- "$DSFT" eval --model models/tiny --data data/tiny/eval.jsonl:mcq --mcq-format cloze --device cpu
grep -q '"acc"' "$tmp/out" || { echo "FAIL: eval prints no accuracy"; failures=$((failures + 1)); }
expect 66 "eval of a missing data file" -- "$DSFT" eval --model models/tiny --data "$tmp/none.jsonl"
expect 0 "dump" -- "$DSFT" dump --model "$FIX/tiny-llama" --adapter "$FIX/tiny-llama/adapter" --input "$FIX/tiny-llama/reference.safetensors" --out "$tmp/dump.safetensors" --device cpu
expect 0 "dump 4-bit" -- "$DSFT" dump --model "$FIX/tiny-llama-bnb-4bit" --input "$FIX/tiny-llama-bnb-4bit/reference.safetensors" --out "$tmp/dump4.safetensors" --device cpu
expect 64 "unknown device" -- "$DSFT" dump --model "$FIX/tiny-llama" --input "$FIX/tiny-llama/reference.safetensors" --out "$tmp/d.st" --device tpu

[ "$failures" -eq 0 ] || { echo "$failures failures"; exit 1; }
echo "commands: all exit codes as documented"
