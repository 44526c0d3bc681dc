#!/usr/bin/env bash
# tests/cli/generate.sh - `ds-ft generate` with the key/value cache and `ds-ft bench generate`:
# the cache gives the text of --recompute (16-bit, 4-bit, an adapter, a sliding window), --prompts
# batches give what each prompt gives alone, top-k 1 is greedy, stop strings cut the text,
# --chat wraps the prompt in the model's chat template and is a conversation on a terminal,
# the speeds go to stderr; refusals exit 64 naming the option.
# usage: bash generate.sh PATH_TO_DSFT SHARED_DIR
set -uo pipefail

DSFT=$(realpath "${1:?usage: generate.sh PATH_TO_DSFT SHARED_DIR}")
source "$(dirname "$0")/lib/checks.sh"
cd "$(dirname "$0")/../.."
FIX=tests/data/fixtures
P="The patient was given a dose of"

# 1. The cache against the full recompute, text for text.
while read -r what args; do
    expect 0 "$what: with the cache" -- generate $args --prompt "$P" --max-new-tokens 24 --device cpu
    cp "$T/out" "$T/cached"
    has "$T/err" "tokens/s decoding (cpu)" "$what: the speed on stderr"
    expect 0 "$what: --recompute" -- generate $args --prompt "$P" --max-new-tokens 24 --device cpu --recompute
    if cmp -s "$T/out" "$T/cached"; then ok "$what: the same text"; else fail "$what: cached '$(cat "$T/cached")' != recomputed '$(cat "$T/out")'"; fi
done <<EOF_CASES
tiny --model models/tiny
tiny-4bit --model models/tiny --4bit
qwen2+adapter --model $FIX/tiny-qwen2 --adapter $FIX/tiny-qwen2/adapter
mistral-window+adapter-4bit --model $FIX/tiny-mistral --adapter $FIX/tiny-mistral/adapter --4bit
qwen3-sampled --model $FIX/tiny-qwen3 --temperature 0.9 --top-k 40 --top-p 0.9 --min-p 0.05 --repetition-penalty 1.3 --seed 5
EOF_CASES

# 2. --prompts: one JSON line per prompt, each what the prompt gives alone.
printf 'Hello\n%s\n\nA rash and fever in a child\n' "$P" > "$T/prompts.txt"
expect 0 "--prompts" -- generate --model $FIX/tiny-qwen2 --adapter $FIX/tiny-qwen2/adapter --prompts "$T/prompts.txt" --max-new-tokens 12 --batch-size 2 --device cpu
cp "$T/out" "$T/batch"
[ "$(wc -l < "$T/batch")" -eq 3 ] && ok "three results (the empty line skipped)" || fail "results: $(cat "$T/batch")"
n=0
while IFS= read -r prompt; do
    [ -z "$prompt" ] && continue
    n=$((n + 1))
    "$DSFT" generate --model $FIX/tiny-qwen2 --adapter $FIX/tiny-qwen2/adapter --prompt "$prompt" --max-new-tokens 12 --device cpu > "$T/one" 2>/dev/null
    want=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()[len(sys.argv[2]):-1], ensure_ascii=True))' "$T/one" "$prompt")
    got=$(sed -n "${n}p" "$T/batch" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(json.dumps(r["completion"], ensure_ascii=True)) if r["prompt"] == sys.argv[1] else print("wrong prompt")' "$prompt")
    [ "$got" == "$want" ] && ok "prompt $n: batched equals alone" || fail "prompt $n: batched $got, alone $want"
done < "$T/prompts.txt"

# sampled: the same draws whatever the batch size, and the first prompt's as --prompt draws it
for bs in 1 3; do
    expect 0 "--prompts sampled, batch size $bs" -- generate --model models/tiny --prompts "$T/prompts.txt" --max-new-tokens 10 --temperature 1 --top-p 0.95 --seed 4 --batch-size $bs --device cpu
    cp "$T/out" "$T/sampled$bs"
done
cmp -s "$T/sampled1" "$T/sampled3" && ok "sampled results do not depend on the batch size" || fail "batch size 1: $(cat "$T/sampled1"), 3: $(cat "$T/sampled3")"
expect 0 "the first prompt alone, sampled" -- generate --model models/tiny --prompt Hello --max-new-tokens 10 --temperature 1 --top-p 0.95 --seed 4 --device cpu
want=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()[len("Hello"):-1]))' "$T/out")
got=$(head -1 "$T/sampled3" | python3 -c 'import json,sys; print(json.dumps(json.loads(sys.stdin.read())["completion"]))')
[ "$got" == "$want" ] && ok "--prompt draws what the first line of a file draws" || fail "first line $got, alone $want"

# 3. top-k 1 samples what greedy picks; a stop string cuts the text before it.
expect 0 "greedy" -- generate --model models/tiny --prompt "$P" --max-new-tokens 30 --device cpu
cp "$T/out" "$T/greedy"
expect 0 "top-k 1 at temperature 1.5" -- generate --model models/tiny --prompt "$P" --max-new-tokens 30 --temperature 1.5 --top-k 1 --seed 9 --device cpu
cmp -s "$T/out" "$T/greedy" && ok "top-k 1 is greedy" || fail "top-k 1: '$(cat "$T/out")' vs '$(cat "$T/greedy")'"
stop=$(python3 -c 'import sys; t=open(sys.argv[1]).read()[len(sys.argv[2]):-1]; print(t[len(t)//2:len(t)//2+3])' "$T/greedy" "$P")
expect 0 "--stop" -- generate --model models/tiny --prompt "$P" --max-new-tokens 30 --stop "zzz-not-there" "$stop" --device cpu
want=$(python3 -c 'import sys; t=open(sys.argv[1]).read()[:-1]; print(t[:t.index(sys.argv[2], len(sys.argv[3]))])' "$T/greedy" "$stop" "$P")
same "$T/out" "$want" "the text ends before the stop string '$stop'"

# 4. --chat: the model's chat template (which writes BOS itself); a conversation on a terminal.
M=$T/chat-model
mkdir -p "$M" && cp models/tiny/* "$M"/
printf '%s' '{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}
{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}' > "$M/chat_template.jinja"
expect 64 "--chat on a model without a chat template" -- generate --model models/tiny --chat --prompt hi --device cpu
has "$T/err" "no chat template" "the message says so"
expect 0 "--chat --prompt" -- generate --model "$M" --chat --prompt "Hello there" --max-new-tokens 8 --device cpu
cp "$T/out" "$T/chat1"
expect 0 "the same rendered by hand, no template" -- generate --model "$M" --prompt "user: Hello there
assistant:" --max-new-tokens 8 --device cpu
python3 -c 'import sys; a=open(sys.argv[1]).read(); b=open(sys.argv[2]).read(); sys.exit(0 if b.endswith(a) else 1)' "$T/chat1" "$T/out" \
    && ok "--chat continues the template's rendering" || fail "--chat '$(cat "$T/chat1")' vs '$(cat "$T/out")'"
expect 64 "--chat without a prompt off a terminal" -- generate --model "$M" --chat --device cpu < /dev/null
has "$T/err" "terminal" "the message says it needs a terminal"
if command -v script >/dev/null; then
    printf 'Hello\nAnd again\n\n' | timeout 120 script -qec "'$DSFT' generate --model '$M' --chat --max-new-tokens 6 --device cpu" /dev/null > "$T/tty" 2>&1
    [ "$(grep -c 'tokens/s decoding' "$T/tty")" -eq 2 ] && ok "a conversation of two turns on a terminal" || fail "conversation: $(cat "$T/tty")"
else
    echo "skip: no script(1) to give generate --chat a terminal"
fi

# 5. Refusals.
expect 64 "--prompt and --prompts" -- generate --model models/tiny --prompt x --prompts "$T/prompts.txt"
expect 64 "no prompt" -- generate --model models/tiny
expect 64 "--recompute with --prompts" -- generate --model models/tiny --prompts "$T/prompts.txt" --recompute
expect 64 "--top-k negative" -- generate --model models/tiny --prompt x --top-k -1
expect 64 "--min-p over 1" -- generate --model models/tiny --prompt x --min-p 2
expect 64 "--context past the model's positions" -- generate --model models/tiny --prompt x --context 100000 --device cpu
has "$T/err" "512" "the message gives the model's positions"

# 6. The benchmark.
expect 0 "bench generate" -- bench generate --model models/tiny --prompt-tokens 32 --new-tokens 16 --batch 2 --device cpu
has "$T/out" '"decode_tokens_per_s"' "a RESULT line with decode tokens/s"
has "$T/out" "prefill: 64 tokens" "prefill of 2 x 32 tokens"
expect 0 "bench generate --check on random NF4 weights" -- bench generate --shape tiny --prompt-tokens 16 --new-tokens 8 --check 24 --device cpu
has "$T/out" "24 of 24 greedy tokens with the cache equal the full recompute's" "the cache agrees with the recompute"

finish generate
