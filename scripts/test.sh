#!/usr/bin/env bash
# Run every test: the Criterion suites and CLI tests (ctest; GPU tests skip
# where there is no GPU), the suite again under ASan + UBSan (a subset, see
# below) and each fuzz target for a bounded time.
# Expects ./build from scripts/setup.sh. FUZZ_SECONDS (default 30) bounds each fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."

# The reference fixtures the tests compare with: $DSFT_SHARED, else the folder
# the build was configured with (DSFT_SHARED_DIR, by default ../shared).
configured=$(sed -n 's/^DSFT_SHARED_DIR:PATH=//p' build/CMakeCache.txt 2>/dev/null || true)
shared=${DSFT_SHARED:-${configured:-../shared}}
if [ ! -d "$shared/fixtures" ]; then
  echo "test: no reference fixtures at $shared/fixtures; put shared/ beside the checkout or set DSFT_SHARED" >&2
  exit 66
fi

# The layout rules of docs/DEVELOPING.md: file sizes, private headers, include cycles.
python3 scripts/check-layout.py

ctest --test-dir build --output-on-failure -j"$(nproc)"

# The same suite under ASan + UBSan, less its longest runs (scripts/test-sanitize.sh --ci;
# SANITIZE=full runs them all, SANITIZE=0 none).
case "${SANITIZE:-ci}" in
  0) echo "sanitizers: not run (SANITIZE=0)" ;;
  full) DSFT_SHARED="$shared" scripts/test-sanitize.sh ;;
  *) DSFT_SHARED="$shared" scripts/test-sanitize.sh --ci ;;
esac

if command -v clang >/dev/null 2>&1; then
  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DDSFT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-fuzz -j"$(nproc)"
  for f in build-fuzz/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f")
    corpus="fuzz/corpus/${name#fuzz_}"
    work=$(mktemp -d)
    [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
    echo "fuzz: $name for ${FUZZ_SECONDS:-30}s"
    "$f" -max_total_time="${FUZZ_SECONDS:-30}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$work" \
      > "build-fuzz/$name.log" 2>&1 || { tail -40 "build-fuzz/$name.log"; echo "fuzz: $name FAILED"; exit 1; }
    grep -E "^stat::number_of_executed_units" "build-fuzz/$name.log" || true
    rm -rf "$work"
  done
else
  echo "fuzz: clang not installed, fuzz targets not run" >&2
  exit 1
fi
echo "all tests passed"
