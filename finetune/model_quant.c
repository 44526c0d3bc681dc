/* finetune/model_quant.c - 4-bit loading; filled in on top of quant/bnb.h. */
#include "model_quant.h"

#include "../core/status.h"

int model_quant_check_config(const llama_model *m)
{
    return ds_fail(DS_EINTERNAL, "%s: 4-bit checkpoints are not supported by this build yet", m->dir);
}

int model_quant_load(const llama_model *m, const char *weight_name, model_linear *lin)
{
    (void)lin;
    return ds_fail(DS_EINTERNAL, "%s: cannot load 4-bit '%s' yet", m->dir, weight_name);
}

int model_quant_quantize(const llama_model *m, const char *weight_name, model_linear *lin, bool double_quant)
{
    (void)lin; (void)double_quant;
    return ds_fail(DS_EINTERNAL, "%s: cannot quantize '%s' yet", m->dir, weight_name);
}

void model_quant_free(model_linear *lin) { (void)lin; }

size_t model_quant_bytes(const model_linear *lin) { (void)lin; return 0; }
