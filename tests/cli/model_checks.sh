#!/usr/bin/env bash
# What the model loader and the data loader refuse, before anything runs: a
# tensor the architecture does not use, a NaN weight (16-bit and 4-bit loads),
# a sequence longer than the model's positions, an added token past the
# model's vocabulary (named with its data file and line).
# usage: model_checks.sh DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "$1")
source "$(dirname "$0")/lib/checks.sh"
FIX="$(realpath "$2")/fixtures"
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
tiny=(recipes/tiny.yaml device=cpu eval.datasets=[] save.merge=false train.max_steps=1)

# st_add IN OUT NAME: copy a safetensors file with one more F32 tensor NAME of shape [4].
st_add() {
    python3 - "$@" <<'EOF'
import json, struct, sys
src, dst, name = sys.argv[1:4]
raw = open(src, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
head = json.loads(raw[8:8 + n]); data = raw[8 + n:]
head[name] = {"dtype": "F32", "shape": [4], "data_offsets": [len(data), len(data) + 16]}
h = json.dumps(head).encode(); h += b' ' * ((8 - len(h) % 8) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(h)) + h + data + struct.pack('<4f', 1, 2, 3, 4))
EOF
}
# st_nan IN OUT NAME: the same file with the first value of tensor NAME (BF16 or F32) a NaN.
st_nan() {
    python3 - "$@" <<'EOF'
import json, struct, sys
src, dst, name = sys.argv[1:4]
raw = bytearray(open(src, 'rb').read())
n = struct.unpack('<Q', raw[:8])[0]
e = json.loads(raw[8:8 + n])[name]
at = 8 + n + e['data_offsets'][0]
raw[at:at + 4] = struct.pack('<f', float('nan')) if e['dtype'] == 'F32' else raw[at:at + 2] + b'\xc0\x7f'
open(dst, 'wb').write(raw)
EOF
}

# 1. A model (checkpoint) holding a tensor the architecture does not use is refused (65),
#    naming the first such tensor (finetune/model: the loader's tensor inventory).
extra=$T/extra
mkdir -p "$extra" && cp models/tiny/*.json "$extra"/
st_add models/tiny/model.safetensors "$extra/model.safetensors" model.layers.0.mlp.unused_proj.weight
expect 65 "a model with a tensor the architecture does not use" -- train "${tiny[@]}" base_model="$extra" output_dir="$T/r1"
has "$T/err" "model.layers.0.mlp.unused_proj.weight" "the message names the tensor"

# 2. A NaN in a base weight is refused when the model is loaded (65), naming the tensor
#    (finetune/model: a finite check of every weight read or quantized).
nan=$T/nan
mkdir -p "$nan" && cp models/tiny/*.json "$nan"/
st_nan models/tiny/model.safetensors "$nan/model.safetensors" model.layers.1.mlp.down_proj.weight
expect 65 "a model with a NaN weight, loaded for evaluation" -- eval --model "$nan" --data data/tiny/eval.jsonl:mcq --device cpu
has "$T/err" "model.layers.1.mlp.down_proj.weight" "the message names the tensor"
expect 65 "the same model, loaded in 4-bit" -- eval --model "$nan" --data data/tiny/eval.jsonl:mcq --4bit --device cpu
has "$T/err" "model.layers.1.mlp.down_proj.weight" "the message names the tensor"

# 3. A sequence longer than max_position_embeddings (512 for models/tiny) is refused, not run
#    (finetune/engine: engine_create with max_T past the model's positions).
expect 78 "data.sequence_len beyond max_position_embeddings" -- train "${tiny[@]}" data.sequence_len=600 output_dir="$T/r3"
has "$T/err" "max_position_embeddings" "the message names max_position_embeddings"
expect 64 "eval --seq beyond max_position_embeddings" -- eval --model models/tiny --data data/tiny/eval.jsonl:mcq --seq 600 --device cpu
has "$T/err" "max_position_embeddings" "the message names max_position_embeddings"

# 4. An added token whose id is past the model's vocabulary is reported with the data file and
#    line where it appears (the tokenizer/model check of ids against vocab_size).
oov=$T/oov
mkdir -p "$oov" && cp models/tiny/* "$oov"/
python3 - "$oov/tokenizer.json" <<'EOF'
import json, sys
p = sys.argv[1]; t = json.load(open(p))
vocab = max(t['model']['vocab'].values()) + 1
t['added_tokens'].append({"id": vocab + 100, "content": "<oov>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True})
json.dump(t, open(p, 'w'))
EOF
printf '{"prompt": "a", "completion": "b"}\n{"prompt": "c <oov>", "completion": "d"}\n' >"$T/oov.jsonl"
expect 65 "an added token past the vocabulary" -- train "${tiny[@]}" base_model="$oov" output_dir="$T/r4" \
    "data.datasets=[{path: $T/oov.jsonl, type: prompt_completion}]"
has "$T/err" "oov.jsonl:2" "the message names the file and line"

finish model_checks
