/* finetune/run/context.c - the run context: backend, tokenizer, model, adapter
 * and engine, opened in one order and closed in the reverse (see run.h). */
#include "run.h"

#include "core/status.h"

#include <string.h>

static int open_backend(be_kind k, backend **be)
{
    return k == BE_AUTO ? be_open_auto(be) : be_open(k, be);
}

int ds_run_open(const ds_run_opts *o, ds_run *r)
{
    memset(r, 0, sizeof *r);
    int rc = o->no_backend ? DS_OK : open_backend(o->device, &r->be);
    if (!rc && !o->no_tokenizer) rc = tok_load(o->tokenizer_dir ? o->tokenizer_dir : o->model_dir, &r->tok);
    model_load_opts lo = {.load_in_4bit = o->load_in_4bit, .double_quant = o->double_quant};
    if (!rc) rc = model_load(o->model_dir, &lo, &r->model);
    if (!rc && r->tok) tok_set_default_ids(r->tok, r->model->cfg.bos_id, r->model->cfg.eos_id, r->model->cfg.pad_id);
    if (!rc && o->adapter_dir) {
        rc = lora_load_peft(o->adapter_dir, &r->model->cfg, &r->adapter);
    } else if (!rc && o->new_adapter) {
        rc = lora_create(&r->model->cfg, o->new_adapter, o->model_name ? o->model_name : o->model_dir, &r->adapter);
        if (!rc) lora_init(r->adapter, o->adapter_seed);
    }
    if (rc) ds_run_close(r);
    return rc;
}

int ds_run_start(ds_run *r, const engine_opts *eo)
{
    if (!r->be) return ds_fail(DS_EINTERNAL, "ds_run_start: the run was opened without a backend");
    engine_opts o = *eo;
    o.adapter = r->adapter;
    return engine_create(r->be, r->model, &o, &r->eng);
}

void ds_run_close(ds_run *r)
{
    engine_free(r->eng);
    lora_free(r->adapter);
    model_free(r->model);
    tok_free(r->tok);
    be_close(r->be);
    memset(r, 0, sizeof *r);
}
