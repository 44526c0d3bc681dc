#!/usr/bin/env bash
# Nothing that exists is destroyed unless asked, what is wrong is refused by
# name, and a stop at any phase leaves a state to continue from: the numbered
# cases of the reliability review, each as it was found.
# usage: reliability.sh DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "$1")
source "$(dirname "$0")/lib/checks.sh"
FIX="$(realpath "$2")/fixtures"
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
ADAPTER=$FIX/tiny-llama/adapter
tiny=(recipes/tiny.yaml device=cpu eval.datasets=[] save.merge=false)

# st_edit IN OUT NAME EXPR: copy a safetensors file with tensor NAME changed by the Python
# expression EXPR over its raw bytes `b` and header entry `e` (e.g. set a value to NaN).
st_edit() {
    python3 - "$@" <<'EOF'
import json, struct, sys
src, dst, name, expr = sys.argv[1:5]
raw = open(src, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
head = json.loads(raw[8:8 + n]); data = raw[8 + n:]
parts, off, out = [], 0, {}
for k, e in sorted(((k, e) for k, e in head.items() if k != '__metadata__'), key=lambda kv: kv[1]['data_offsets'][0]):
    b = data[e['data_offsets'][0]:e['data_offsets'][1]]
    if k == name:
        b, e = eval(expr)
    out[k] = dict(e, data_offsets=[off, off + len(b)]); parts.append(b); off += len(b)
if '__metadata__' in head: out['__metadata__'] = head['__metadata__']
h = json.dumps(out).encode(); h += b' ' * ((8 - len(h) % 8) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(h)) + h + b''.join(parts))
EOF
}
NAN32='struct.pack("<f", float("nan")) + b[4:]'

# ---- 1. --out onto something that exists: refused (73) and left as it was; --force replaces it
"$DSFT" export --adapter "$ADAPTER" --out "$T/a.dsft" >/dev/null 2>&1 || fail "export"
mkdir -p "$T/d/sub" && echo x >"$T/d/notes.txt"
expect 73 "import onto an existing folder" -- import --in "$T/a.dsft" --out "$T/d"
has "$T/err" "exists; pass --force to replace" "the message says how to replace it"
[ -e "$T/d/notes.txt" ] && ok "the existing folder is untouched" || fail "import removed notes.txt"
expect 73 "merge onto an existing folder" -- merge --model "$FIX/tiny-llama" --adapter "$ADAPTER" --out "$T/d"
expect 73 "quantize onto an existing folder" -- quantize --model models/tiny --out "$T/d"
echo keep >"$T/f.dsft"
expect 73 "export onto an existing file" -- export --adapter "$ADAPTER" --out "$T/f.dsft"
same "$T/f.dsft" "keep" "the existing file is untouched"
[ -e "$T/d/notes.txt" ] && ok "notes.txt survived every refusal" || fail "notes.txt was removed"
expect 0 "import --force replaces the folder" -- import --in "$T/a.dsft" --out "$T/d" --force
[ ! -e "$T/d/notes.txt" ] && [ -s "$T/d/adapter_model.safetensors" ] && ok "the folder holds the import alone" ||
    fail "import --force did not replace the folder"
expect 0 "export --force replaces the file" -- export --adapter "$ADAPTER" --out "$T/f.dsft" --force
cmp -s "$T/f.dsft" "$T/a.dsft" && ok "the file is the new export" || fail "export --force did not replace the file"
expect 64 "merge onto its own model folder" -- merge --model models/tiny --adapter "$ADAPTER" --out models/tiny --force

# ---- 2. a fresh run into a folder with an earlier run: inputs first, then a refusal unless --overwrite
run=$T/run
expect 0 "a first run" -- train "${tiny[@]}" output_dir="$run" train.max_steps=2 save.every_steps=1 save.keep_last=0
cp "$run/metrics.jsonl" "$T/metrics.before"
expect 66 "a second run with a typo in a data path" -- train "${tiny[@]}" output_dir="$run" train.max_steps=2 \
    "data.datasets=[{path: data/tiny/trian.jsonl, type: prompt_completion}]" --overwrite
has "$T/err" "data.datasets[0].path: data/tiny/trian.jsonl: no such file" "the message names the recipe key"
[ -e "$run/checkpoints/step-2/checkpoint.complete" ] && ok "the earlier checkpoints are intact" ||
    fail "the earlier checkpoints were removed"
cmp -s "$run/metrics.jsonl" "$T/metrics.before" && ok "metrics.jsonl is intact" || fail "metrics.jsonl was changed"
expect 73 "a fresh run into the earlier run's folder" -- train "${tiny[@]}" output_dir="$run" train.max_steps=2
has "$T/err" "pass --overwrite to replace it or --resume to continue it" "the message names both choices"
cmp -s "$run/metrics.jsonl" "$T/metrics.before" && ok "metrics.jsonl is still intact" || fail "metrics.jsonl was changed"
expect 0 "--overwrite replaces the earlier run" -- train "${tiny[@]}" output_dir="$run" train.max_steps=1 --overwrite
[ ! -e "$run/checkpoints/step-2" ] && [ -e "$run/checkpoints/step-1/checkpoint.complete" ] &&
    ok "only the new run's checkpoints are left" || fail "--overwrite left the earlier checkpoints"
expect 66 "a missing base_model folder" -- train "${tiny[@]}" output_dir="$T/nomodel" base_model="$T/nope"
has "$T/err" "base_model: $T/nope: no such model folder" "the message names base_model, not the tokenizer"
nothing_at "$T/nomodel"

# ---- 3. --resume takes the newest complete checkpoint and says which it skipped
run3=$T/run3
expect 0 "a run with three checkpoints" -- train "${tiny[@]}" output_dir="$run3" train.max_steps=3 save.every_steps=1 \
    save.keep_last=0 train.logging_steps=1
cp "$run3/adapter/adapter_model.safetensors" "$T/adapter3"
rm "$run3/checkpoints/step-3/optimizer.safetensors" "$run3/checkpoints/step-3/checkpoint.complete"   # half-deleted
expect 0 "--resume past a half-deleted checkpoint" -- train "${tiny[@]}" output_dir="$run3" train.max_steps=3 \
    save.every_steps=1 save.keep_last=0 train.logging_steps=1 --resume
has "$T/err" "resume: skipped step-3" "resume says which it skipped"
has "$T/err" "resume: from $run3/checkpoints/step-2" "resume continues from step-2"
cmp -s "$run3/adapter/adapter_model.safetensors" "$T/adapter3" && ok "the same adapter as the run never stopped" ||
    fail "the resumed adapter differs"

# ---- 4. wrong values are refused by name
bad=$T/bad-adapter
mkdir -p "$bad" && cp "$ADAPTER"/* "$bad"/
sed -i 's/"lora_alpha": 8/"lora_alpha": "big"/' "$bad/adapter_config.json"
expect 65 "lora_alpha of the wrong kind" -- merge --model "$FIX/tiny-llama" --adapter "$bad" --out "$T/m1" --source original
has "$T/err" '"lora_alpha" must be a positive number' "the message names lora_alpha"
nothing_at "$T/m1"
cp "$ADAPTER/adapter_config.json" "$bad/"
key=base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
st_edit "$ADAPTER/adapter_model.safetensors" "$bad/adapter_model.safetensors" "$key" "($NAN32, e)"
expect 65 "an adapter holding NaN" -- merge --model "$FIX/tiny-llama" --adapter "$bad" --out "$T/m2" --source original
has "$T/err" "$key" "the message names the tensor"
nothing_at "$T/m2"
expect 65 "export of an adapter holding NaN" -- export --adapter "$bad" --out "$T/nan.dsft"
nothing_at "$T/nan.dsft"
nanmodel=$T/nan-model
mkdir -p "$nanmodel" && cp models/tiny/*.json "$nanmodel"/
st_edit models/tiny/model.safetensors "$nanmodel/model.safetensors" model.layers.0.self_attn.q_proj.weight \
    '(b[:4] + b"\xc0\x7f" + b[6:], e) if e["dtype"] == "BF16" else (struct.pack("<f", float("nan")) + b[4:], e)'
expect 65 "generate with a NaN weight" -- generate --model "$nanmodel" --prompt "Question:" --max-new-tokens 3 --device cpu
has "$T/err" "NaN" "the message says NaN"
u8=$T/u8-model
mkdir -p "$u8" && cp models/tiny/*.json "$u8"/
st_edit models/tiny/model.safetensors "$u8/model.safetensors" model.embed_tokens.weight '(b[::2], dict(e, dtype="U8"))'
expect 65 "quantize of a U8 embedding" -- quantize --model "$u8" --out "$T/q-u8"
has "$T/err" "model.embed_tokens.weight" "the message names the tensor"
nothing_at "$T/q-u8"
# a bundle whose checksums match but whose safetensors is broken: the header says more data than there is
python3 - "$ADAPTER" "$T/broken.dsft" <<'EOF'
import hashlib, json, struct, subprocess, sys
d, out = sys.argv[1:3]
cfg = open(d + '/adapter_config.json', 'rb').read()
st = bytearray(open(d + '/adapter_model.safetensors', 'rb').read())
st = bytes(st[:len(st) - 16])                       # cut short: offsets past the end
files = [('adapter_config.json', cfg), ('adapter_model.safetensors', st)]
man = {"format": "ds-ft-adapter", "version": 1,
       "files": [{"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in files]}
raw = (json.dumps(man) + "\n").encode() + cfg + st
comp = subprocess.run(['zstd', '-q', '-c', '--content-size'], input=raw, capture_output=True, check=True).stdout
open(out, 'wb').write(b'DSFTPACK' + comp)
EOF
expect 65 "import of a bundle carrying a broken safetensors" -- import --in "$T/broken.dsft" --out "$T/imp-broken"
has "$T/err" "adapter_model.safetensors" "the message names the file"
nothing_at "$T/imp-broken"

# ---- 5. a list where a number belongs: the message shows it as a list (no bytes of the stack)
expect 78 "a list for adapter.lora_alpha" -- validate recipes/tiny.yaml "adapter.lora_alpha=[1]"
has "$T/err" "adapter.lora_alpha: expected a number, got a list" "the message says a list"
if command -v valgrind >/dev/null && [ -z "${ASAN_OPTIONS:-}" ]; then
    valgrind -q --error-exitcode=99 "$DSFT" validate recipes/tiny.yaml "adapter.lora_alpha=[1]" >/dev/null 2>"$T/vg"
    [ $? -eq 78 ] && ok "valgrind finds no uninitialised read" || fail "valgrind: $(head -c 600 "$T/vg")"
fi

# ---- 6. a bundle of 1 GiB of zeros (about 40 KB) is refused without decompressing it
python3 - "$ADAPTER" "$T/head" <<'EOF'
import hashlib, json, sys
d, out = sys.argv[1:3]
files = [(n, open(d + '/' + n, 'rb').read()) for n in ('adapter_config.json', 'adapter_model.safetensors')]
man = {"format": "ds-ft-adapter", "version": 1,
       "files": [{"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in files]}
open(out, 'wb').write((json.dumps(man) + "\n").encode() + b''.join(b for _, b in files))
EOF
size=$(( $(stat -c %s "$T/head") + (1 << 30) ))
{ printf DSFTPACK; { cat "$T/head"; head -c 1G /dev/zero; } | zstd -q -1 -c --stream-size=$size; } >"$T/bomb.dsft"
# What starting ds-ft costs on this machine now (loading the CUDA libraries, asking for devices), so that
# the bound below is on the import alone.
start=$(date +%s%N)
"$DSFT" --version >/dev/null 2>&1
base_ms=$(( ($(date +%s%N) - start) / 1000000 ))
start=$(date +%s%N)
if [ -z "${ASAN_OPTIONS:-}" ]; then   # 300 MB of data (heap and anonymous maps; the CUDA libraries are mapped from files): far less than the bomb, plenty for an adapter
    (ulimit -d 300000; exec "$DSFT" import --in "$T/bomb.dsft" --out "$T/imp-bomb") >/dev/null 2>"$T/err"
else
    "$DSFT" import --in "$T/bomb.dsft" --out "$T/imp-bomb" >/dev/null 2>"$T/err"
fi
got=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$got" -eq 65 ] && ok "the bomb is refused (exit 65)" || fail "the bomb: exit $got: $(cat "$T/err")"
has "$T/err" "the manifest declares" "the message compares the sizes"
[ "$ms" -lt $((base_ms + 3000)) ] && ok "refused in ${ms} ms (starting ds-ft: ${base_ms} ms)" ||
    fail "the bomb took ${ms} ms (starting ds-ft: ${base_ms} ms)"
nothing_at "$T/imp-bomb"

# ---- 7. SIGINT during the final evaluation: 130, and --resume finishes the run
run7=$T/run7
ev="{path: data/tiny/eval.jsonl, type: mcq, mcq_format: cloze}"
r7=(recipes/tiny.yaml device=cpu output_dir="$run7" train.max_steps=2 save.merge=true eval.before_training=false
    eval.batch_size=1 "eval.datasets=[$ev, $ev, $ev, $ev, $ev, $ev, $ev, $ev]")
"$DSFT" train "${r7[@]}" >"$T/out7" 2>"$T/err7" &
pid=$!
for _ in $(seq 1 600); do grep -q "^adapter: .*(PEFT format)" "$run7/train.log" 2>/dev/null && break; sleep 0.02; done
kill -INT "$pid"
wait "$pid"
got=$?
[ "$got" -eq 130 ] && ok "SIGINT during the final evaluation (exit 130)" || fail "SIGINT during evaluation: exit $got"
has "$T/err7" "--resume finishes the evaluation and merge" "the message says how to finish"
[ ! -e "$run7/merged" ] && ok "no merged folder yet" || fail "a merged folder after the interruption"
expect 0 "--resume finishes the run" -- train "${r7[@]}" --resume
[ -s "$run7/merged/model.safetensors" ] && [ -s "$run7/eval/eval.json" ] && ok "evaluation and merge done" ||
    fail "--resume did not finish the evaluation and merge"

# ---- 7b. the logged rows after a resume are those of a run never stopped (the partial window is kept)
w=(recipes/tiny.yaml device=cpu eval.datasets=[] save.merge=false train.max_steps=6 train.logging_steps=4
   save.every_steps=2 save.keep_last=0)
expect 0 "a run logging every 4 steps" -- train "${w[@]}" output_dir="$T/wa"
mkdir -p "$T/wb/checkpoints" && cp -r "$T/wa/checkpoints/step-2" "$T/wb/checkpoints/"
expect 0 "resume from its step-2 checkpoint" -- train "${w[@]}" output_dir="$T/wb" --resume
rows() { grep -o '"step":[0-9]*,"epoch":[^,]*,"loss":[^,]*' "$1"; }
[ "$(rows "$T/wa/metrics.jsonl")" == "$(rows "$T/wb/metrics.jsonl")" ] && ok "the same logged rows as the run never stopped" ||
    fail "logged rows differ: $(rows "$T/wa/metrics.jsonl" | tr '\n' ' ') vs $(rows "$T/wb/metrics.jsonl" | tr '\n' ' ')"

# ---- 8. adapter.init_from: the recipe's rank and alpha agree with the adapter's, or are left out
init=(recipes/tiny.yaml device=cpu eval.datasets=[] save.merge=false train.max_steps=1 base_model=$FIX/tiny-llama
      adapter.init_from="$ADAPTER" "adapter.lora_target_modules=[q_proj, v_proj]" quant.load_in_4bit=false)
expect 78 "init_from with another lora_r" -- train "${init[@]}" output_dir="$T/i1" adapter.lora_r=8
has "$T/err" "adapter.lora_r is 8 but adapter.init_from" "the message names adapter.lora_r"
nothing_at "$T/i1"
expect 0 "init_from with lora_r and lora_alpha at their defaults" -- train "${init[@]}" output_dir="$T/i2" \
    adapter.lora_r=16 adapter.lora_alpha=32
has "$T/err" "adapter: starting from" "the adapter's rank is taken"

finish reliability
