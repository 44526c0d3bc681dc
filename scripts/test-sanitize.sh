#!/usr/bin/env bash
# The CPU test suite built with AddressSanitizer + UndefinedBehaviorSanitizer
# (build-asan/, -DDSFT_SANITIZE=ON): any memory error, leak or undefined behaviour
# in the libraries, the ds-ft command or the tests fails the test that hit it.
#
# usage: scripts/test-sanitize.sh           every Criterion suite and command-line test
#        scripts/test-sanitize.sh --ci      the subset CI runs within its time (below)
#        scripts/test-sanitize.sh -R REGEX  the tests ctest selects
# The full suite takes about 25 minutes on a 2-core machine (README, "Tests"); --ci
# leaves out the slowest tests, whose code the other tests run too.
set -euo pipefail
cd "$(dirname "$0")/.."

configured=$(sed -n 's/^DSFT_SHARED_DIR:PATH=//p' build/CMakeCache.txt 2>/dev/null || true)
shared=${DSFT_SHARED:-${configured:-$(realpath -m ../shared)}}
if [ ! -d "$shared/fixtures" ]; then
  echo "test-sanitize: no reference fixtures at $shared/fixtures; set DSFT_SHARED" >&2
  exit 66
fi

# The tests left out by --ci: long training runs and sweeps (each over a minute under the sanitizers;
# the code they run is the other tests' too: test_dist, test_engine_deepseek, test_clean_recipe, ...).
CI_EXCLUDE='^(test_train|cli_resume|cli_kill|cli_families_train|cli_clean_recipe|cli_moe_tiny|cli_ranks)$'
select=()
case "${1:-}" in
  --ci) select=(-E "$CI_EXCLUDE") ;;
  -R) select=(-R "$2") ;;
  "") ;;
  *) echo "usage: scripts/test-sanitize.sh [--ci | -R REGEX]" >&2; exit 64 ;;
esac

cmake -S . -B build-asan -DDSFT_CUDA=OFF -DDSFT_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDSFT_SHARED_DIR="$shared" >/dev/null
cmake --build build-asan -j"$(nproc)" >/dev/null

export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp   # the test framework's own leaks only
export DSFT_SHARED="$shared"
export KILL_EVERY=${KILL_EVERY:-60}   # the kill test under the sanitizers: every 60th point (tests/cli/kill.sh)
start=$(date +%s)
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" --timeout 1800 "${select[@]}"
echo "test-sanitize: passed in $(( $(date +%s) - start ))s"
