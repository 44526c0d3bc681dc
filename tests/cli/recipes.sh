#!/usr/bin/env bash
# Every shipped recipe validates, and the generators reproduce the shipped
# tiny model and data byte for byte.
# usage: recipes.sh DSFT SHARED_DIR
set -euo pipefail
DSFT=$(realpath "$1")
bindir=$(dirname "$DSFT")
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in recipes/*.yaml; do
  "$DSFT" validate "$r" > "$tmp/resolved.yaml" || { echo "FAIL: $r does not validate"; exit 1; }
  "$DSFT" validate "$tmp/resolved.yaml" > /dev/null || { echo "FAIL: resolved $r does not validate"; exit 1; }
done
"$bindir/make_tiny_model" "$tmp/model"
"$bindir/make_tiny_data" "$tmp/data"
for f in config.json generation_config.json model.safetensors; do
  cmp "$tmp/model/$f" "models/tiny/$f" || { echo "FAIL: make_tiny_model does not reproduce models/tiny/$f"; exit 1; }
done
for f in train.jsonl eval.jsonl dpo.jsonl; do
  cmp "$tmp/data/$f" "data/tiny/$f" || { echo "FAIL: make_tiny_data does not reproduce data/tiny/$f"; exit 1; }
done
echo "recipes: all validate; tiny model and data reproduced by their generators"
