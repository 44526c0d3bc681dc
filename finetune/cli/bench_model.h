/* finetune/cli/bench_model.h - models of a known shape with random weights, for
 * benchmarks: no files needed. The linear layers are random NF4 (double
 * quantization), everything else random bf16. */
#ifndef DS_FINETUNE_BENCH_MODEL_H
#define DS_FINETUNE_BENCH_MODEL_H

#include "finetune/engine/model.h"

/* Built-in shapes by name ("deepseek-llm-7b", "deepseek-coder-1.3b", "tiny"),
 * or a model folder's config.json. */
int bench_shape(const char *name, model_config *cfg);
/* A model of that shape with random weights (free with bench_model_free). */
int bench_model_make(const model_config *cfg, uint64_t seed, llama_model **out);
void bench_model_free(llama_model *m);
/* Names of the built-in shapes, for messages. */
const char *bench_shape_names(void);

#endif
