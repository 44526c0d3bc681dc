/* finetune/doctor/doctor_recipe.c - what a recipe's run would take: device
 * memory (the engine's own sizing, over the model's shapes) and one epoch of
 * its training data (tokenized and planned as the trainer does, or estimated
 * from the records' text before the tokenizer is downloaded). */
#include "doctor.h"

#include "core/status.h"
#include "data/jsonl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int memory_with(const model_config *cfg, const recipe *r, int micro_batch, bool offload, doctor_memory *out)
{
    memset(out, 0, sizeof *out);
    lora_config lc = {.r = (int)r->adapter.lora_r, .alpha = r->adapter.lora_alpha, .dropout = r->adapter.lora_dropout,
                      .use_rslora = r->adapter.use_rslora};
    int rc = lora_targets_parse(r->adapter.lora_target_modules.items, r->adapter.lora_target_modules.n, &lc.targets);
    lora_adapter *ad = NULL;
    if (!rc) rc = lora_create(cfg, &lc, "estimate", &ad);
    if (rc) return rc;
    engine_opts eo = {.max_B = micro_batch * (r->plan.paired ? 2 : 1), .max_T = r->plan.seq_len,
                      .checkpointing = r->train.gradient_checkpointing, .training = true, .adapter = ad,
                      .offload = offload, .keep_attention = r->train.keep_attention &&
                                                            !strcmp(r->train.keep_attention, "true"),
                      .keep_projections = r->train.keep_projections && !strcmp(r->train.keep_projections, "true")
                                              ? cfg->num_layers : 0};
    rc = engine_estimate(cfg, r->quant.load_in_4bit, BE_CUDA, &eo, &out->arenas);
    const engine_memory *m = &out->arenas;
    out->total = engine_memory_total(m) + DOCTOR_CUDA_OVERHEAD;
    lora_free(ad);
    return rc;
}

int doctor_memory_for(const model_config *cfg, const recipe *r, int micro_batch, doctor_memory *out)
{
    const char *key = r->train.offload_activations;
    return memory_with(cfg, r, micro_batch, key && !strcmp(key, "true"), out);
}

int doctor_memory_offloaded(const model_config *cfg, const recipe *r, int micro_batch, doctor_memory *out)
{
    return memory_with(cfg, r, micro_batch, true, out);
}

/* ---- an epoch, tokenized ---- */

/* Tokens of row `row` of the plan: its examples side by side (packing), a
 * pair's longer side for preference data. */
static double row_tokens(const epoch_plan *p, const dataset *d, int row)
{
    double n = 0;
    for (int k = p->row_start[row]; k < p->row_start[row + 1]; k++) {
        int i = p->items[k];
        if (d->kind == EX_PREF) {
            const pref_example *x = &d->pref[i];
            n += x->n_prompt + (x->n_chosen > x->n_rejected ? x->n_chosen : x->n_rejected);
        } else {
            n += d->sft[i].n;
        }
    }
    return n;
}

static void count_epoch(const epoch_plan *p, const dataset *train, int seq_len, int accum, doctor_epoch *out)
{
    int per_row = train->kind == EX_PREF ? 2 : 1;   /* a pair is two rows: chosen and rejected */
    for (int b = 0; b < p->nbatches; b++) {
        double longest = 0;
        for (int row = p->batch_start[b]; row < p->batch_start[b + 1]; row++) {
            double n = row_tokens(p, train, row);
            out->tokens += n * per_row;
            if (n > longest) longest = n;
        }
        if (longest > seq_len) longest = seq_len;
        out->computed += longest * per_row * (p->batch_start[b + 1] - p->batch_start[b]);
    }
    out->micro_batches = p->nbatches;
    out->steps = (long)ceil((double)p->nbatches / accum);
}

static int tokenized_epoch(const recipe *r, const tokenizer *tok, const data_options *opt, doctor_epoch *out)
{
    const run_plan *rp = &r->plan;
    dataset all, train, val;
    int rc = dataset_load(r->data.datasets, r->data.n_datasets, rp->paired ? EX_PREF : EX_SFT, tok, opt, &all);
    if (rc) return rc;
    rc = dataset_split(&all, r->data.val_set_size, (uint64_t)r->seed, &train, &val);
    epoch_plan p = {0};
    if (!rc) rc = epoch_plan_make(&train, (uint64_t)r->seed, 0, r->data.shuffle, rp->packing, rp->seq_len,
                                  rp->micro_batch, &p);
    if (!rc) {
        out->examples = train.n;
        out->tokenized = true;
        count_epoch(&p, &train, rp->seq_len, rp->accum, out);
        snprintf(out->basis, sizeof out->basis, "tokenized as the run would, %d examples held out for validation",
                 val.n);
    }
    epoch_plan_free(&p);
    dataset_free(&train);
    dataset_free(&val);
    dataset_free(&all);
    return rc;
}

/* ---- an epoch, estimated from the text ---- */

/* The bytes of text the records of one source give (what a record trains on
 * or is prompted with), and how many records, up to the source's limit. */
static int source_text(const data_source *s, double *bytes, long *records)
{
    jsonl_reader *rd;
    int rc = jsonl_open(s->path, 0, &rd);
    if (rc) return rc;
    for (long taken = 0; !rc && (s->limit <= 0 || taken < s->limit); taken++) {
        json_t *obj;
        int line;
        if ((rc = jsonl_next(rd, &obj, &line)) || !obj) break;
        ct_render text = {0};
        rc = dataset_record_text(s->type, obj, s->path, line, &text);
        for (int i = 0; !rc && i < text.n; i++) *bytes += text.p[i].len + 4;   /* + its label or separator */
        *bytes += 16;                                                       /* the prompt's scaffolding */
        (*records)++;
        ct_render_free(&text);
        json_decref(obj);
    }
    jsonl_close(rd);
    return rc;
}

static int text_epoch(const recipe *r, doctor_epoch *out)
{
    const run_plan *rp = &r->plan;
    double bytes = 0;
    long records = 0;
    for (int i = 0; i < r->data.n_datasets; i++) {
        int rc = source_text(&r->data.datasets[i], &bytes, &records);
        if (rc) return rc;
    }
    double v = r->data.val_set_size, held = v < 1 ? round(v * records) : v;
    double keep = records > 0 ? (records - held) / records : 0;
    out->examples = (long)(records - held);
    out->tokens = bytes / DOCTOR_BYTES_PER_TOKEN * keep * (rp->paired ? 2 : 1);
    out->computed = out->tokens;   /* rows full: packing; without it padding adds to this */
    double rows = rp->packing ? ceil(out->tokens / rp->seq_len) : out->examples;
    out->micro_batches = (long)ceil(rows / rp->micro_batch);
    out->steps = (long)ceil((double)out->micro_batches / rp->accum);
    snprintf(out->basis, sizeof out->basis, "estimated: %.1f MB of record text at %.0f bytes per token (the tokenizer "
             "is not there yet)%s", bytes / 1e6, DOCTOR_BYTES_PER_TOKEN,
             rp->packing ? "" : "; padding to each micro-batch's longest row not counted");
    return DS_OK;
}

int doctor_epoch_for(const recipe *r, const tokenizer *tok, void (*say)(void *, const char *), void *say_ctx,
                     doctor_epoch *out)
{
    memset(out, 0, sizeof *out);
    if (!tok) return text_epoch(r, out);
    data_options opt = r->plan.data;
    opt.say = say;
    opt.say_ctx = say_ctx;
    return tokenized_epoch(r, tok, &opt, out);
}
