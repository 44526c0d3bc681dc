#!/usr/bin/env bash
# README, "Medical recipe", followed on a machine without the real downloads:
# the tiny model laid out in the Hugging Face cache under the recipe's id (as
# `huggingface-cli download ... --revision refs/pr/3` lays it out), MedMCQA-shaped
# files in both numberings, and every mistake on the way told with its next
# command. Keep it in step with the README section.
# usage: medical_walkthrough.sh DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "$1")
source "$(dirname "$0")/lib/checks.sh"
source "$(dirname "$0")/lib/medmcqa.sh"
cd "$(dirname "$0")/../.."
ROOT=$PWD
unset HF_HUB_CACHE HUGGINGFACE_HUB_CACHE HF_HOME XDG_CACHE_HOME
export HOME="$T/home"                     # the Hub cache is its default, ~/.cache/huggingface/hub
HUB="$HOME/.cache/huggingface/hub"
ID=deepseek-ai/deepseek-llm-7b-base
REPO="$HUB/models--deepseek-ai--deepseek-llm-7b-base"
PR3=dbd6f0e98a1f2c9978e2d0c6370cdfc563218527
SMALL=(train.max_steps=2 eval.limit=8 data.sequence_len=256 device=cpu)   # the README's "try it small" run, smaller
mkdir -p "$T/work/recipes" "$T/work/data" && cp recipes/medical.yaml "$T/work/recipes/"
cd "$T/work"

# Before anything is downloaded: the run names base_model, where it looked, and the download command.
expect 66 "the recipe before the download" -- recipes/medical.yaml
has "$T/err" "recipes/medical.yaml: base_model: $ID@refs/pr/3: no such model folder, and not in the Hugging Face cache" "names base_model"
has "$T/err" "$REPO" "says where it looked"
has "$T/err" "huggingface-cli download $ID --revision refs/pr/3 --include '*.json' '*.safetensors'" "gives the README's download command"
expect 0 "doctor before the download" -- doctor recipes/medical.yaml --gpu 4090
has "$T/out" "fits         yes on --gpu 4090" "doctor: it fits a 24 GB card"

# A newcomer who downloaded the main branch (PyTorch .bin weights only) is told the revision to get.
mkdir -p "$REPO/refs" "$REPO/snapshots/7683fea62db869066ddaff6a41d032262c490d4f"
printf 7683fea62db869066ddaff6a41d032262c490d4f > "$REPO/refs/main"
cp "$ROOT"/models/tiny/*.json "$REPO/snapshots/7683fea62db869066ddaff6a41d032262c490d4f/"
: > "$REPO/snapshots/7683fea62db869066ddaff6a41d032262c490d4f/pytorch_model-00001-of-00002.bin"
expect 66 "base_model: $ID (main)" -- recipes/medical.yaml base_model=$ID
has "$T/err" "holds PyTorch .bin weights and no .safetensors" "says why main does not do"
has "$T/err" "then write base_model: $ID@refs/pr/3" "says what to write"
expect 66 "still no refs/pr/3" -- recipes/medical.yaml
has "$T/err" "revision refs/pr/3 is not in the Hugging Face cache" "says the revision is missing"
has "$T/err" "revisions there: main" "lists the revisions there"

# The README's download: refs/refs/pr/3 -> the safetensors snapshot (here the tiny model).
mkdir -p "$REPO/refs/refs/pr" && printf '%s' "$PR3" > "$REPO/refs/refs/pr/3"
cp -r "$ROOT/models/tiny" "$REPO/snapshots/$PR3"
expect 66 "the recipe before the data" -- recipes/medical.yaml
has "$T/err" "data.datasets[0].path: data/medmcqa_train.jsonl: no such file" "names data.datasets[0].path"

# The data: the Hugging Face dataset's split (cop 0-3) as JSON lines.
medmcqa 0 0 1 2 3 1 2 0 3 2 1 3 0 1 2 3 0 > data/medmcqa_train.jsonl
medmcqa 0 3 2 1 0 2 1 3 0 > data/medmcqa_val.jsonl
expect 0 "doctor with everything there" -- doctor recipes/medical.yaml --gpu 4090
has "$T/out" "model        $ID@refs/pr/3 -> $REPO/snapshots/$PR3" "doctor finds the model"
has "$T/out" "tokenized as the run would" "doctor counts the tokens"
has "$T/out" "per epoch on --gpu 4090" "doctor gives the time"
expect 0 "the run, small" -- recipes/medical.yaml "${SMALL[@]}"
has "$T/err" "base_model: $ID@refs/pr/3 -> $REPO/snapshots/$PR3 (Hugging Face cache, revision refs/pr/3" "the run says where the model is"
has runs/medical/train.log "data/medmcqa_train.jsonl: MedMCQA answers (cop) count from 0, as in the Hugging Face dataset" "the log says the numbering"
has runs/medical/train.log "data/medmcqa_val.jsonl: MedMCQA answers (cop) count from 0" "... of the validation file too"
# These validation questions are training questions too: the recipe's clean: section drops them.
has runs/medical/train.log "contamination: data.datasets[0] data/medmcqa_train.jsonl: 8 records share a 13-gram with 8 of 8 eval items; dropped" "the log says what the contamination check found"
has runs/medical/clean_report.json '"contamination"' "the cleaning report is in the run folder"
has runs/medical/eval/medmcqa_val.json '"acc"' "accuracy before and after"
has runs/medical/adapter/adapter_config.json "\"base_model_name_or_path\": \"$ID\"" "the adapter names the Hub model"
has runs/medical/adapter/adapter_config.json '"revision": "refs/pr/3"' "... and its revision, as PEFT reads them"
[ -f runs/medical/report.html ] && ok "the report" || fail "no runs/medical/report.html"
cp runs/medical/eval/medmcqa_val.json "$T/eval_hf.json"
expect 0 "ds-ft eval of the run" -- eval recipes/medical.yaml "${SMALL[@]}"
has "$T/out" '"adapter"' "eval RECIPE scores the adapter"

# The original release: train.json and dev.json (cop 1-4) used as they are.
medmcqa 1 0 1 2 3 1 2 0 3 2 1 3 0 1 2 3 0 > data/train.json
medmcqa 1 3 2 1 0 2 1 3 0 > data/dev.json
rm -rf runs
expect 0 "the run on the original release" -- recipes/medical.yaml 'data.datasets[0].path=data/train.json' \
  'eval.datasets[0].path=data/dev.json' "${SMALL[@]}"
has runs/medical/train.log "data/train.json: MedMCQA answers (cop) count from 1, as in the original release" "the log says the numbering"
sed -n 's/.*"acc": \([0-9.]*\).*/\1/p' "$T/eval_hf.json" > "$T/acc_hf"
sed -n 's/.*"acc": \([0-9.]*\).*/\1/p' runs/medical/eval/dev.json > "$T/acc_orig"
[ -s "$T/acc_hf" ] && cmp -s "$T/acc_hf" "$T/acc_orig" && ok "the same questions score the same in both numberings" \
  || fail "accuracies differ: $(cat "$T/acc_hf") vs $(cat "$T/acc_orig")"

# A split whose answers are all 1..3 cannot be told: refused until answer_base says.
medmcqa 0 1 2 1 2 > data/few.jsonl
expect 65 "an ambiguous file" -- recipes/medical.yaml 'data.datasets[0].path=data/few.jsonl' "${SMALL[@]}" --overwrite
has "$T/err" "answer_base: 1 (original release) or answer_base: 0 (Hugging Face)" "says what to write"
# (its four questions are validation questions: cleaning would drop them all, and says so)
expect 65 "... with answer_base, cleaned" -- recipes/medical.yaml 'data.datasets[0].path=data/few.jsonl' 'data.datasets[0].answer_base=0' "${SMALL[@]}" --overwrite
has "$T/err" "cleaning kept none of the 4 records of data/few.jsonl" "says that cleaning left nothing"
expect 0 "... with answer_base, contamination only warned" -- recipes/medical.yaml 'data.datasets[0].path=data/few.jsonl' 'data.datasets[0].answer_base=0' clean.contamination.action=warn "${SMALL[@]}" --overwrite
has runs/medical/train.log "4 records share a 13-gram with 4 of 8 eval items; warning: kept" "the log warns of the contamination"

finish medical_walkthrough
