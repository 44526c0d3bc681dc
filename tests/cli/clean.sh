#!/usr/bin/env bash
# tests/cli/clean.sh - `ds-ft clean`: the kept records and the report on data with
# planted duplicates and PII, folders and .zst in and out, --eval, the exit codes
# 64 (usage), 65 (a bad line, file:line), 66 (missing input), 73 (an existing output)
# and 78 (a bad config key, file:line: key), --force, token lengths with a real tokenizer,
# --help listing the defaults, and `ds-ft bench clean` on a small corpus.
# usage: bash clean.sh PATH_TO_DSFT SHARED_DIR
set -uo pipefail

DSFT=${1:?usage: clean.sh PATH_TO_DSFT SHARED_DIR}
source "$(dirname "$0")/lib/checks.sh"

# 1. alpaca records: an exact duplicate (case and punctuation), PII, an empty output.
mkdir -p "$T/in"
cat >"$T/in/a.jsonl" <<'EOF'
{"instruction": "What is a normal resting heart rate?", "output": "Between 60 and 100 beats per minute in adults; e-mail nurse.joy@clinic.example.org with questions."}
{"instruction": "What is a normal resting heart rate?", "output": "BETWEEN 60 and 100 beats per minute in adults, e-mail nurse.joy@clinic.example.org with questions!"}
{"instruction": "First-line drug for type 2 diabetes?", "output": "Metformin 500 mg twice daily, titrated to 1000 mg twice daily; BP 120/80 mmHg and Na 140 mmol/L are fine."}
{"instruction": "Say nothing.", "output": ""}
EOF
printf '{"instruction": "Call whom?", "output": "Call the clinic on (415) 555-0132 or +44 20 7946 0958 for an appointment."}\n' \
    | zstd -q -o "$T/in/b.jsonl.zst"
expect 0 "clean a folder (a.jsonl, b.jsonl.zst)" -- clean "$T/in" --out "$T/out.jsonl" --report "$T/report.json"
same <(wc -l <"$T/out.jsonl" | tr -d ' ') "3" "three records kept"
has "$T/out.jsonl" '"output":"Between 60 and 100 beats per minute in adults; e-mail <EMAIL> with questions."' "e-mail masked"
has "$T/out.jsonl" 'Call the clinic on <PHONE> or <PHONE> for' "phones masked"
has "$T/out.jsonl" 'BP 120/80 mmHg and Na 140 mmol/L' "clinical numbers left alone"
has "$T/err" "exact_duplicate         1 dropped" "the summary counts the duplicate"
has "$T/err" "empty                   1 dropped" "and the empty output"
python3 - "$T/report.json" <<'PY' && ok "report: clusters, PII counts, inputs" || fail "report content"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["records_in"] == 5 and r["records_out"] == 3, r
c = r["duplicates"]["exact"][0]
assert c["kept"] == 1 and c["dropped"] == [2] and c["dropped_at"][0].endswith("a.jsonl:2"), c
assert r["pii"]["email"]["found"] == 2 and r["pii"]["phone"]["found"] == 2, r["pii"]
assert [i["type"] for i in r["inputs"]] == ["alpaca", "alpaca"]
assert sum(b["records"] for b in r["length_histogram"]["bins"]) == 5
PY

# 2. An existing output: 73 and untouched; --force replaces it.
echo "keep" >"$T/exists.jsonl"
expect 73 "an existing --out" -- clean "$T/in/a.jsonl" --out "$T/exists.jsonl"
has "$T/err" "exists; pass --force to replace it" "the message says --force"
same "$T/exists.jsonl" "keep" "the existing file is untouched"
expect 73 "an existing --report" -- clean "$T/in/a.jsonl" --out "$T/new.jsonl" --report "$T/report.json"
expect 0 "--force" -- clean "$T/in/a.jsonl" --out "$T/exists.jsonl" --force
same <(wc -l <"$T/exists.jsonl" | tr -d ' ') "2" "replaced with the kept records"

# 3. .zst output reads back as the same records.
expect 0 "--out FILE.zst" -- clean "$T/in/a.jsonl" --out "$T/out.jsonl.zst"
if zstd -dcq "$T/out.jsonl.zst" | cmp -s - "$T/exists.jsonl"; then ok "zstd output"; else fail "zstd output differs"; fi

# 4. Bad input: a malformed line (65, file:line) unless --skip-bad-lines; missing input (66); usage (64).
printf '{"text": "one two three four five six seven eight nine ten eleven"}\n{"text": "broken\n' >"$T/bad.jsonl"
expect 65 "a malformed line" -- clean "$T/bad.jsonl" --out "$T/o1.jsonl"
has "$T/err" "bad.jsonl:2" "the message names file:line"
nothing_at "$T/o1.jsonl"
expect 0 "--skip-bad-lines" -- clean "$T/bad.jsonl" --out "$T/o1.jsonl" --skip-bad-lines
has "$T/err" "malformed               1 dropped" "the skipped line is counted"
printf '{"instruction": "x"}\n' >"$T/nofield.jsonl"
expect 65 "a record without its field" -- clean "$T/nofield.jsonl" --out "$T/o2.jsonl" --type alpaca
has "$T/err" 'nofield.jsonl:1: missing field "output"' "names the field"
printf '{"foo": "bar"}\n' >"$T/unknown.jsonl"
expect 65 "a record of no known type" -- clean "$T/unknown.jsonl" --out "$T/o3.jsonl"
has "$T/err" "pass --type" "says to pass --type"
expect 66 "a missing input" -- clean "$T/nowhere.jsonl" --out "$T/o4.jsonl"
expect 64 "no --out" -- clean "$T/in/a.jsonl"
expect 64 "an unknown option" -- clean "$T/in/a.jsonl" --out "$T/o5.jsonl" --bogus
expect 78 "an unknown --type" -- clean "$T/in/a.jsonl" --out "$T/o5.jsonl" --type recipe

# 5. Config: a bad key is refused with file:line: key; a good one applies.
printf 'dedup:\n  exact: false\n  simlarity: 0.95\n' >"$T/bad.yaml"
expect 78 "an unknown config key" -- clean "$T/in/a.jsonl" --out "$T/o6.jsonl" --config "$T/bad.yaml"
has "$T/err" "bad.yaml:3: clean.dedup.simlarity: unknown key" "file:line: key"
printf 'dedup:\n  exact: false\n  near: off\npii:\n  email: drop\n' >"$T/good.yaml"
expect 0 "a config" -- clean "$T/in/a.jsonl" --out "$T/o6.jsonl" --config "$T/good.yaml"
has "$T/err" "pii                     2 dropped" "pii: drop drops both e-mail records"
printf 'quality:\n  keep_fraction: 0.8\n' >"$T/quality.yaml"
expect 78 "keep_fraction without a model" -- clean "$T/in/a.jsonl" --out "$T/o7.jsonl" --config "$T/quality.yaml"
has "$T/err" "keep_fraction needs a language model to score the records: --model DIR" "says why"

# 6. Contamination: an eval item's 13 words inside a training record.
printf '{"question": "Which drug is first line for type 2 diabetes in adults with normal kidney function and no contraindications?", "choices": ["Metformin", "Insulin"], "answer": 0}\n' >"$T/eval.jsonl"
printf '{"text": "Quiz: which drug is first line for type 2 diabetes in adults with normal kidney function? Metformin."}\n{"text": "Aspirin inhibits cyclooxygenase and reduces platelet aggregation for several days after a dose."}\n' >"$T/train.jsonl"
expect 0 "--eval (warn)" -- clean "$T/train.jsonl" --out "$T/o8.jsonl" --eval "$T/eval.jsonl" --report "$T/contam.json"
has "$T/err" "contamination: 1 records share a 13-word span" "the summary warns"
has "$T/contam.json" '"ngram": "which drug is first line for type 2 diabetes in adults with normal"' "the example shows the words"

# 7. Token lengths, with the DeepSeek-V3 tokenizer of the shared folder (outputs of 14, 5 and 9 tokens).
SHARED=${2:?usage: clean.sh PATH_TO_DSFT SHARED_DIR}
cat >"$T/tok.jsonl" <<'EOF'
{"instruction": "Which drug?", "output": "Metformin is the usual first line drug for type 2 diabetes."}
{"instruction": "Which drug?", "output": "Metformin, usually."}
{"instruction": "Which drug for pain?", "output": "Paracetamol first, then ibuprofen."}
EOF
printf 'length:\n  min_tokens: 6\n  max_tokens: 13\n' >"$T/tokens.yaml"
expect 78 "token limits without a tokenizer" -- clean "$T/tok.jsonl" --out "$T/o9.jsonl" --config "$T/tokens.yaml"
has "$T/err" "need a tokenizer" "says so"
expect 0 "token limits" -- clean "$T/tok.jsonl" --out "$T/o9.jsonl" --config "$T/tokens.yaml" \
    --tokenizer "$SHARED/tokenizers/deepseek_v3"
has "$T/err" "length                  2 dropped (max_tokens 1, min_tokens 1)" "one too long, one too short"
has "$T/o9.jsonl" "Paracetamol" "the one in range is kept"

# 8. --help lists the options and the defaults.
expect 0 "clean --help" -- clean --help
has "$T/out" "dedup.similarity: 0.9" "the similarity default"
has "$T/out" "pii.email: mask" "the PII defaults"
has "$T/out" "--force" "the options"

# 9. The benchmark on a small corpus.
expect 0 "bench clean --mb 2" -- bench clean --mb 2
has "$T/out" "MB/s per core" "reports the rate"
has "$T/out" "peak resident" "and the memory"

finish clean
