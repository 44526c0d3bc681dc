#!/usr/bin/env bash
# The training report: a short run of the tiny recipe writes report.html,
# run_info.json and TensorBoard events; `ds-ft report` rewrites the page and
# compares two runs; the documented exit codes; and the page renders in
# headless Chromium (Debian's chromium, installed here when missing and we are
# root) to a screenshot that is not blank and shows the plots.
# usage: report.sh DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "$1")
source "$(dirname "$0")/lib/checks.sh"
LIB=$(realpath "$(dirname "$0")/lib")
cd "$(dirname "$0")/../.."

short="train.max_steps=6 train.logging_steps=1 save.every_steps=3 save.merge=false eval.limit=16"
# shellcheck disable=SC2086
expect 0 "a short tiny run" -- recipes/tiny.yaml output_dir="$T/a" $short train.tensorboard=true
has "$T/a/train.log" "report: $T/a/report.html" "the run says where its report is"
has "$T/a/report.html" "<h1>ds-ft training report</h1>" "the run writes report.html"
has "$T/a/run_info.json" '"state": "finished"' "run_info.json says the run finished"
has "$T/a/run_info.json" '"eval before"' "run_info.json times the evaluation before training"
has "$T/a/eval/eval.json" '"prompt"' "the eval file stores each question's prompt"
if ls "$T/a/tensorboard/"events.out.tfevents.* >/dev/null 2>&1; then ok "train.tensorboard writes an event file"
else fail "no event file in $T/a/tensorboard"; fi
# shellcheck disable=SC2086
expect 0 "a second run with another learning rate" -- recipes/tiny.yaml output_dir="$T/b" $short train.learning_rate=1e-3
if ls "$T/b/tensorboard" >/dev/null 2>&1; then fail "tensorboard events without train.tensorboard"; fi

# A checkpoint writes the report too: a run killed after its first checkpoint leaves one.
"$DSFT" recipes/tiny.yaml output_dir="$T/c" train.max_steps=400 save.every_steps=2 eval.before_training=false \
    save.merge=false >/dev/null 2>&1 &
pid=$!
# Both files are written by rename, run_info.json first: wait for the page too.
for _ in $(seq 600); do [ -e "$T/c/run_info.json" ] && [ -e "$T/c/report.html" ] && break; sleep 0.1; done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
has "$T/c/run_info.json" '"state": "running"' "a checkpoint writes run_info.json"
has "$T/c/report.html" "</html>" "a checkpoint writes a whole report.html"
expect 0 "report of the killed run" -- report "$T/c"

rm "$T/a/report.html"
expect 0 "report rewrites a run's page" -- report "$T/a"
has "$T/err" "report: $T/a/report.html (1 run)" "it says where"
[ -s "$T/a/report.html" ] && ok "report.html is back" || fail "no $T/a/report.html"
expect 0 "report compares two runs" -- report "$T/a" "$T/b" --out "$T/compare.html"
has "$T/compare.html" 'data-label="a loss (raw)"' "run a is on the loss plot"
has "$T/compare.html" 'data-label="b loss (raw)"' "run b is on the same plot"
has "$T/compare.html" "<th>train.learning_rate</th>" "the recipe difference is listed"
echo "my notes" > "$T/notes.html"
expect 73 "report onto a file that is not a report" -- report "$T/a" --out "$T/notes.html"
same "$T/notes.html" "my notes" "the file is left as it was"
expect 0 "report onto it with --force" -- report "$T/a" --out "$T/notes.html" --force
expect 0 "report onto an earlier report" -- report "$T/a" "$T/b" --out "$T/compare.html"
expect 0 "report --help" -- report --help
has "$T/out" "usage: ds-ft report RUN_DIR" "report --help shows the usage"
expect 64 "report without a folder" -- report
expect 64 "report with an unknown option" -- report "$T/a" --bogus
expect 66 "report of a missing folder" -- report "$T/none"
mkdir -p "$T/bad" && printf '{"step":1,"loss":1}\n{"step":2,\n{"step":3,"loss":1}\n' > "$T/bad/metrics.jsonl"
expect 65 "report of a malformed metrics.jsonl" -- report "$T/bad"
has "$T/err" "metrics.jsonl:2" "the message names the file and line"
[ -e "$T/bad/report.html" ] && fail "a page was written for a bad run folder"

# The page in a real browser.
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the rendering check"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >"$T/apt.log" 2>&1 ||
        { apt-get update >>"$T/apt.log" 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >>"$T/apt.log" 2>&1; }
    browser=$(command -v chromium || true)
fi
if [ -z "$browser" ]; then
    echo "SKIP: the page was not rendered: no chromium, and it cannot be installed here (not root or no apt-get)"
elif ! command -v python3 >/dev/null; then
    echo "SKIP: the screenshot was not checked: no python3"
else
    timeout 180 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$(mktemp -d -p "$T")" \
        --screenshot="$T/shot.png" --window-size=1280,2000 "file://$T/a/report.html" >"$T/chromium.log" 2>&1
    if [ ! -s "$T/shot.png" ]; then
        fail "chromium wrote no screenshot: $(tail -5 "$T/chromium.log")"
    else
        stats=$(python3 "$LIB/png_stats.py" "$T/shot.png")
        echo "screenshot: $stats"
        read -r _ w _ h _ colours _ share _ blue <<<"$stats"
        [ "$w" = 1280 ] && [ "$h" = 2000 ] && ok "a 1280x2000 screenshot" || fail "screenshot is ${w}x${h}"
        [ "$colours" -ge 50 ] && ok "$colours distinct colours (text, plots)" || fail "only $colours colours: blank?"
        awk "BEGIN{exit !($share > 0.05)}" && ok "$share of the pixels differ from the background" ||
            fail "only $share of the pixels differ from the background: blank?"
        [ "$blue" -ge 1000 ] && ok "$blue pixels of the series colour in the top half: the plots are drawn" ||
            fail "only $blue pixels of the series colour: the SVG plots did not render"
    fi
fi
finish report
