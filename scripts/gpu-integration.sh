#!/usr/bin/env bash
# Run on the GPU machine from the repository root (after scripts/device-pack.sh
# filled .device/ here): the whole model on the GPU against the fixtures,
# tiny.yaml on cuda against cpu, and the 7B benchmarks. Logs under $OUT.
#   STAGES="engine tiny bench dpo" (default: engine tiny hf bench dpo generate)
# Other stages: ranks (tests/cli/gpu_ranks.sh: one rank through NCCL against the
# plain run; 2 GPUs against 1 where there are 2), ops (the op suite alone), check (scripts/gpu-check.sh), fixtures
# (scripts/make_fixtures.py: the model-family reference fixtures, brought back in
# 15 MB pieces as $OUT/fixtures.tar.NN; FIXTURES_ONLY=name,name makes only those), ptx89 (the op and engine
# tests and the 7B benchmark of the PTX-only compute_89 build packed by PTX89_BUILD=DIR scripts/device-pack.sh:
# the sm_89 code path of an RTX 4090, compiled by the driver here), templates (scripts/make_template_cases.py
# with transformers), base (the benchmark with .device/bin/ds-ft-base, another
# build to compare with, when present).
# longctx (bench train of the 7B shape at 32K, 64K and 128K tokens with the layers' inputs offloaded, and 64K
# without; the engine stage's offload checks), profile (bench train of the 7B shape at micro-batch 4 with
# --profile: the step's time by op; not in the default stages).
# Model families: families (tests/gpu/test_gpu_families against the fixtures of
# tests/data/fixtures, DeepSeek's included), benchmoe (bench train of
# deepseek-v2-lite at micro-batch 1, 4, 8), hffam (scripts/hf_check_family.py on
# each dense family: PEFT loads ds-ft's adapters, merges load in transformers),
# benchfam (bench train of the R1-Distill shapes at micro-batch 1 and 4), hfmoe
# (three ds-ft training steps on each DeepSeek fixture, then
# scripts/hf_check_family.py with that adapter: PEFT on per-expert modules
# against `ds-ft dump`, and ds-ft merge against PEFT's merge_and_unload).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
logs=${OUT:-.device/logs}
mkdir -p "$logs"
DSFT="$PWD/.device/bin/ds-ft"
stages=${STAGES:-engine tiny hf bench dpo generate}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv > "$logs/env.txt" 2>&1
start=$SECONDS
for s in $stages; do
  t0=$SECONDS
  case $s in
    engine) timeout -k 5 200 .device/bin/test_gpu_engine --verbose > "$logs/engine.log" 2>&1
            echo "engine: exit $? $(grep Synthesis "$logs/engine.log" | sed 's/.*Synthesis: //')";;
    ops)    timeout -k 5 200 .device/bin/test_gpu_ops --jobs 8 > "$logs/ops.log" 2>&1
            echo "ops: exit $? $(grep Synthesis "$logs/ops.log" | sed 's/.*Synthesis: //')";;
    tiny)   mkdir -p "$logs/tiny"
            DSFT_KEEP="$logs/tiny" timeout -k 5 240 bash tests/cli/gpu_tiny.sh "$DSFT" "$DSFT_SHARED" > "$logs/tiny.log" 2>&1
            echo "tiny: exit $?"; tail -3 "$logs/tiny.log"
            cp "$logs/tiny/curves.txt" "$logs/tiny-curves.txt" 2>/dev/null;;
    ranks)  mkdir -p "$logs/ranks"
            DSFT_KEEP="$logs/ranks" timeout -k 5 400 bash tests/cli/gpu_ranks.sh "$DSFT" "$DSFT_SHARED" > "$logs/ranks.log" 2>&1
            echo "ranks: exit $?"; grep -E "FAIL|vs|skipped|checks" "$logs/ranks.log";;
    hf)     timeout -k 5 200 python3 scripts/hf_check.py --fixtures "$DSFT_SHARED/fixtures" --dsft "$DSFT" \
              --work "$logs/hf" --trained-adapter "$logs/tiny/cuda/adapter" --trained-base models/tiny > "$logs/hf.log" 2>&1
            echo "hf: exit $?"; grep -v Warning "$logs/hf.log" | tail -8;;
    check)  GPU_CHECK_BUDGET=${CHECK_BUDGET:-240} bash scripts/gpu-check.sh > "$logs/gpu-check.log" 2>&1
            echo "gpu-check: exit $?"; sed -n '/====/,$p' "$logs/gpu-check.log";;
    bench)  timeout -k 5 300 "$DSFT" bench train --shape deepseek-llm-7b --seq 2048 --targets q_proj,v_proj --rank 16 \
              --mem-limit-gib 22 --steps 4 --warmup 2 > "$logs/bench.log" 2>&1
            echo "bench: exit $?"; grep -v RESULT "$logs/bench.log";;
    fixtures) timeout -k 5 400 python3 scripts/make_fixtures.py --out /tmp/fixtures ${FIXTURES_ONLY:+--only $FIXTURES_ONLY} > "$logs/fixtures.log" 2>&1
            echo "fixtures: exit $?"; tail -12 "$logs/fixtures.log"
            [ -f /tmp/fixtures/fixtures.tar ] && split -b 15m -d /tmp/fixtures/fixtures.tar "$logs/fixtures.tar.";;
    ptx89)  if [ -x .device/ptx89/ds-ft ]; then
              timeout -k 5 200 .device/ptx89/test_gpu_ops --jobs 8 > "$logs/ptx89-ops.log" 2>&1
              echo "ptx89 ops: exit $? $(grep Synthesis "$logs/ptx89-ops.log" | sed 's/.*Synthesis: //')"
              timeout -k 5 200 .device/ptx89/test_gpu_engine > "$logs/ptx89-engine.log" 2>&1
              echo "ptx89 engine: exit $? $(grep Synthesis "$logs/ptx89-engine.log" | sed 's/.*Synthesis: //')"
              timeout -k 5 200 .device/ptx89/ds-ft bench train --shape deepseek-llm-7b --seq 2048 --batch 4 \
                --targets q_proj,v_proj --rank 16 --steps 4 --warmup 2 > "$logs/ptx89-bench.log" 2>&1
              echo "ptx89 bench: exit $?"; grep -v RESULT "$logs/ptx89-bench.log" | tail -2
            else
              echo "ptx89: no .device/ptx89 (pack with PTX89_BUILD=DIR)"
            fi;;
    templates) timeout -k 5 120 python3 scripts/make_template_cases.py --require-transformers \
              --out "$logs/template_cases.jsonl" > "$logs/templates.log" 2>&1
            echo "templates: exit $?"; tail -3 "$logs/templates.log";;
    base)   if [ -x .device/bin/ds-ft-base ]; then
              timeout -k 5 200 .device/bin/ds-ft-base bench train --shape deepseek-llm-7b --seq 2048 --batch 4 \
                --targets q_proj,v_proj --rank 16 --steps 4 --warmup 2 > "$logs/base.log" 2>&1
              echo "base: exit $?"; grep -v RESULT "$logs/base.log"
            fi;;
    families) timeout -k 5 300 .device/bin/test_gpu_families --verbose > "$logs/families.log" 2>&1
            echo "families: exit $? $(grep Synthesis "$logs/families.log" | sed 's/.*Synthesis: //')"
            grep -h "worst" "$logs/families.log" | sed 's/.*INFO\] //';;
    hffam)  for f in qwen2 qwen3 llama31 mistral llama-yarn; do
              timeout -k 5 120 python3 scripts/hf_check_family.py --fixture tests/data/fixtures/tiny-$f --dsft "$DSFT" \
                --work "$logs/hffam-$f" > "$logs/hffam-$f.log" 2>&1
              echo "hffam $f: exit $?"; grep -v Warning "$logs/hffam-$f.log" | tail -4
            done;;
    hfmoe)  for f in v2 v2-grouped v3 v3-halves; do
              fix=tests/data/fixtures/tiny-deepseek-$f
              "$DSFT" recipes/tiny-moe.yaml base_model=$fix output_dir="$logs/hfmoe-train-$f" train.max_steps=3 \
                save.merge=false quant.load_in_4bit=false eval.before_training=false data.sequence_len=64 \
                > "$logs/hfmoe-train-$f.log" 2>&1 || { echo "hfmoe $f: training failed"; continue; }
              timeout -k 5 150 python3 scripts/hf_check_family.py --fixture $fix --dsft "$DSFT" \
                --adapter "$logs/hfmoe-train-$f/adapter" --work "$logs/hfmoe-$f" > "$logs/hfmoe-$f.log" 2>&1
              echo "hfmoe $f: exit $?"; grep -E "^ok|^FAILED|merge rounded|hf_check_family" "$logs/hfmoe-$f.log"
            done;;
    benchfam) for shape in deepseek-r1-distill-qwen-7b deepseek-r1-distill-llama-8b deepseek-r1-distill-qwen-14b; do
              for mb in 1 4; do
                timeout -k 5 150 "$DSFT" bench train --shape $shape --seq 2048 --batch $mb --targets q_proj,v_proj \
                  --rank 16 --steps 4 --warmup 2 > "$logs/bench-$shape-$mb.log" 2>&1
                echo "bench $shape mb$mb: exit $?"; grep -v RESULT "$logs/bench-$shape-$mb.log" | tail -3
              done
            done;;
    benchmoe) for mb in 1 4 8; do   # DeepSeek-V2-Lite on random NF4 weights: MLA + 64 routed experts
              timeout -k 5 240 "$DSFT" bench train --shape deepseek-v2-lite --seq 2048 --batch $mb --steps 3 --warmup 1 \
                > "$logs/bench-v2-lite-$mb.log" 2>&1
              echo "bench deepseek-v2-lite mb$mb: exit $?"; grep -v RESULT "$logs/bench-v2-lite-$mb.log" | tail -2
            done;;
    dpo)    for pre in "" --precompute-ref; do   # the reference pass in each step, then computed once
              # shellcheck disable=SC2086
              timeout -k 5 150 "$DSFT" bench train --shape deepseek-llm-7b --seq 1024 --batch 2 --loss dpo \
                --targets q_proj,v_proj --rank 16 --steps 4 --warmup 2 $pre > "$logs/dpo$pre.log" 2>&1
              echo "dpo${pre:+ $pre}: exit $?"; grep -v RESULT "$logs/dpo$pre.log"
            done;;
    profile) timeout -k 5 120 "$DSFT" bench train --shape deepseek-llm-7b --seq 2048 --batch 4 --steps 2 --warmup 1 \
              --profile > "$logs/profile.log" 2>&1
            echo "profile: exit $?"; grep -vE "^(RESULT|PROFILE)" "$logs/profile.log";;
    longctx) # long rows, micro-batch 1: offloaded at 32K, 64K and 128K tokens, and 64K without offload (its cost)
            for run in "32768 on 1" "65536 on 1" "65536 off 0" "131072 on 0"; do
              # shellcheck disable=SC2086  # the three words of a run
              set -- $run
              timeout -k 5 400 "$DSFT" bench train --shape deepseek-llm-7b --seq $1 --batch 1 --offload $2 --steps 1 \
                --warmup $3 > "$logs/bench-long-$1-$2.log" 2>&1
              echo "bench seq $1 offload $2: exit $?"; grep -v RESULT "$logs/bench-long-$1-$2.log" | tail -2
            done
            grep -h "tokens, against\|tokens against" "$logs/engine.log" 2>/dev/null;;
    generate) timeout -k 5 200 .device/bin/test_gpu_generate --verbose > "$logs/generate.log" 2>&1
            echo "generate: exit $? $(grep Synthesis "$logs/generate.log" | sed 's/.*Synthesis: //')"
            grep GPUGENERATE "$logs/generate.log"
            for b in 1 8; do
              timeout -k 5 300 "$DSFT" bench generate --shape deepseek-llm-7b --batch $b --prompt-tokens 128 \
                --new-tokens 256 $([ $b = 1 ] && echo --check 64) > "$logs/bench-generate-$b.log" 2>&1
              echo "bench generate batch $b: exit $?"; grep -v RESULT "$logs/bench-generate-$b.log"
            done
            # the same decode with every op launched on its own: what recorded steps save
            timeout -k 5 200 "$DSFT" bench generate --shape deepseek-llm-7b --batch 1 --prompt-tokens 128 \
              --new-tokens 256 --plain > "$logs/bench-generate-plain.log" 2>&1
            echo "bench generate batch 1 --plain: exit $?"; grep -v RESULT "$logs/bench-generate-plain.log";;
  esac
  echo "  ($s: $((SECONDS - t0)) s)"
done
grep -h "FAIL\|Assert" "$logs"/engine.log 2>/dev/null | head -20
grep -h "relative error" "$logs"/engine.log 2>/dev/null | awk '{print $(NF)}' | sort -g | tail -1 | sed 's/^/engine: largest relative error logged /'
echo "elapsed $((SECONDS - start)) s"
