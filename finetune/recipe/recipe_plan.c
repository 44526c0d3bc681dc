/* finetune/recipe/recipe_plan.c - the recipe resolved into a typed run plan:
 * the one place where counts become ints, choice strings become enums and the
 * rows of a micro-batch are derived (see run_plan in recipe.h). */
#include "recipe_internal.h"

#include "core/status.h"

#include <string.h>

static int parse_lr(const char *s, lr_kind *out)
{
    if (!strcmp(s, "constant")) *out = LR_CONSTANT;
    else if (!strcmp(s, "linear")) *out = LR_LINEAR;
    else if (!strcmp(s, "cosine")) *out = LR_COSINE;
    else return ds_fail(DS_ECONFIG, "train.lr_scheduler: '%s' is not cosine, linear or constant", s);
    return DS_OK;
}

int recipe_make_plan(recipe *r)
{
    run_plan *p = &r->plan;
    memset(p, 0, sizeof *p);
    int rc = be_kind_parse(r->device, &p->device) ? ds_fail(DS_ECONFIG, "device: '%s' is not auto, cpu or cuda", r->device)
                                                 : DS_OK;
    if (!rc) rc = parse_lr(r->train.lr_scheduler, &p->lr_scheduler);
    if (!rc && merge_source_parse(r->save.merge_source, &p->merge_source))
        rc = ds_fail(DS_ECONFIG, "save.merge_source: '%s' is not dequantized or original", r->save.merge_source);
    if (rc) return ds_fail_context(rc, "%s: ", r->file);
    const loss_module *main = r->loss.main.module;
    p->seq_len = (int)r->data.sequence_len;
    p->micro_batch = (int)r->train.micro_batch_size;
    p->paired = main && (main->needs & LOSS_PAIRED);
    p->needs_ref = main && (main->needs & LOSS_NEEDS_REF);
    p->rows = p->micro_batch * (p->paired ? 2 : 1);
    p->accum = (int)r->train.gradient_accumulation_steps;
    p->packing = r->data.sample_packing && !p->paired;
    p->eval_rows = (int)r->eval.batch_size;
    p->data = (data_options){.chat_template = r->data.chat_template,
                             .template_dir = r->tokenizer ? r->tokenizer : r->base_model, .sequence_len = p->seq_len,
                             .train_on_inputs = r->data.train_on_inputs, .skip_bad_lines = r->data.skip_bad_lines};
    return DS_OK;
}
