#!/usr/bin/env bash
# tests/cli/tokenize.sh - `ds-ft tokenize`: ids as JSON for --text and for
# every record of --jsonl (checked against the ids transformers wrote in
# fixtures/tiny-llama/tokenizer-cases.jsonl), --special, and the exit codes
# 64 (usage), 65 (a bad record, with file:line), 66 (missing input).
# usage: bash tokenize.sh PATH_TO_DSFT SHARED_DIR
set -uo pipefail

DSFT=${1:?usage: tokenize.sh PATH_TO_DSFT SHARED_DIR}
source "$(dirname "$0")/lib/checks.sh"
SHARED=${2:?usage: tokenize.sh PATH_TO_DSFT SHARED_DIR}
TINY="$SHARED/fixtures/tiny-llama"
DEEPSEEK="$SHARED/tokenizers/deepseek_v3"

# 1. --text, without and with special tokens (ids from tokenizer-deepseek_v3.jsonl).
expect 0 "--text" -- tokenize --tokenizer "$DEEPSEEK" --text "Hello world"
same "$T/out" "[19923, 2058]" "ids of 'Hello world'"
expect 0 "--text --special" -- tokenize --tokenizer "$DEEPSEEK" --text "Hello world" --special
same "$T/out" "[0, 19923, 2058]" "BOS with --special"
expect 0 "--text ''" -- tokenize --tokenizer "$DEEPSEEK" --text ""
same "$T/out" "[]" "the empty text"

# 2. --jsonl over the reference cases: one line per record, the ids transformers wrote.
CASES="$TINY/tokenizer-cases.jsonl"
python3 - "$CASES" "$T" <<'EOF'
import json, sys
cases = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
with open(sys.argv[2] + "/want.txt", "w") as f:
    f.write("".join(json.dumps(c["ids"]) + "\n" for c in cases))
with open(sys.argv[2] + "/want_special.txt", "w") as f:
    f.write("".join(json.dumps(c["ids_with_special"]) + "\n" for c in cases))
EOF
expect 0 "--jsonl" -- tokenize --tokenizer "$TINY" --jsonl "$CASES"
if cmp -s "$T/out" "$T/want.txt"; then ok "every record's ids match transformers"; else fail "ids differ: $(diff "$T/out" "$T/want.txt" | head -5)"; fi
expect 0 "--jsonl --special" -- tokenize --tokenizer "$TINY" --jsonl "$CASES" --special
if cmp -s "$T/out" "$T/want_special.txt"; then ok "ids with special tokens match"; else fail "ids differ: $(diff "$T/out" "$T/want_special.txt" | head -5)"; fi

# 3. A bad record: exit 65, file:line in the message, the good lines before it printed.
printf '{"text": "Hello world"}\n\n{"text": 42}\n{"text": "never reached"}\n' >"$T/bad.jsonl"
expect 65 "a record whose text is not a string" -- tokenize --tokenizer "$DEEPSEEK" --jsonl "$T/bad.jsonl"
has "$T/err" "bad.jsonl:3:" "the message names file:line"
same "$T/out" "[19923, 2058]" "records before the bad one were printed"
printf '{"text": "ok"}\n{"text": "broken\n' >"$T/broken.jsonl"
expect 65 "a line that is not JSON" -- tokenize --tokenizer "$DEEPSEEK" --jsonl "$T/broken.jsonl"
has "$T/err" "broken.jsonl:2" "the message names file:line"
printf '{"txt": "x"}\n' >"$T/nofield.jsonl"
expect 65 "a record without text" -- tokenize --tokenizer "$DEEPSEEK" --jsonl "$T/nofield.jsonl"
has "$T/err" "nofield.jsonl:1:" "the message names file:line"

# 4. Usage and missing input.
expect 64 "no input" -- tokenize --tokenizer "$DEEPSEEK"
expect 64 "both inputs" -- tokenize --tokenizer "$DEEPSEEK" --text a --jsonl "$T/bad.jsonl"
expect 64 "no --tokenizer" -- tokenize --text a
expect 64 "an unknown argument" -- tokenize --tokenizer "$DEEPSEEK" --text a --bogus
expect 66 "a missing tokenizer folder" -- tokenize --tokenizer "$T/nowhere" --text a
has "$T/err" "nowhere" "the message names the folder"
expect 66 "a missing --jsonl file" -- tokenize --tokenizer "$DEEPSEEK" --jsonl "$T/nowhere.jsonl"

# 5. A broken tokenizer.json: 65 naming the file.
mkdir -p "$T/badtok"
echo '{"model": {"type": "WordPiece", "vocab": {}}}' >"$T/badtok/tokenizer.json"
expect 65 "an unsupported model" -- tokenize --tokenizer "$T/badtok" --text a
has "$T/err" "WordPiece" "the message names the model type"

# 6. The benchmark runs and reports its figures.
expect 0 "bench tokenize" -- bench tokenize --tokenizer "$TINY" --mb 0.25
has "$T/out" "MB/s" "it reports MB/s"
has "$T/out" "tokens/s" "it reports tokens/s"
expect 64 "bench tokenize --mb junk" -- bench tokenize --tokenizer "$TINY" --mb junk

finish tokenize.sh
