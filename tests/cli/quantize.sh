#!/usr/bin/env bash
# tests/cli/quantize.sh - `ds-ft quantize`: the bitsandbytes checkpoint it
# writes for fixtures/tiny-llama is the one transformers + bitsandbytes wrote
# (fixtures/tiny-llama-bnb-4bit), and its failures have the documented exit
# codes and leave no output folder behind.
# usage: bash quantize.sh PATH_TO_DSFT SHARED_DIR
set -uo pipefail

DSFT=${1:?usage: quantize.sh PATH_TO_DSFT SHARED_DIR}
source "$(dirname "$0")/lib/checks.sh"
SHARED=${2:?usage: quantize.sh PATH_TO_DSFT SHARED_DIR}
SRC="$SHARED/fixtures/tiny-llama"
REF="$SHARED/fixtures/tiny-llama-bnb-4bit"

# 1. The checkpoint: byte for byte the reference (tensors, quant_state, config.json).
expect 0 "quantize tiny-llama" -- quantize --model "$SRC" --out "$T/q"
for f in model.safetensors config.json generation_config.json; do
    if cmp -s "$T/q/$f" "$REF/$f"; then ok "$f equals the bitsandbytes checkpoint's"; else fail "$f differs from $REF/$f"; fi
done
for f in tokenizer.json tokenizer_config.json; do
    if cmp -s "$T/q/$f" "$SRC/$f"; then ok "$f copied"; else fail "$f not copied"; fi
done
grep -q '"quant_method": "bitsandbytes"' "$T/q/config.json" || fail "config.json has no quantization_config"

# 2. Quantizing again over an existing folder is refused; with --force it replaces it.
echo stale >"$T/q/stale.txt"
expect 73 "quantize over an existing folder" -- quantize --model "$SRC" --out "$T/q"
has "$T/err" "exists; pass --force to replace" "the message says how to replace it"
[ -e "$T/q/stale.txt" ] || fail "a refused quantize removed the existing folder's files"
expect 0 "quantize --force over an existing folder" -- quantize --model "$SRC" --out "$T/q" --force
[ -e "$T/q/stale.txt" ] && fail "the old folder's files survived"
cmp -s "$T/q/model.safetensors" "$REF/model.safetensors" || fail "re-quantized model.safetensors differs"

# 3. Usage and missing input.
expect 64 "missing --out" -- quantize --model "$SRC"
expect 64 "unknown argument" -- quantize --model "$SRC" --out "$T/x" --bits 3
nothing_at "$T/x"
expect 66 "missing model folder" -- quantize --model "$T/no-such-model" --out "$T/x"
grep -q "no-such-model" "$T/err" || fail "message does not name the folder: $(cat "$T/err")"
nothing_at "$T/x"

# 4. Bad data fails with 65 and writes nothing: a truncated model.safetensors ...
mkdir -p "$T/broken"
cp "$SRC/config.json" "$T/broken/"
head -c 300000 "$SRC/model.safetensors" >"$T/broken/model.safetensors"
expect 65 "truncated model.safetensors" -- quantize --model "$T/broken" --out "$T/x"
grep -q "model.safetensors" "$T/err" || fail "message does not name the file: $(cat "$T/err")"
nothing_at "$T/x"
# ... a NaN in the last linear weight, found after most of the folder is built
# (model.layers.1.self_attn.v_proj.weight holds data bytes [430592, 434688)) ...
mkdir -p "$T/nan"
cp "$SRC"/*.json "$SRC/model.safetensors" "$T/nan/"
chmod u+w "$T/nan/model.safetensors"
hlen=$(od -An -t u8 -N8 "$T/nan/model.safetensors" | tr -d ' ')
printf '\xc0\x7f' | dd of="$T/nan/model.safetensors" bs=1 seek=$((8 + hlen + 430592 + 200)) conv=notrunc status=none
expect 65 "NaN in a weight" -- quantize --model "$T/nan" --out "$T/x"
grep -q "model.layers.1.self_attn.v_proj.weight" "$T/err" || fail "message does not name the tensor: $(cat "$T/err")"
nothing_at "$T/x"
# ... an already quantized model ...
expect 65 "already quantized" -- quantize --model "$REF" --out "$T/x"
grep -q "quantization_config" "$T/err" || fail "message does not name the key: $(cat "$T/err")"
nothing_at "$T/x"
# ... and a config.json that is not a Llama model.
mkdir -p "$T/notllama"
cp "$SRC/model.safetensors" "$T/notllama/"
sed 's/LlamaForCausalLM/GPT2LMHeadModel/' "$SRC/config.json" >"$T/notllama/config.json"
expect 65 "unsupported architecture" -- quantize --model "$T/notllama" --out "$T/x"
nothing_at "$T/x"

# 5. Writing over the model being read is refused and leaves it intact.
cp -r "$SRC" "$T/copy"
expect 64 "output folder = model folder" -- quantize --model "$T/copy" --out "$T/copy"
cmp -s "$T/copy/model.safetensors" "$SRC/model.safetensors" || fail "the model folder was changed"

finish quantize.sh
