#!/usr/bin/env bash
# tests/cli/clean_recipe.sh - cleaning inside a run and the language-model quality cut:
# a recipe's clean: section (keys refused by name with file:line, written back into
# recipe.resolved.yaml), the contamination check every run makes against its eval
# datasets (warn with counts and examples, drop, off), the cleaned data cached and
# re-cleaned when a key changes, clean_report.json in the run folder and report.html;
# and quality.keep_fraction on models/tiny trained briefly on data/tiny: gibberish
# records score worst and are the ones cut, by `ds-ft clean --model` and by a recipe.
# usage: bash clean_recipe.sh PATH_TO_DSFT SHARED_DIR
set -uo pipefail

DSFT=$(realpath "${1:?usage: clean_recipe.sh PATH_TO_DSFT SHARED_DIR}")
source "$(dirname "$0")/lib/checks.sh"
cd "$(dirname "$0")/../.."
ROOT=$PWD
FAST=(device=cpu train.max_steps=2 eval.before_training=false save.merge=false data.sequence_len=128)
# every rule on, with what counts as a duplicate read from the whole record (the templated questions share answers)
DROP=(clean.contamination.action=drop clean.input.text=all clean.length.min_words=0)

# Training data: the first 40 records of data/tiny plus three that copy eval questions word for word.
mkdir -p "$T/data"
head -40 data/tiny/train.jsonl >"$T/data/train.jsonl"
python3 - "$T/data/train.jsonl" <<'PY'
import json, sys
ev = [json.loads(l) for l in open("data/tiny/eval.jsonl")][:3]
with open(sys.argv[1], "a") as f:
    for e in ev:
        f.write(json.dumps({"prompt": "Question: " + e["question"] + " " + ", ".join(e["choices"]),
                            "completion": " " + e["choices"][e["answer"]]}) + "\n")
PY
sed -e "s|data/tiny/train.jsonl|$T/data/train.jsonl|" -e "s|data/tiny/eval.jsonl|$ROOT/data/tiny/eval.jsonl|" \
    -e "s|^output_dir: .*|output_dir: $T/run|" -e "s|^base_model: .*|base_model: $ROOT/models/tiny|" \
    recipes/tiny.yaml >"$T/check.yaml"

# 1. No clean: section: the contamination check alone, warning with counts and examples.
expect 0 "a run without clean:" -- "$T/check.yaml" "${FAST[@]}"
has "$T/run/train.log" "contamination: data.datasets[0] $T/data/train.jsonl: 3 records share a 13-gram with 3 of 64 eval items; warning: kept" "train.log counts the contamination"
has "$T/run/train.log" "contamination:   $T/data/train.jsonl:41 matches $ROOT/data/tiny/eval.jsonl:1:" "train.log shows an example"
has "$T/run/train.log" "data: 43 training examples" "nothing dropped by a warning"
has "$T/run/clean_report.json" '"mode": "contamination check only"' "clean_report.json in the run folder"
python3 - "$T/run/run_info.json" <<'PY' && ok "run_info.json says what the check found" || fail "run_info.json: no clean summary"
import json, sys
c = json.load(open(sys.argv[1]))["clean"]
d = c["datasets"]["data.datasets[0]"]
assert c["mode"] == "contamination check only" and d["records_in"] == 43 and d["records_out"] == 43, c
assert d["contamination"] == {"action": "warn", "ngram": 13, "records": 3, "eval_items_hit": 3, "eval_items": 64}, d
PY
has "$T/run/report.html" "Data cleaning" "report.html has the cleaning section"
has "$T/run/report.html" "contamination.records" "... with the contamination counts"
has "$T/run/report.html" "train.jsonl:41 matches $ROOT/data/tiny/eval.jsonl:1: <q>What is the first-line treatment" "... and the examples"
[ -e "$T/run/cache/train-0.clean.jsonl" ] && fail "a warning wrote cleaned data" || ok "a warning writes no data"

# 2. clean.contamination.action=drop: the three are dropped; the same run again comes from the caches.
expect 0 "clean: with contamination drop" -- "$T/check.yaml" "${FAST[@]}" "${DROP[@]}" --overwrite
has "$T/run/train.log" "3 records share a 13-gram with 3 of 64 eval items; dropped" "dropped"
has "$T/run/train.log" "clean: data.datasets[0] $T/data/train.jsonl: 43 records in, 40 kept (dropped: contamination 3)" "the clean line"
has "$T/run/train.log" "data: 40 training examples" "the cleaned data is what is tokenized"
expect 0 "the same run again" -- "$T/check.yaml" "${FAST[@]}" "${DROP[@]}" --overwrite
has "$T/run/train.log" "40 kept (dropped: contamination 3) (cached)" "the cleaned data comes from the cache"
has "$T/run/train.log" "40 training examples from the token cache" "... and so do its tokens"
expect 0 "a clean key changed" -- "$T/check.yaml" "${FAST[@]}" "${DROP[@]}" clean.length.min_words=12 --overwrite
if grep -qF "(cached)" "$T/run/train.log"; then fail "a changed key reused the cleaned data"; else ok "a changed key cleans again"; fi
has "$T/run/recipe.resolved.yaml" "    min_words: 12" "recipe.resolved.yaml holds the clean: section"
expect 0 "the resolved recipe reads back" -- validate "$T/run/recipe.resolved.yaml"
has "$T/out" "    action: drop" "... with its keys"

# 3. clean: off: no check at all.
expect 0 "clean: off" -- "$T/check.yaml" "${FAST[@]}" clean=off --overwrite
if grep -qF "contamination" "$T/run/train.log"; then fail "clean: off still checked"; else ok "clean: off checks nothing"; fi
[ -e "$T/run/clean_report.json" ] && fail "clean: off left a clean_report.json" || ok "no report with clean: off"

# 4. Keys are refused by name with file:line, as the rest of the recipe.
{ cat "$T/check.yaml"; printf 'clean:\n  dedup:\n    simlarity: 0.95\n'; } >"$T/typo.yaml"
line=$(grep -n "simlarity" "$T/typo.yaml" | cut -d: -f1)
expect 78 "a misspelt clean key" -- validate "$T/typo.yaml"
has "$T/err" "typo.yaml:$line: clean.dedup.simlarity: unknown key; did you mean 'similarity'?" "named with file:line"
{ cat "$T/check.yaml"; printf 'clean:\n  dedupe: {exact: true}\n'; } >"$T/typo2.yaml"
expect 78 "an unknown clean section" -- validate "$T/typo2.yaml"
has "$T/err" "clean.dedupe: unknown key" "the section named"
expect 78 "input.type in a recipe" -- validate "$T/check.yaml" clean.input.type=text
has "$T/err" "clean.input: type is set by each dataset's type" "says where the type comes from"
expect 78 "a bad value" -- validate "$T/check.yaml" clean.dedup.similarity=1.5
has "$T/err" "clean.dedup.similarity" "the key named"
expect 78 "clean: a number" -- validate "$T/check.yaml" clean=5
has "$T/err" "clean: expected a mapping of sections" "says what clean: takes"

# 5. The quality cut: models/tiny trained on data/tiny (prompts included) knows those
# questions; eight of them and eight gibberish records, the best half kept.
expect 0 "a scoring model" -- "$T/check.yaml" device=cpu train.max_steps=60 eval.before_training=false \
    data.sequence_len=128 data.train_on_inputs=true "data.datasets[0].path=$ROOT/data/tiny/train.jsonl" \
    save.merge=true clean=off "output_dir=$T/scorer"
python3 - "$T/mix.jsonl" <<'PY'
import json, random, sys
random.seed(1)
good = [json.loads(l) for l in open("data/tiny/train.jsonl")][:40:5]
recs = [{"text": g["prompt"] + g["completion"]} for g in good]
for _ in range(8):
    recs.append({"text": " ".join("".join(random.choice("QXZJKVqxzjk0123456789#%&") for _ in range(random.randint(3, 9)))
                                  for _ in range(12))})
random.shuffle(recs)
open(sys.argv[1], "w").writelines(json.dumps(r) + "\n" for r in recs)
PY
printf 'quality: {keep_fraction: 0.5}\nlength: {min_words: 0}\ndedup: {near: off}\n' >"$T/q.yaml"
expect 78 "keep_fraction without a model" -- clean "$T/mix.jsonl" --out "$T/kept.jsonl" --config "$T/q.yaml"
has "$T/err" "keep_fraction needs a language model to score the records: --model DIR" "asks for --model"
expect 0 "ds-ft clean --model" -- clean "$T/mix.jsonl" --out "$T/kept.jsonl" --config "$T/q.yaml" --model "$T/scorer/merged" \
    --device cpu --report "$T/q.json"
has "$T/err" "clean: scoring with $T/scorer/merged on cpu" "says which model scores, where"
same <(grep -c '"text":"Question' "$T/kept.jsonl") "8" "the eight known questions kept"
same <(wc -l <"$T/kept.jsonl" | tr -d ' ') "8" "the eight gibberish records cut"
python3 - "$T/q.json" <<'PY' && ok "scores: every known question below every gibberish record" || fail "score histogram"
import json, sys
q = json.load(open(sys.argv[1]))["quality"]
assert q["scored"] == 16, q
bins = [b for b in q["score_histogram"] if b["records"]]
low = sum(b["records"] for b in bins if b["from"] < 4)
assert low == 8 and q["score_cut"] < 4, bins
PY
expect 64 "--model with keep_fraction 0" -- clean "$T/mix.jsonl" --out "$T/k0.jsonl" --model "$T/scorer/merged"
# ... and in a recipe, with clean.quality.model
expect 0 "a recipe with quality.keep_fraction" -- "$T/check.yaml" "${FAST[@]}" "data.datasets[0].path=$T/mix.jsonl" \
    data.datasets[0].type=text clean.quality.keep_fraction=0.5 "clean.quality.model=$T/scorer/merged" \
    clean.length.min_words=0 clean.dedup.near=off --overwrite
has "$T/run/train.log" "clean: scoring with $T/scorer/merged on cpu" "the run says which model scores"
has "$T/run/train.log" "16 records in, 8 kept (dropped: quality 8)" "the run keeps the best half"
same <(grep -c '"text":"Question' "$T/run/cache/train-0.clean.jsonl") "8" "... which are the known questions"
expect 0 "the same run again" -- "$T/check.yaml" "${FAST[@]}" "data.datasets[0].path=$T/mix.jsonl" \
    data.datasets[0].type=text clean.quality.keep_fraction=0.5 "clean.quality.model=$T/scorer/merged" \
    clean.length.min_words=0 clean.dedup.near=off --overwrite
has "$T/run/train.log" "16 records in, 8 kept (dropped: quality 8) (cached)" "the scored cleaning comes from the cache"
if grep -qF "scoring with" "$T/run/train.log"; then fail "a cached cleaning loaded the scorer"; else ok "... without loading the scorer"; fi

finish clean_recipe
