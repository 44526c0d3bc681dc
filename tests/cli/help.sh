#!/usr/bin/env bash
# `ds-ft CMD --help` for every command and benchmark: exit 0, the usage, and
# every option with a default and a help line: every option its usage line
# names, and every option README's "Commands" gives the command. An unknown
# option is exit 64 naming it.
# usage: help.sh DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "$1")
source "$(dirname "$0")/lib/checks.sh"
cd "$(dirname "$0")/../.."

"$DSFT" --help > "$T/main"
commands=$(sed -n 's/^       ds-ft \([a-z]*\) .*/\1/p' "$T/main" | grep -v '^--' | sort -u)
[ "$(echo "$commands" | wc -w)" -ge 15 ] && ok "ds-ft --help lists $(echo "$commands" | wc -w) commands" || fail "ds-ft --help lists: $commands"
"$DSFT" bench --help > "$T/bench"
benches=$(sed -n 's/^  ds-ft bench \([a-z]*\).*/\1/p' "$T/bench")
[ "$(echo "$benches" | wc -w)" -eq 5 ] && ok "bench --help lists train, tokenize, kernels, clean, generate" || fail "bench --help lists: $benches"

# README's Commands block: the options each command line gives
awk '/^## Commands/ {on = 1; next} /^Exit codes/ {on = 0} on' README.md > "$T/readme"

check_help() {   # check_help NAME...: the command's help
  local name="$*"
  "$DSFT" "$@" --help > "$T/h" 2> "$T/herr"
  local rc=$?
  [ $rc -eq 0 ] && ok "$name --help (exit 0)" || { fail "$name --help: exit $rc: $(cat "$T/herr")"; return; }
  has "$T/h" "usage: ds-ft $name" "$name --help: the usage"
  # every option of the usage line has its line with a help text and a default
  for opt in $(head -1 "$T/h" | grep -o -- '--[a-z0-9][a-z0-9-]*' | sort -u); do
    if grep -qE -- "^  $opt( |$)" "$T/h" && grep -A1 -E -- "^  $opt( |$)" "$T/h" | grep -qE '\((default: [^)]*|required)\)'; then
      ok "$name --help: $opt with its help and default"
    else
      fail "$name --help: no option line with a default for $opt"
    fi
  done
  # every option README gives the command (bench: its benchmarks, each checked on its own)
  [ "$name" == "bench" ] || for opt in $(awk -v c="    ds-ft $name " 'index($0, c) == 1 {on = 1; print; next} /^    ds-ft / {on = 0} on' "$T/readme" \
               | grep -o -- '--[a-z0-9][a-z0-9-]*' | grep -vx -- '--help' | sort -u); do
    grep -qE -- "^  $opt( |$)" "$T/h" && ok "$name --help: README's $opt" || fail "$name --help lacks README's $opt"
  done
  "$DSFT" "$@" -h > "$T/h2" 2>&1 && cmp -s "$T/h" "$T/h2" && ok "$name -h is --help" || fail "$name -h differs from --help"
  "$DSFT" "$@" --no-such-option > /dev/null 2> "$T/herr"
  rc=$?
  [ $rc -eq 64 ] && grep -qF -- "--no-such-option" "$T/herr" && ok "$name: an unknown option is exit 64 naming it" \
    || fail "$name --no-such-option: exit $rc: $(cat "$T/herr")"
}
for c in $commands; do check_help "$c"; done
for b in $benches; do check_help bench "$b"; done

# --help after other arguments, and the recipe keys in train's help
expect 0 "--help after other options" -- merge --model models/tiny --help
has "$T/out" "usage: ds-ft merge" "the help, not a run"
expect 0 "train --help" -- train --help
has "$T/out" "train.learning_rate" "train --help lists the recipe keys"
expect 0 "clean --help" -- clean --help
has "$T/out" "dedup.near" "clean --help lists the config keys"
expect 64 "a value out of range names the option" -- generate --model models/tiny --prompt x --top-p 2
has "$T/err" "--top-p takes a number from" "the message names --top-p"
expect 64 "a choice not among the choices" -- merge --model models/tiny --adapter a --out b --source best
has "$T/err" "--source takes dequantized|original, not 'best'" "the message lists the choices"
expect 64 "an option given twice" -- generate --model models/tiny --prompt x --prompt y
has "$T/err" "--prompt given twice" "the message names it"

finish help
