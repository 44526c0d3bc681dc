/* data/model_config_internal.h - what model_config.c and model_rope.c share. */
#ifndef DS_DATA_MODEL_CONFIG_INTERNAL_H
#define DS_DATA_MODEL_CONFIG_INTERNAL_H

#include "model_config.h"

/* An integer key in [lo, 2^30]; absent -> *out unchanged unless required. */
int model_config_get_int(json_t *root, const char *path, const char *key, bool required, int lo, int *out);
/* rope_theta and rope_scaling / rope_parameters into c->rope (model_rope.c). */
int model_rope_parse(json_t *root, const char *path, model_config *c);

/* The DeepSeek-V2/V3 keys into c->ds (model_config_deepseek.c), after the common ones. */
int model_deepseek_parse(json_t *root, const char *path, model_config *c);

#endif
