#!/usr/bin/env bash
# Ctrl-C writes a checkpoint and exits 130; `--resume` then finishes the run,
# and every step's loss equals that of a run that was never interrupted.
# usage: resume.sh DSFT SHARED_DIR
set -euo pipefail
DSFT=$(realpath "$1")
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

common=(recipes/tiny.yaml train.max_steps=240 train.logging_steps=1 train.micro_batch_size=1
        train.gradient_accumulation_steps=2 adapter.lora_dropout=0.1 eval.datasets=[] save.merge=false
        save.every_steps=50 save.keep_last=2)
losses() { grep -o '"step":[0-9]*,"epoch":[^,]*,"loss":[^,]*' "$1" | sed 's/"epoch":[^,]*,//'; }

"$DSFT" "${common[@]}" output_dir="$tmp/a" >"$tmp/a.log" 2>&1 || { cat "$tmp/a.log"; fail "uninterrupted run"; }

"$DSFT" "${common[@]}" output_dir="$tmp/b" >"$tmp/b.log" 2>&1 &
pid=$!
for _ in $(seq 1 1200); do
  n=$(grep -c '"loss"' "$tmp/b/metrics.jsonl" 2>/dev/null || true)
  [ "${n:-0}" -ge 30 ] && break
  sleep 0.05
done
kill -INT "$pid"
set +e
wait "$pid"
rc=$?
set -e
[ "$rc" -eq 130 ] || { cat "$tmp/b.log"; fail "interrupted run exited $rc, expected 130"; }
grep -q "interrupted at step" "$tmp/b.log" || fail "no interruption message"
last=$(ls "$tmp/b/checkpoints" | sed 's/step-//' | sort -n | tail -1)
[ "$last" -ge 30 ] && [ "$last" -lt 240 ] || fail "checkpoint after Ctrl-C is step $last"
for f in adapter_config.json adapter_model.safetensors optimizer.safetensors trainer_state.json; do
  [ -s "$tmp/b/checkpoints/step-$last/$f" ] || fail "checkpoint step-$last lacks $f"
done
[ ! -e "$tmp/b/adapter" ] || fail "an interrupted run wrote a final adapter"
ls "$tmp/b/checkpoints" | grep -q tmp && fail "a temporary checkpoint folder was left behind"

# rows logged after the checkpoint (as a crash would leave them) are dropped on resume
echo '{"step":99999,"loss":1}' >> "$tmp/b/metrics.jsonl"
"$DSFT" train "${common[@]}" output_dir="$tmp/b" --resume >"$tmp/b2.log" 2>&1 || { cat "$tmp/b2.log"; fail "resume"; }
grep -q '"step":99999' "$tmp/b/metrics.jsonl" && fail "resume kept a row logged after the checkpoint"
grep -q "resume: from" "$tmp/b2.log" || fail "resume did not say where it started"
diff <(losses "$tmp/a/metrics.jsonl") <(losses "$tmp/b/metrics.jsonl") > "$tmp/diff" ||
  { head "$tmp/diff"; fail "per-step losses differ after resume"; }
[ "$(losses "$tmp/a/metrics.jsonl" | wc -l)" -eq 240 ] || fail "expected 240 logged steps"
cmp "$tmp/a/adapter/adapter_model.safetensors" "$tmp/b/adapter/adapter_model.safetensors" ||
  fail "final adapters differ"
echo "resume: interrupted at step $last, resumed, 240 identical losses and identical adapters"
