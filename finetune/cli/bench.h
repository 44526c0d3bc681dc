/* finetune/cli/bench.h - `ds-ft bench WHAT ...`: benchmarks, not tests. Each
 * one's options are its cli_spec (commands.h). */
#ifndef DS_FINETUNE_BENCH_H
#define DS_FINETUNE_BENCH_H

#include "commands.h"

/* ds-ft bench train [--shape deepseek-llm-7b|deepseek-coder-1.3b|DIR] [--seq N] [--batch N] ...
 * QLoRA training steps on random NF4 weights: tokens/s, step time, peak memory. */
int bench_train(int argc, char **argv);
/* ds-ft bench tokenize --tokenizer DIR [--mb N]: single-thread encoding MB/s. */
int bench_tokenize(int argc, char **argv);
/* ds-ft bench kernels: the GPU kernels alone at the 7B shapes. */
int bench_kernels(int argc, char **argv);
/* ds-ft bench clean [--mb N] [--keep]: dedup + filters on a synthetic corpus, MB/s per core and peak memory. */
int bench_clean(int argc, char **argv);
/* ds-ft bench generate [--model DIR [--4bit] | --shape NAME] [--prompt-tokens N] [--new-tokens N] [--batch N]:
 * generation with a key/value cache, prefill and decode tokens/s. */
int bench_generate(int argc, char **argv);
extern const cli_spec BENCH_TRAIN_SPEC, BENCH_TOKENIZE_SPEC, BENCH_KERNELS_SPEC, BENCH_CLEAN_SPEC, BENCH_GENERATE_SPEC;

#endif
