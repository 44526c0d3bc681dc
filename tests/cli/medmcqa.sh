#!/usr/bin/env bash
# MedMCQA's answer index: the Hugging Face dataset counts cop 0..3, the original
# JSON release 1..4. Each file's numbering is told from the file (a 0 or a 4)
# and said; a file that shows neither is refused until its entry says
# answer_base; the same questions in either numbering score the same.
# usage: medmcqa.sh DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "$1")
source "$(dirname "$0")/lib/checks.sh"
source "$(dirname "$0")/lib/medmcqa.sh"
cd "$(dirname "$0")/../.."

ANSWERS="0 1 2 3 1 2 0 3 2 1 3 0"
medmcqa 0 $ANSWERS > "$T/hf.jsonl"
medmcqa 1 $ANSWERS > "$T/train.json"          # the original release: JSON lines in a .json file
medmcqa 0 1 2 1 2 > "$T/ambiguous.jsonl"      # cop 1 and 2 only: either numbering

acc() { sed -n 's/.*"acc": \([0-9.]*\).*/\1/p' "$1" | head -1; }

expect 0 "the Hugging Face numbering" -- eval --model models/tiny --data "$T/hf.jsonl:mcq" --device cpu
has "$T/err" "hf.jsonl: MedMCQA answers (cop) count from 0, as in the Hugging Face dataset (cop 0 on line 1)" "says which numbering it used"
acc_hf=$(acc "$T/out")
echo "accuracy of the 0-based file: $acc_hf"
expect 0 "the original release's numbering" -- eval --model models/tiny --data "$T/train.json:mcq" --device cpu
has "$T/err" "train.json: MedMCQA answers (cop) count from 1, as in the original release (cop 4 on line 4)" "says which numbering it used"
acc_orig=$(acc "$T/out")
[ -n "$acc_hf" ] && [ "$acc_hf" == "$acc_orig" ] && ok "the same questions score the same in both numberings ($acc_hf)" \
  || fail "accuracy $acc_hf (0-based) vs $acc_orig (1-based)"
expect 0 "the original file read as 0-based on purpose" -- eval --model models/tiny --data "$T/hf.jsonl:mcq" --answer-base 0 --device cpu
[ "$(acc "$T/out")" == "$acc_hf" ] && ok "--answer-base 0 is the detected reading" || fail "--answer-base 0 differs"

expect 65 "an ambiguous file" -- eval --model models/tiny --data "$T/ambiguous.jsonl:mcq" --device cpu
has "$T/err" "the MedMCQA answers (cop) are all 1..3, which both numberings use" "the message says why"
has "$T/err" "answer_base: 1 (original release) or answer_base: 0 (Hugging Face)" "... and what to write"
expect 0 "an ambiguous file with --answer-base 1" -- eval --model models/tiny --data "$T/ambiguous.jsonl:mcq" --answer-base 1 --device cpu
has "$T/err" "integer answers count from 1 (answer_base)" "says the numbering it was told"

# in a recipe: refused, then accepted with answer_base; the run's log says which numbering
sed -e "s|^output_dir: .*|output_dir: $T/run|" -e "s|{path: data/tiny/train.jsonl, type: prompt_completion}|{path: $T/ambiguous.jsonl, type: mcq}|" \
  recipes/tiny.yaml > "$T/r.yaml"
expect 65 "train on an ambiguous file" -- "$T/r.yaml" train.max_steps=1 eval.before_training=false device=cpu
has "$T/err" "ambiguous.jsonl" "the message names the file"
has "$T/err" "answer_base" "the message names answer_base"
expect 0 "train with answer_base: 1" -- "$T/r.yaml" 'data.datasets[0].answer_base=1' train.max_steps=1 eval.before_training=false device=cpu
has "$T/run/train.log" "ambiguous.jsonl: integer answers count from 1 (answer_base)" "train.log says the numbering"
expect 0 "train on the original release" -- "$T/r.yaml" "data.datasets[0].path=$T/train.json" train.max_steps=1 eval.before_training=false device=cpu --overwrite
has "$T/run/train.log" "train.json: MedMCQA answers (cop) count from 1, as in the original release" "train.log says the detected numbering"
expect 78 "answer_base on a dataset that is not mcq" -- validate recipes/tiny.yaml 'data.datasets[0].answer_base=1'
has "$T/err" "data.datasets[0].answer_base: applies to type mcq only" "the message names the key"
expect 78 "answer_base 2" -- validate "$T/r.yaml" 'data.datasets[0].answer_base=2'
has "$T/err" "expected one of auto|0|1" "the message lists the choices"

# the release's other quirks: a test split without answers, a file numbered both ways
medmcqa 0 0 1 > "$T/test.jsonl" && sed -i '2s/"cop": 1/"cop": -1/' "$T/test.jsonl"
expect 65 "cop -1 (the Hugging Face test split)" -- eval --model models/tiny --data "$T/test.jsonl:mcq" --device cpu
has "$T/err" "test.jsonl:2: field \"cop\": -1 or null: this record has no answer, as in MedMCQA's test split" "the message says why"
medmcqa 1 3 2 | sed 's/"cop": [0-9], //' > "$T/test.json"
expect 65 "no cop (the original test.json)" -- eval --model models/tiny --data "$T/test.json:mcq" --answer-base 1 --device cpu
has "$T/err" "test.json:1: field \"cop\": missing: this record has no answer" "the message says why"
{ medmcqa 0 0 1; medmcqa 1 3; } > "$T/mixed.jsonl"
expect 65 "both numberings in one file" -- eval --model models/tiny --data "$T/mixed.jsonl:mcq" --device cpu
has "$T/err" "cop 0 on line 1" "names the 0" && has "$T/err" "cop 4 on line 3" "names the 4"

finish medmcqa
