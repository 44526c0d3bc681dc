#!/usr/bin/env bash
# ds-ft doctor: the machine (no GPU here, or the GPUs there are), and for a
# recipe the model (downloaded or not), the memory against a card, the largest
# micro-batch that fits and the time of an epoch; nothing written.
# usage: doctor.sh DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "$1")
source "$(dirname "$0")/lib/checks.sh"
source "$(dirname "$0")/lib/medmcqa.sh"
cd "$(dirname "$0")/../.."
ROOT=$PWD
unset HF_HUB_CACHE HUGGINGFACE_HUB_CACHE HF_HOME XDG_CACHE_HOME
export HF_HUB_CACHE="$T/hub"

expect 0 "doctor" -- doctor
has "$T/out" "build        ds-ft" "the build"
if "$DSFT" --version | grep -q "cpu only"; then
  has "$T/out" "gpu          none found (this build has no CUDA)" "says there is no GPU"
else
  if grep -q "^gpu 0 " "$T/out"; then has "$T/out" "compute capability" "the GPU's compute capability"; has "$T/out" "cuda         driver" "the CUDA versions"
  else has "$T/out" "gpu          none found" "says there is no GPU"; fi
fi

# the medical recipe before any download, on MedMCQA-shaped data
mkdir -p "$T/work/data" "$T/work/recipes" && cp recipes/medical.yaml "$T/work/recipes/"
cd "$T/work"
medmcqa 0 0 1 2 3 2 1 > data/medmcqa_train.jsonl
medmcqa 0 3 2 1 0 > data/medmcqa_val.jsonl
expect 0 "doctor RECIPE --gpu 4090 before the download" -- doctor recipes/medical.yaml --gpu 4090
has "$T/out" "base_model: deepseek-ai/deepseek-llm-7b-base@refs/pr/3: no such model folder, and not in the Hugging Face cache" "the model is not there yet"
has "$T/out" "huggingface-cli download deepseek-ai/deepseek-llm-7b-base --revision refs/pr/3" "... and how to get it"
has "$T/out" "until then: the shape of deepseek-llm-7b from ds-ft's table" "the shape comes from ds-ft's table"
has "$T/out" "memory       9.9 GiB estimated for micro_batch_size 4, sequence_len 2048" "the memory of the recipe"
has "$T/out" "fits         yes on --gpu 4090" "it fits on a 4090"
has "$T/out" "record text at 4 bytes per token" "the tokens are estimated from the text"
has "$T/out" "per epoch on --gpu 4090" "the time of an epoch"
has "$T/out" "x the 4090's bf16 peak over the H100's (165/989 TFLOP/s)" "the 4090's speed is said to be estimated"
expect 0 "doctor RECIPE, no card named" -- doctor recipes/medical.yaml
if "$DSFT" --version | grep -q "cpu only"; then
  has "$T/out" "  4090     24 GiB  fits" "the 4090 row"
  has "$T/out" "  h100     80 GiB  fits" "the H100 row"
  grep "  h100 " "$T/out" | grep -q "(measured speed)" && ok "the H100's speed is measured" || fail "H100 row: $(grep h100 "$T/out")"
fi
expect 0 "doctor RECIPE --mem-gib 8" -- doctor recipes/medical.yaml --mem-gib 8
has "$T/out" "fits         NO on 8.0 GiB free (--mem-gib): 9.9 GiB needed" "it does not fit in 8 GiB"
has "$T/out" "the largest micro-batch that fits at sequence_len 2048 is 2: train.micro_batch_size=2 train.gradient_accumulation_steps=16" \
  "the micro-batch that fits, and the accumulation that keeps the step"
expect 0 "doctor RECIPE, 64K tokens in 22 GiB" -- doctor recipes/medical.yaml data.sequence_len=65536 train.micro_batch_size=1 --mem-gib 22
has "$T/out" "with each layer's input in host memory it fits:" "offloading the layers' inputs is named where it makes the run fit"
expect 0 "doctor with an override" -- doctor recipes/medical.yaml train.micro_batch_size=2 data.sequence_len=1024 --gpu 4080
has "$T/out" "micro_batch_size 2, sequence_len 1024" "the overrides are read"
has "$T/out" "fits         yes on --gpu 4080" "it fits on a 16 GB card"
expect 64 "doctor --gpu unknown" -- doctor recipes/medical.yaml --gpu 9999
has "$T/err" "--gpu 9999: not a card ds-ft knows" "the message names the option"
if [ -e runs ] || [ -e "$T/hub" ]; then fail "doctor wrote something: $(ls -d runs "$T/hub" 2>/dev/null)"; else ok "doctor wrote nothing"; fi

# with the model there (the tiny model in the cache under the recipe's id): tokenized as the run would
repo="$T/hub/models--deepseek-ai--deepseek-llm-7b-base"
mkdir -p "$repo/refs/refs/pr" "$repo/snapshots"
cp -r "$ROOT/models/tiny" "$repo/snapshots/dbd6f0e98a1f2c9978e2d0c6370cdfc563218527"
printf dbd6f0e98a1f2c9978e2d0c6370cdfc563218527 > "$repo/refs/refs/pr/3"
expect 0 "doctor RECIPE with the model downloaded" -- doctor recipes/medical.yaml --gpu h100
has "$T/out" "model        deepseek-ai/deepseek-llm-7b-base@refs/pr/3 -> $repo/snapshots/dbd6f0e98a1f2c9978e2d0c6370cdfc563218527" "the model found in the cache"
has "$T/out" "data/medmcqa_train.jsonl: MedMCQA answers (cop) count from 0, as in the Hugging Face dataset" "the numbering is said"
has "$T/out" "tokenized as the run would" "the data is tokenized"
[ -e runs ] && fail "doctor wrote runs/" || ok "doctor wrote nothing"

finish doctor
