#!/usr/bin/env bash
# The kill test at every kill point (the test suite kills at every 10th): SIGKILL at each
# file-system call of train, merge, export, import and quantize onto fresh and existing
# outputs, each followed by a check of the output and a run to completion (tests/cli/kill.sh).
# usage: scripts/kill-sweep.sh [EVERY]     (about 40 minutes on a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/.."
configured=$(sed -n 's/^DSFT_SHARED_DIR:PATH=//p' build/CMakeCache.txt 2>/dev/null || true)
shared=${DSFT_SHARED:-${configured:-../shared}}
KILL_EVERY=${1:-1} exec bash tests/cli/kill.sh build/ds-ft "$shared"
