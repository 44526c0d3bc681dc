#!/usr/bin/env bash
# SIGKILL at every file-system call that touches an output: train (with
# checkpoint pruning, evaluation and merge), merge, export, quantize and import,
# each onto a fresh output and onto an existing one (--overwrite / --force).
# After each kill the output must hold the old state or the new one, complete
# (never a mix, never nothing where something was), and the same command run
# again must finish with the result of a run never killed, leaving no debris.
#
# usage: kill.sh DSFT SHARED_DIR
#   KILL_EVERY=N   kill at every Nth point only (the test suite: 10; scripts/kill-sweep.sh: 1)
#   KILL_ONLY=RE   only the sweeps whose label matches the extended regex RE ("^train", "force")
# A kill point is one call (openat, write, rename, unlink, mkdir, rmdir, fsync,
# ftruncate, ...) on a path or descriptor under the output; strace stops the
# process at the call's entry with SIGKILL (-e inject=CALL:signal=KILL:when=K).
set -uo pipefail
DSFT=$(realpath "$1")
source "$(dirname "$0")/lib/checks.sh"
cd "$(dirname "$0")/../.."
FIX="$(realpath "$2")/fixtures"
EVERY=${KILL_EVERY:-10}
export OMP_NUM_THREADS=1
if ! command -v strace >/dev/null; then
  echo "kill: strace is not installed (scripts/setup.sh installs it)"
  exit 1
fi
CALLS=openat,creat,write,pwrite64,writev,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,rmdir,fsync,fdatasync,ftruncate,truncate
total_points=0
total_bad=0

# kill_points OUT CMD...: "CALL K" for each call of CMD that touches OUT (the K-th call of that name).
kill_points() {
    local out=$1
    shift
    strace -f -qq -y -s 0 -o "$T/trace" -e trace=$CALLS -- "$@" >/dev/null 2>&1
    awk -v out="$out" '
        { line = $0; sub(/^[0-9]+ +/, "", line); name = line; sub(/\(.*/, "", name)
          if (name !~ /^[a-z0-9_]+$/) next
          n[name]++
          if (index(line, out) > 0) print name, n[name] }' "$T/trace"
}

# sweep LABEL SETUP CHECK RECOVER -- CMD...: for every EVERY-th kill point of CMD, run SETUP
# (lays out the starting state), CMD killed there, CHECK (the state after the kill), RECOVER
# (the command again, to completion) and the debris check.
sweep() {
    local label=$1 setup=$2 check=$3 recover=$4
    shift 5
    [[ $label =~ ${KILL_ONLY:-.} ]] || return 0
    "$setup"
    kill_points "$OUT" "$@" >"$T/points"
    local n
    n=$(wc -l <"$T/points")
    [ "$n" -gt 0 ] || { fail "$label: no kill points found"; return; }
    local i=0 run=0 bad=0 call k
    while read -r call k; do
        i=$((i + 1))
        [ $(((i - 1) % EVERY)) -eq 0 ] || continue
        run=$((run + 1))
        "$setup"
        (strace -f -qq -o /dev/null -e trace="$call" -e inject="$call":signal=KILL:when="$k" -- "$@"; true) >/dev/null 2>&1
        if ! "$check" >"$T/why" 2>&1; then
            bad=$((bad + 1)); fail "$label: killed at $call #$k: $(head -c 400 "$T/why")"; continue
        fi
        if ! "$recover" >"$T/why" 2>&1; then
            bad=$((bad + 1)); fail "$label: after a kill at $call #$k, running again: $(head -c 400 "$T/why")"; continue
        fi
        local debris
        debris=$(find "$(dirname "$OUT")" -regextype posix-extended -regex '.*\.(tmp|old|del)-[0-9]+' | head -3)
        if [ -n "$debris" ]; then
            bad=$((bad + 1)); fail "$label: after a kill at $call #$k and a run to completion, debris is left: $debris"
        fi
    done <"$T/points"
    total_points=$((total_points + run))
    total_bad=$((total_bad + bad))
    echo "kill: $label: $n kill points, $run killed (every $EVERY), $bad bad outcomes"
}

# same_tree A B: the two folders (or files) hold the same names and bytes.
same_tree() { diff -r "$1" "$2" >/dev/null 2>&1; }
# old_or_new: $OUT is absent (only where nothing was there), the old state, or the new one.
old_or_new() {
    if [ ! -e "$OUT" ]; then [ -z "$OLD" ] && return 0; echo "$OUT is gone"; return 1; fi
    [ -n "$OLD" ] && same_tree "$OUT" "$OLD" && return 0
    same_tree "$OUT" "$NEW" && return 0
    echo "$OUT is neither the old output nor the new one: $(diff -rq "$OUT" "${OLD:-$NEW}" 2>&1 | head -3)"
    return 1
}

W=$T/w
mkdir -p "$W"

# ---------------------------------------------------------------- train
train_args=(recipes/tiny.yaml device=cpu train.max_steps=3 train.logging_steps=2 save.every_steps=1 save.keep_last=1
            "eval.datasets=[{path: data/tiny/eval.jsonl, type: mcq, mcq_format: cloze}]" eval.limit=4 save.merge=true)
"$DSFT" train "${train_args[@]}" output_dir="$W/train-new" >/dev/null 2>&1 || fail "train: the reference run failed"
"$DSFT" train "${train_args[@]}" seed=7 output_dir="$W/train-old" >/dev/null 2>&1 || fail "train: the earlier run failed"

# A run's folder after a kill: every checkpoint under its final name complete; adapter/
# and merged/ the earlier run's or the new run's, whole.
train_state_ok() {
    local c
    for c in "$OUT"/checkpoints/step-*; do
        [ -e "$c" ] || continue
        [[ $c =~ step-[0-9]+$ ]] || continue
        for f in checkpoint.complete trainer_state.json optimizer.safetensors adapter_model.safetensors adapter_config.json; do
            [ -s "$c/$f" ] || { echo "$c lacks $f"; return 1; }
        done
    done
    local part
    for part in adapter merged; do
        [ -e "$OUT/$part" ] || continue
        same_tree "$OUT/$part" "$W/train-new/$part" && continue
        [ -n "$OLD" ] && same_tree "$OUT/$part" "$OLD/$part" && continue
        echo "$OUT/$part is neither the earlier run's nor the new one's"
        return 1
    done
}
# Running again: --resume where a complete checkpoint is, else the whole run (--overwrite);
# either way the final adapter is the never-killed run's, bit for bit.
train_again() {
    if ls "$OUT"/checkpoints/step-*/checkpoint.complete >/dev/null 2>&1 && [ -z "$OLD" ]; then
        "$DSFT" train "${train_args[@]}" output_dir="$OUT" --resume >"$T/again" 2>&1
    else
        "$DSFT" train "${train_args[@]}" output_dir="$OUT" --overwrite >"$T/again" 2>&1
    fi || { tail -2 "$T/again"; return 1; }
    cmp "$OUT/adapter/adapter_model.safetensors" "$W/train-new/adapter/adapter_model.safetensors" ||
        { echo "the adapter differs from a run never killed"; return 1; }
    same_tree "$OUT/merged" "$W/train-new/merged" || { echo "merged/ differs from a run never killed"; return 1; }
}
OUT=$W/run/out
fresh_train() { rm -rf "$W/run"; mkdir -p "$W/run"; OLD=; }
existing_train() { rm -rf "$W/run"; mkdir -p "$W/run"; cp -a "$W/train-old" "$OUT"; OLD=$W/train-old; }
sweep "train (fresh)" fresh_train train_state_ok train_again -- "$DSFT" train "${train_args[@]}" output_dir="$OUT"
sweep "train --overwrite" existing_train train_state_ok train_again -- "$DSFT" train "${train_args[@]}" output_dir="$OUT" --overwrite

# ---------------------------------------------------------------- merge, export, import, quantize
ADAPTER=$W/train-new/adapter
"$DSFT" merge --model models/tiny --adapter "$ADAPTER" --out "$W/merge-new" >/dev/null 2>&1 || fail "merge: reference"
"$DSFT" merge --model models/tiny --adapter "$ADAPTER" --out "$W/merge-old" --source original >/dev/null 2>&1 ||
    fail "merge: the earlier output"
"$DSFT" export --adapter "$ADAPTER" --out "$W/export-new.dsft" >/dev/null 2>&1 || fail "export: reference"
"$DSFT" export --adapter "$FIX/tiny-llama/adapter" --out "$W/export-old.dsft" >/dev/null 2>&1 || fail "export: the earlier output"
"$DSFT" import --in "$W/export-new.dsft" --out "$W/import-new" >/dev/null 2>&1 || fail "import: reference"
"$DSFT" import --in "$W/export-old.dsft" --out "$W/import-old" >/dev/null 2>&1 || fail "import: the earlier output"
"$DSFT" quantize --model models/tiny --out "$W/quantize-new" >/dev/null 2>&1 || fail "quantize: reference"
"$DSFT" quantize --model "$FIX/tiny-llama" --out "$W/quantize-old" >/dev/null 2>&1 || fail "quantize: the earlier output"

# one_output NAME CMD...: fresh and --force sweeps of a command writing one output $OUT.
one_output() {
    local name=$1
    shift
    NEW=$W/$name-new
    OUT=$W/one/$name-out
    [[ $name == export ]] && { NEW=$W/export-new.dsft; OUT=$W/one/out.dsft; }
    local old=$W/$name-old
    [[ $name == export ]] && old=$W/export-old.dsft
    fresh_one() { rm -rf "$W/one"; mkdir -p "$W/one"; OLD=; }
    existing_one() { rm -rf "$W/one"; mkdir -p "$W/one"; cp -a "$OLD_SRC" "$OUT"; OLD=$OLD_SRC; }
    again_one() {
        "${CMD[@]}" --force >"$T/again" 2>&1 || { tail -2 "$T/again"; return 1; }
        same_tree "$OUT" "$NEW" || { echo "the output differs from a run never killed"; return 1; }
    }
    OLD_SRC=$old
    CMD=("$@" --out "$OUT")
    sweep "$name (fresh)" fresh_one old_or_new again_one -- "${CMD[@]}"
    sweep "$name --force" existing_one old_or_new again_one -- "${CMD[@]}" --force
}
one_output merge "$DSFT" merge --model models/tiny --adapter "$ADAPTER"
one_output export "$DSFT" export --adapter "$ADAPTER"
one_output import "$DSFT" import --in "$W/export-new.dsft"
one_output quantize "$DSFT" quantize --model models/tiny

echo "kill: $total_points kills in all, $total_bad bad outcomes"
finish kill
