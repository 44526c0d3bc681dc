/* finetune/run/dump_internal.h - pieces of ds-ft dump shared by dump.c and dump_dpo.c. */
#ifndef DS_FINETUNE_DUMP_INTERNAL_H
#define DS_FINETUNE_DUMP_INTERNAL_H

#include "finetune/engine/engine.h"

#include "data/safetensors.h"

double dump_mean_nll(const batch *b, const float *logprob);
/* SFT coefficients for a batch (a = 1/n, b = -1/n on rows with a target). */
int dump_sft_coefs(const batch *b, const float *logprob, float *a, float *bc);
int dump_adapter_tensors(st_writer *w, const char *prefix, const lora_adapter *ad, const float *block);
/* Rows chosen_0, rejected_0, chosen_1, ... from dpo.chosen_ids / dpo.rejected_ids / dpo.prompt_len. */
int dump_dpo_batch(const st_file *in, const char *path, batch *out);
int dump_dpo(engine *e, const st_file *in, const batch *pairs, const lora_adapter *ad, st_writer *w);

#endif
