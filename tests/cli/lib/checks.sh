# tests/cli/lib/checks.sh - helpers the CLI test scripts source: a scratch folder
# $T removed on exit, counted failures, and checks of exit codes and output.
# The sourcing script sets DSFT first and ends with `finish NAME`.

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

# expect CODE DESCRIPTION -- ds-ft ARGS...: run, check the exit code; stdout in $T/out, stderr in $T/err.
expect() {
    local want=$1 what=$2
    shift 3
    "$DSFT" "$@" >"$T/out" 2>"$T/err"
    local got=$?
    if [ "$got" -eq "$want" ]; then ok "$what (exit $got)"; else fail "$what: exit $got, expected $want: $(cat "$T/err")"; fi
}

# same FILE TEXT DESCRIPTION: FILE holds exactly TEXT.
same() {
    if [ "$(cat "$1")" == "$2" ]; then ok "$3"; else fail "$3: got '$(head -c 600 "$1")', expected '$2'"; fi
}

# has FILE TEXT DESCRIPTION: FILE contains TEXT (fixed string).
has() {
    if grep -qF -- "$2" "$1"; then ok "$3"; else fail "$3: '$2' not in $(basename "$1"): $(head -c 600 "$1")"; fi
}

# nothing_at DIR: no output folder after a failure, and no temporary one beside it.
nothing_at() {
    if [ -e "$1" ]; then fail "$1 exists after a failure"; fi
    if ls -d "$1".tmp-* >/dev/null 2>&1; then fail "temporary folder left beside $1"; fi
}

# finish NAME: the summary line and the exit status.
finish() {
    if [ "$fails" -ne 0 ]; then
        echo "$1: $fails check(s) failed"
        exit 1
    fi
    echo "$1: all checks passed"
}
