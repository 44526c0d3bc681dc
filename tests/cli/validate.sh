#!/usr/bin/env bash
# tests/cli/validate.sh - `ds-ft validate` and the key list of `ds-ft --help`:
# the resolved recipe on stdout (and it validates to itself), alias notices on
# stderr, overrides, and the exit codes 0 / 64 / 66 / 78 with file:line: key
# in the message.
# usage: bash validate.sh PATH_TO_DSFT SHARED_DIR
set -uo pipefail

DSFT=${1:?usage: validate.sh PATH_TO_DSFT SHARED_DIR}
source "$(dirname "$0")/lib/checks.sh"
: "${2:?usage: validate.sh PATH_TO_DSFT SHARED_DIR}"
RECIPES="$(cd "$(dirname "$0")/../data/recipes" && pwd)"

# 1. A good recipe: resolved YAML on stdout, nothing on stderr, and that output validates to itself.
expect 0 "validate full.yaml" -- validate "$RECIPES/full.yaml"
has "$T/out" "learning_rate: 0.0002" "defaults and values are resolved"
has "$T/out" "adam_beta2: 0.999" "keys the recipe left out are written with their defaults"
has "$T/out" "    - type: forbidden_tokens" "penalties are written"
has "$T/out" "      ids: [13, 29871]" "the penalty's keys are written"
if [ -s "$T/err" ]; then fail "notices for a recipe without aliases: $(cat "$T/err")"; else ok "no notices"; fi
cp "$T/out" "$T/resolved.yaml"
expect 0 "validate the resolved recipe" -- validate "$T/resolved.yaml"
if cmp -s "$T/out" "$T/resolved.yaml"; then ok "the resolved recipe resolves to itself"; else fail "resolving twice differs"; fi

# 2. Overrides, a loss module's keys among them.
expect 0 "overrides" -- validate "$RECIPES/dpo.yaml" train.max_steps=20 loss.beta=0.5 \
    'adapter.lora_target_modules=[q_proj,k_proj]' 'data.datasets[0].limit=null' seed=3
has "$T/out" "max_steps: 20" "train.max_steps=20"
has "$T/out" "  beta: 0.5" "loss.beta=0.5"
has "$T/out" "lora_target_modules: [q_proj, k_proj]" "a list on the command line"
has "$T/out" "seed: 3" "seed=3"

# 3. Aliases: accepted, one notice each on stderr, stdout stays clean YAML.
expect 0 "aliases" -- validate "$RECIPES/aliases.yaml"
has "$T/err" "aliases.yaml:4: 'lora_rank' is read as adapter.lora_r" "the lora_rank notice names file:line"
has "$T/err" "'cutoff_len' is read as data.sequence_len" "the cutoff_len notice"
has "$T/out" "  lora_r: 8" "lora_rank sets adapter.lora_r"
has "$T/out" "  sequence_len: 512" "cutoff_len sets data.sequence_len"
if grep -q "is read as" "$T/out"; then fail "notices went to stdout"; else ok "notices only on stderr"; fi

# 4. Bad recipes: 78 with file:line: key: problem.
expect 78 "wrong type" -- validate "$RECIPES/bad_type.yaml"
has "$T/err" "bad_type.yaml:7: train.learning_rate: expected a number, got 'fast'" "wrong type names file:line:key"
if [ -s "$T/out" ]; then fail "output on stdout for a refused recipe"; else ok "nothing on stdout"; fi
expect 78 "unknown key" -- validate "$RECIPES/unknown_key.yaml"
has "$T/err" "unknown_key.yaml:6: train.learnig_rate: unknown key; did you mean 'learning_rate'?" "the suggestion"
expect 78 "YAML syntax error" -- validate "$RECIPES/bad_syntax.yaml"
has "$T/err" "bad_syntax.yaml:5: YAML syntax error" "the syntax error's line"
expect 78 "duplicate key" -- validate "$RECIPES/duplicate.yaml"
has "$T/err" "duplicate.yaml:8: train.learning_rate: duplicate key (first set on line 6)" "both lines"
expect 78 "unknown override" -- validate "$RECIPES/minimal.yaml" train.learnin_rate=1e-4
has "$T/err" "command line: train.learnin_rate: unknown key; did you mean 'learning_rate'?" "the override's suggestion"
expect 78 "unknown loss" -- validate "$RECIPES/minimal.yaml" loss.type=ppo
has "$T/err" "registered: sft, dpo" "the registered losses are listed"
expect 78 "dpo on text data" -- validate "$RECIPES/minimal.yaml" loss.type=dpo
has "$T/err" "minimal.yaml:7: data.datasets[0].type: loss dpo trains on preference pairs" "the paired-loss check"

# 5. Missing recipe 66; usage errors 64.
expect 66 "missing recipe" -- validate "$T/no-such.yaml"
has "$T/err" "no-such.yaml" "the missing file is named"
expect 64 "no recipe" -- validate
expect 64 "an argument that is not key=value" -- validate "$RECIPES/minimal.yaml" extra
expect 0 "validate --help" -- validate --help

# 6. ds-ft --help lists every key with its default and help, the loss modules' keys too.
expect 0 "--help" -- --help
has "$T/out" "train.learning_rate: 0.0002 - " "--help: train.learning_rate and its default"
has "$T/out" "loss.beta: 0.1 - " "--help: dpo's beta"
has "$T/out" "loss.penalties[].weight: 1.0 - " "--help: the penalty's weight"
has "$T/out" "adapter.lora_target_modules: [q_proj, v_proj] - " "--help: a list default"
has "$T/out" "lora_rank -> adapter.lora_r" "--help: the aliases"

finish validate.sh
