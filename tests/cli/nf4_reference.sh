#!/usr/bin/env bash
# scripts/nf4_ref.py (the NF4 of the model-family fixtures, scripts/make_fixtures.py)
# against what bitsandbytes itself wrote: every byte of the shared NF4 fixtures.
# usage: nf4_reference.sh DSFT SHARED_DIR
set -uo pipefail
DSFT=$(realpath "$1")
source "$(dirname "$0")/lib/checks.sh"
SHARED=$(realpath "$2")
cd "$(dirname "$0")/../.."

if python3 scripts/nf4_ref.py --self-test --shared "$SHARED" >"$T/out" 2>"$T/err"; then
    ok "nf4_ref.py quantizes as bitsandbytes does"
else
    fail "nf4_ref.py --self-test: $(grep -v ': same' "$T/out" | head -c 600) $(head -c 600 "$T/err")"
fi
has "$T/out" "tiny-llama-bnb-4bit: 14 quantized weights compared byte for byte" "every weight of tiny-llama-bnb-4bit compared"
finish nf4_reference
