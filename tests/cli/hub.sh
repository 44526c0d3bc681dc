#!/usr/bin/env bash
# Hugging Face model ids (base_model, tokenizer, --model) found in a Hub cache
# laid out here as huggingface_hub lays it out (models--ORG--NAME, refs/,
# snapshots/), the messages for a model found nowhere, and the recipe key each
# missing input is named by.
# usage: hub.sh DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "$1")
source "$(dirname "$0")/lib/checks.sh"
cd "$(dirname "$0")/../.."
ROOT=$PWD
unset HF_HUB_CACHE HUGGINGFACE_HUB_CACHE HF_HOME XDG_CACHE_HOME

MAIN=0123456789abcdef0123456789abcdef01234567
V1=89abcdef0123456789abcdef0123456789abcdef
# cache_repo CACHE ORG NAME: models--ORG--NAME with refs/main -> $MAIN and refs/v1 -> $V1, both models/tiny
cache_repo() {
  local repo="$1/models--$2--$3"
  mkdir -p "$repo/refs" "$repo/snapshots"
  cp -r "$ROOT/models/tiny" "$repo/snapshots/$MAIN"
  cp -r "$ROOT/models/tiny" "$repo/snapshots/$V1"
  printf '%s' "$MAIN" > "$repo/refs/main"
  printf '%s' "$V1" > "$repo/refs/v1"
}
cache_repo "$T/hub" acme tiny

# --model: an id from HF_HUB_CACHE
HF_HUB_CACHE="$T/hub" expect 0 "inspect acme/tiny from HF_HUB_CACHE" -- inspect acme/tiny
has "$T/out" "models--acme--tiny/snapshots/$MAIN" "refs/main names the snapshot"
HF_HUB_CACHE="$T/hub" expect 0 "generate --model acme/tiny" -- generate --model acme/tiny --prompt "Question:" --max-new-tokens 2 --device cpu
# ... and from HF_HOME/hub
mkdir -p "$T/home" && cp -r "$T/hub" "$T/home/hub"
HF_HOME="$T/home" expect 0 "HF_HOME/hub" -- inspect acme/tiny
has "$T/out" "$T/home/hub/models--acme--tiny" "the snapshot is HF_HOME's"
HF_HOME="$T/home" HF_HUB_CACHE="$T/hub" expect 0 "HF_HUB_CACHE before HF_HOME" -- inspect acme/tiny
has "$T/out" "$T/hub/models--acme--tiny" "HF_HUB_CACHE wins"
# ... and from the default ~/.cache/huggingface/hub
mkdir -p "$T/user/.cache/huggingface" && cp -r "$T/hub" "$T/user/.cache/huggingface/hub"
HOME="$T/user" expect 0 "~/.cache/huggingface/hub" -- inspect acme/tiny

# @revision: a ref name, a commit hash, a missing revision
HF_HUB_CACHE="$T/hub" expect 0 "acme/tiny@v1" -- inspect acme/tiny@v1
has "$T/out" "snapshots/$V1" "refs/v1 names its snapshot"
HF_HUB_CACHE="$T/hub" expect 0 "acme/tiny@COMMIT" -- inspect "acme/tiny@$MAIN"
has "$T/out" "snapshots/$MAIN" "a commit hash is its own snapshot"
mkdir -p "$T/hub/models--acme--tiny/refs/refs/pr" && printf '%s' "$V1" > "$T/hub/models--acme--tiny/refs/refs/pr/3"
HF_HUB_CACHE="$T/hub" expect 0 "acme/tiny@refs/pr/3 (a ref with slashes)" -- inspect acme/tiny@refs/pr/3
has "$T/out" "snapshots/$V1" "refs/refs/pr/3 names its snapshot"
HF_HUB_CACHE="$T/hub" expect 66 "acme/tiny@v9" -- generate --model acme/tiny@v9 --prompt x
has "$T/err" "--model: acme/tiny@v9: revision v9 is not in the Hugging Face cache" "the message names the option and the revision"
has "$T/err" "revisions there: " "the message lists the revisions there"
has "$T/err" "refs/pr/3" "... refs with slashes too"
has "$T/err" "huggingface-cli download acme/tiny --revision v9" "the message gives the download command with the revision"

# a model found nowhere: one message with the key, every place looked, the download command
HF_HUB_CACHE="$T/hub" expect 66 "--model found nowhere" -- merge --model acme/none --adapter a --out "$T/m"
for want in "--model: acme/none: no such model folder, and not in the Hugging Face cache" \
            "looked for a folder:  acme/none" "looked in the Hugging Face cache:  $T/hub/models--acme--none" \
            "\$HF_HUB_CACHE" "huggingface-cli download acme/none" "hf download acme/none"; do
  has "$T/err" "$want" "model missing: '$want'"
done
[ "$(grep -c 'error' "$T/err")" -eq 1 ] && ok "one message" || fail "more than one message: $(cat "$T/err")"
nothing_at "$T/m"
HOME="$T/nobody" expect 66 "the default cache, named" -- inspect other/model
has "$T/err" "$T/nobody/.cache/huggingface/hub/models--other--model" "the default cache is ~/.cache/huggingface/hub"
has "$T/err" "set HF_HUB_CACHE or HF_HOME" "the message says how to move the cache"
expect 66 "a path that is not an id" -- quantize --model ./no/such/dir --out "$T/q"
has "$T/err" "--model: ./no/such/dir: no such model folder" "a path is named as a path"

# a path that exists wins over an id
mkdir -p "$T/work/acme" && cp -r models/tiny "$T/work/acme/tiny"
(cd "$T/work" && HF_HUB_CACHE="$T/nothing" "$DSFT" inspect acme/tiny > "$T/out" 2> "$T/err") && ok "a folder acme/tiny wins" || fail "local folder: $(cat "$T/err")"
has "$T/out" "model folder          acme/tiny" "the folder itself is used"

# an unfinished download, and PyTorch .bin weights only
cache_repo "$T/hub" acme cut && rm "$T/hub/models--acme--cut/snapshots/$MAIN/config.json"
HF_HUB_CACHE="$T/hub" expect 66 "unfinished download" -- inspect acme/cut
has "$T/err" "has no config.json: the download did not finish; run it again" "the message says the download was cut"
repo="$T/hub/models--deepseek-ai--deepseek-llm-7b-base"
mkdir -p "$repo/refs" "$repo/snapshots/$MAIN" && printf '%s' "$MAIN" > "$repo/refs/main"
cp models/tiny/config.json models/tiny/tokenizer*.json "$repo/snapshots/$MAIN/" && : > "$repo/snapshots/$MAIN/pytorch_model-00001-of-00002.bin"
HF_HUB_CACHE="$T/hub" expect 66 "main with .bin weights only" -- generate --model deepseek-ai/deepseek-llm-7b-base --prompt x
has "$T/err" "holds PyTorch .bin weights and no .safetensors" "the message says why"
has "$T/err" "huggingface-cli download deepseek-ai/deepseek-llm-7b-base --revision refs/pr/3" "... and the revision with safetensors"
has "$T/err" "then give --model deepseek-ai/deepseek-llm-7b-base@refs/pr/3" "... and what to write"

# recipes: base_model and tokenizer as ids; each missing input named by its key
recipe() {   # recipe FILE BASE_MODEL [extra top-level lines]
  sed -e "s|^base_model: .*|base_model: $2|" -e "s|^output_dir: .*|output_dir: $T/run|" recipes/tiny.yaml > "$1"
  [ $# -gt 2 ] && printf '%s\n' "$3" >> "$1"
  true
}
recipe "$T/id.yaml" acme/tiny
HF_HUB_CACHE="$T/hub" expect 0 "train with base_model: acme/tiny" -- "$T/id.yaml" train.max_steps=2 eval.before_training=false device=cpu
has "$T/err" "base_model: acme/tiny -> $T/hub/models--acme--tiny/snapshots/$MAIN (Hugging Face cache, revision main" "the run says where the id was found"
has "$T/run/adapter/adapter_config.json" '"base_model_name_or_path": "acme/tiny"' "the adapter names the base model by its id, as PEFT does"
rm -rf "$T/run"
recipe "$T/none.yaml" acme/none
HF_HUB_CACHE="$T/hub" expect 66 "train with base_model found nowhere" -- "$T/none.yaml"
has "$T/err" "$T/none.yaml: base_model: acme/none: no such model folder, and not in the Hugging Face cache" "the message names the recipe and base_model"
has "$T/err" "huggingface-cli download acme/none" "... and the download command"
if grep -q "tokenizer folder" "$T/err"; then fail "the message speaks of a tokenizer folder"; else ok "not 'tokenizer folder'"; fi
nothing_at "$T/run"
recipe "$T/tok.yaml" acme/tiny "tokenizer: acme/notok"
HF_HUB_CACHE="$T/hub" expect 66 "tokenizer found nowhere" -- "$T/tok.yaml"
has "$T/err" "tokenizer: acme/notok: no such tokenizer folder" "the message names the tokenizer key"
HF_HUB_CACHE="$T/hub" expect 66 "a data file missing" -- "$T/id.yaml" 'data.datasets[0].path=data/none.jsonl'
has "$T/err" "data.datasets[0].path: data/none.jsonl: no such file" "the message names data.datasets[0].path"
HF_HUB_CACHE="$T/hub" expect 66 "an eval file missing" -- eval "$T/id.yaml" 'eval.datasets[0].path=data/none.jsonl'
has "$T/err" "eval.datasets[0].path: data/none.jsonl: no such file" "the message names eval.datasets[0].path"
nothing_at "$T/run"

finish hub
