/* finetune/engine/model_quant.c - 4-bit weights for the model loader: a
 * bitsandbytes checkpoint's NF4 tensors as they are, or 16-bit weights
 * quantized while loading (quant/bnb.h does both bit-compatibly). */
#include "model_quant.h"

#include "core/mem.h"
#include "core/status.h"
#include "quant/bnb.h"

#include <stdlib.h>

int model_quant_check_config(const llama_model *m)
{
    bnb_config qc;
    return bnb_config_load(m->dir, &qc);
}

static int keep(model_linear *lin, nf4_tensor *t)
{
    if (t->view.rows != lin->out || t->view.cols != lin->in) {
        int rc = ds_fail(DS_EDATA, "4-bit weight is [%lld, %lld], the model expects [%d, %d]", (long long)t->view.rows,
                         (long long)t->view.cols, lin->out, lin->in);
        nf4_tensor_free(t);
        free(t);
        return rc;
    }
    lin->q = t->view;
    lin->q_owner = t;
    return DS_OK;
}

int model_quant_load(const llama_model *m, const char *weight_name, model_linear *lin)
{
    nf4_tensor *t = ds_calloc(1, sizeof *t, "a 4-bit weight");
    if (!t) return DS_ENOMEM;
    int rc = bnb_load_weight(m->st, weight_name, t);
    if (rc) {
        free(t);
        return ds_fail_context(rc, "%s: ", m->dir);
    }
    return keep(lin, t);
}

int model_quant_quantize(const llama_model *m, const char *weight_name, model_linear *lin, bool double_quant)
{
    nf4_tensor *t = ds_calloc(1, sizeof *t, "a 4-bit weight");
    if (!t) return DS_ENOMEM;
    int rc = bnb_weight_or_quantize(m->st, weight_name, double_quant, t);
    if (rc) {
        free(t);
        return ds_fail_context(rc, "%s: ", m->dir);
    }
    return keep(lin, t);
}

void model_quant_free(model_linear *lin)
{
    if (!lin->q_owner) return;
    nf4_tensor_free(lin->q_owner);
    free(lin->q_owner);
    lin->q_owner = NULL;
}

size_t model_quant_bytes(const model_linear *lin) { return lin->q_owner ? nf4_tensor_bytes(lin->q_owner) : 0; }
