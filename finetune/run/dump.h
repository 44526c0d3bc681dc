/* finetune/run/dump.h - the engine's debugging window (ds-ft dump, tests). */
#ifndef DS_FINETUNE_DUMP_H
#define DS_FINETUNE_DUMP_H

#include <stdbool.h>

typedef struct {
    const char *model_dir;
    const char *adapter_dir;   /* may be NULL: base outputs only */
    const char *input;         /* safetensors with input_ids, labels, optional dpo.* */
    const char *out;           /* safetensors to write */
    const char *device;        /* auto | cpu | cuda (NULL = auto) */
    bool load_in_4bit;         /* quantize the model to NF4 while loading */
} dump_request;

int dump_run(const dump_request *r);

#endif
