/* finetune/train/run_setup.c - everything a run loads before its first step:
 * device, tokenizer, loss modules, model, data, adapter, engine, schedule,
 * and (on --resume) the newest checkpoint. */
#include "run.h"

#include "core/clock.h"
#include "core/files.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The loss modules' view of the tokenizer: plain text, no special tokens. */
static int encode_plain(void *tok, const char *text, int32_t **ids, size_t *n)
{
    tok_ids v = {0};
    int rc = tok_encode(tok, text, strlen(text), false, &v);
    *ids = v.ids;
    *n = v.n;
    return rc;
}

static int prepare_loss(run *x, const recipe_loss *l, const char *where)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s:%d: %s", x->r->file, l->line, where);
    loss_env env = {.vocab_size = x->model->cfg.vocab_size, .encode = encode_plain, .tok = x->tok, .where = buf};
    int rc = l->module->prepare ? l->module->prepare(l->cfg, &env) : DS_OK;
    if (rc) return rc;
    if (l->module->needs & LOSS_NEEDS_FORBIDDEN) {
        if (x->forbidden_owner)
            return ds_fail(DS_ECONFIG, "%s: only one forbidden-token penalty per recipe", buf);
        x->forbidden_owner = l->module;
        const int32_t *ids;
        int n;
        l->module->forbidden_ids(l->cfg, &ids, &n);
        return engine_set_forbidden(x->eng, ids, n);
    }
    return DS_OK;
}

/* "data/medmcqa_val.jsonl.zst" -> "medmcqa_val" */
static char *dataset_name(const char *path)
{
    const char *base = strrchr(path, '/');
    char *name = strdup(base ? base + 1 : path);
    const char *exts[] = {".zst", ".jsonl", ".json"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(name), e = strlen(exts[i]);
        if (n > e && !strcmp(name + n - e, exts[i])) name[n - e] = '\0';
    }
    return name;
}

static data_options data_opts(const recipe *r)
{
    data_options o = {.chat_template = r->data.chat_template, .sequence_len = (int)r->data.sequence_len,
                      .train_on_inputs = r->data.train_on_inputs, .skip_bad_lines = r->data.skip_bad_lines};
    return o;
}

static int load_data(run *x)
{
    const recipe *r = x->r;
    data_options opt = data_opts(r);
    char *cache_dir = ds_path_join(r->output_dir, "cache");
    int rc = ds_mkdirs(cache_dir);
    char *path = ds_path_join(cache_dir, "train.tokens");
    bool hit = false;
    if (!rc) rc = dataset_load_cached(path, r->data.datasets, r->data.n_datasets, x->paired ? EX_PREF : EX_SFT, x->tok,
                                      &opt, &x->all, &hit);
    free(path);
    if (!rc) {
        tlog_say(&x->log, "data: %d %s examples%s (%ld truncated to %d tokens, %ld without trained tokens dropped, "
                          "%ld bad lines skipped)", x->all.n, x->paired ? "preference" : "training",
                 hit ? " from the token cache" : "", x->all.truncated, opt.sequence_len, x->all.dropped,
                 x->all.skipped_lines);
        rc = dataset_split(&x->all, r->data.val_set_size, (uint64_t)r->seed, &x->train, &x->val);
    }
    if (!rc && x->train.n == 0) rc = ds_fail(DS_EDATA, "%s: no training examples left", r->file);
    x->has_val = !rc && x->val.n > 0 && !x->paired;
    if (!rc && x->val.n > 0) tlog_say(&x->log, "data: %d held out for validation", x->val.n);

    x->evals = calloc((size_t)r->eval.n_datasets + 1, sizeof *x->evals);
    for (int i = 0; !rc && i < r->eval.n_datasets; i++) {
        run_eval_set *s = &x->evals[x->n_evals];
        s->src = &r->eval.datasets[i];
        s->name = dataset_name(s->src->path);
        example_kind kind = !strcmp(s->src->type, "mcq") ? EX_MCQ : EX_SFT;
        char *p = ds_strdupf("%s/eval-%d.tokens", cache_dir, i);
        rc = dataset_load_cached(p, s->src, 1, kind, x->tok, &opt, &s->data, &hit);
        free(p);
        x->n_evals++;
    }
    if (!rc && x->has_val) {
        run_eval_set *s = &x->evals[x->n_evals++];
        s->name = strdup("validation");
        s->data = x->val;   /* the validation view, freed once as x->val */
    }
    free(cache_dir);
    return rc;
}

static int setup_adapter(run *x)
{
    const recipe *r = x->r;
    lora_config c = {.r = (int)r->adapter.lora_r, .alpha = r->adapter.lora_alpha, .dropout = r->adapter.lora_dropout,
                     .use_rslora = r->adapter.use_rslora};
    int rc = lora_targets_parse(r->adapter.lora_target_modules.items, r->adapter.lora_target_modules.n, &c.targets);
    if (rc) return ds_fail_context(rc, "%s: adapter.lora_target_modules: ", r->file);
    if (r->adapter.init_from) {
        rc = lora_load_peft(r->adapter.init_from, &x->model->cfg, &x->adapter);
        if (!rc) tlog_say(&x->log, "adapter: starting from %s (r=%d, alpha=%g)", r->adapter.init_from,
                          x->adapter->cfg.r, x->adapter->cfg.alpha);
        if (!rc) x->adapter->cfg.dropout = c.dropout;
        return rc;
    }
    rc = lora_create(&x->model->cfg, &c, r->base_model, &x->adapter);
    if (!rc) lora_init(x->adapter, (uint64_t)r->seed);
    return rc;
}

static int setup_schedule(run *x)
{
    const recipe *r = x->r;
    int rc = epoch_plan_make(&x->train, (uint64_t)r->seed, 0, r->data.shuffle, r->data.sample_packing && !x->paired,
                             (int)r->data.sequence_len, (int)r->train.micro_batch_size, &x->plan);
    if (rc) return rc;
    x->plan_epoch = 0;
    int64_t per_epoch = x->plan.nbatches, accum = r->train.gradient_accumulation_steps;
    int64_t total = r->train.max_steps >= 0 ? r->train.max_steps
                                            : (int64_t)ceil(r->train.num_epochs * (double)per_epoch / (double)accum);
    if (total < 1) total = 1;
    x->sched.total = total;
    x->sched.peak = r->train.learning_rate;
    x->sched.warmup = r->train.warmup_steps >= 0 ? r->train.warmup_steps
                                                  : (int64_t)ceil(r->train.warmup_ratio * (double)total);
    rc = lr_kind_parse(r->train.lr_scheduler, &x->sched.kind);
    x->st.total_steps = total;
    x->st.seed = (uint64_t)r->seed;
    if (!rc) tlog_say(&x->log, "schedule: %lld steps of %lld micro-batches x %d rows (%lld micro-batches per epoch), "
                               "%s lr %g, warmup %lld", (long long)total, (long long)accum, x->micro_rows,
                      (long long)per_epoch, r->train.lr_scheduler, r->train.learning_rate, (long long)x->sched.warmup);
    return rc;
}

/* run_info.json: what the run computes on and from (finetune/report/report.h). */
static int record_inputs(run *x)
{
    const recipe *r = x->r;
    report_info_device(x->info, be_name(x->be), be_device_name(x->be));
    int rc = report_info_model(x->info, r->base_model, r->tokenizer ? r->tokenizer : r->base_model);
    for (int i = 0; !rc && i < r->data.n_datasets; i++) rc = report_info_data(x->info, "train", r->data.datasets[i].path);
    for (int i = 0; !rc && i < r->eval.n_datasets; i++) rc = report_info_data(x->info, "eval", r->eval.datasets[i].path);
    return rc;
}

static int resume_from_checkpoint(run *x)
{
    char *path;
    int rc = checkpoint_latest(x->r->output_dir, &path);
    if (rc) return rc;
    size_t P = x->adapter->nparams;
    float *m = malloc(sizeof(float) * P), *v = malloc(sizeof(float) * P);
    train_state s;
    rc = checkpoint_load(path, &x->model->cfg, &s, x->adapter, m, v);
    if (!rc && s.seed != (uint64_t)x->r->seed)
        rc = ds_fail(DS_ECONFIG, "%s: the checkpoint was made with seed %llu, the recipe says %lld", path,
                     (unsigned long long)s.seed, (long long)x->r->seed);
    if (!rc) rc = engine_set_params(x->eng, x->adapter->data);
    if (!rc) rc = engine_set_adam(x->eng, m, v);
    if (!rc) rc = tlog_keep_until(&x->log, x->r->output_dir, (long)s.step);
    if (!rc) {
        s.total_steps = x->st.total_steps;
        x->st = s;
        tlog_say(&x->log, "resume: from %s (step %lld of %lld)", path, (long long)s.step, (long long)s.total_steps);
    }
    free(m);
    free(v);
    free(path);
    return rc;
}

int run_setup(run *x, const recipe *r, bool resume)
{
    memset(x, 0, sizeof *x);
    x->r = r;
    x->plan_epoch = -1;
    x->t_start = ds_now();
    int rc = ds_mkdirs(r->output_dir);
    if (rc) return rc;
    char *ckpt = ds_path_join(r->output_dir, "checkpoints");
    bool had = ds_exists(ckpt);
    if (!resume && had) ds_remove_tree(ckpt);   /* a fresh run must not mix with an old one's steps */
    free(ckpt);
    if ((rc = tlog_open(&x->log, r->output_dir, resume))) return rc;
    if (!resume && had) tlog_say(&x->log, "note: removed the checkpoints of an earlier run in %s (use --resume to continue one)",
                                 r->output_dir);
    char *resolved = ds_path_join(r->output_dir, "recipe.resolved.yaml");
    rc = recipe_write(r, resolved);
    free(resolved);
    if (!rc) rc = report_info_open(r->output_dir, resume, &x->info);
    if (!rc) rc = be_open_named(r->device, &x->be);
    if (!rc) tlog_say(&x->log, "device: %s (%s)", be_name(x->be), be_device_name(x->be));
    if (!rc) rc = tok_load(r->tokenizer ? r->tokenizer : r->base_model, &x->tok);
    model_load_opts lo = {.load_in_4bit = r->quant.load_in_4bit, .double_quant = r->quant.double_quant};
    if (!rc) rc = model_load(r->base_model, &lo, &x->model);
    if (!rc) tok_set_default_ids(x->tok, x->model->cfg.bos_id, x->model->cfg.eos_id, x->model->cfg.pad_id);
    if (!rc) tlog_say(&x->log, "model: %s, %d layers, hidden %d, %s weights", r->base_model, x->model->cfg.num_layers,
                      x->model->cfg.hidden_size, x->model->quantized ? "NF4 4-bit" : "16-bit");
    if (!rc && r->save.merge && !strcmp(r->save.merge_source, "original") && x->model->prequantized)
        rc = ds_fail(DS_ECONFIG, "%s: save.merge_source: original, but %s is a 4-bit checkpoint with no original "
                                 "16-bit weights (use dequantized)", r->file, r->base_model);
    if (!rc) {
        x->paired = (r->loss.main.module->needs & LOSS_PAIRED) != 0;
        x->needs_ref = (r->loss.main.module->needs & LOSS_NEEDS_REF) != 0;
        x->micro_rows = (int)r->train.micro_batch_size * (x->paired ? 2 : 1);
        report_info_phase(x->info, "load");
        rc = load_data(x);
        report_info_phase(x->info, "tokenize");
    }
    if (!rc) rc = setup_adapter(x);
    if (!rc) {
        engine_opts eo = {.max_B = x->micro_rows, .max_T = (int)r->data.sequence_len,
                          .checkpointing = r->train.gradient_checkpointing, .training = true,
                          .adapter = x->adapter, .seed = (uint64_t)r->seed};
        rc = engine_create(x->be, x->model, &eo, &x->eng);
    }
    if (!rc) {
        engine_memory mem = engine_memory_use(x->eng);
        char a[32], b[32], c[32], d[32];
        tlog_say(&x->log, "memory: weights %s, adapter+optimizer %s, activations %s, workspace %s",
                 tlog_bytes((double)mem.weights, a, sizeof a), tlog_bytes((double)mem.adapter, b, sizeof b),
                 tlog_bytes((double)mem.activations, c, sizeof c), tlog_bytes((double)mem.workspace, d, sizeof d));
        tlog_say(&x->log, "adapter: r=%d alpha=%g on %d modules, %zu trainable parameters", x->adapter->cfg.r,
                 x->adapter->cfg.alpha, __builtin_popcount(x->adapter->cfg.targets), x->adapter->nparams);
    }
    if (!rc) {
        size_t N = (size_t)x->micro_rows * (size_t)r->data.sequence_len;
        float **bufs[] = {&x->lp, &x->fmass, &x->ref, &x->ca, &x->cb, &x->cc};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) *bufs[i] = calloc(N, sizeof(float));
        x->pad_id = tok_pad_id(x->tok) >= 0 ? tok_pad_id(x->tok) : 0;
        x->nlosses = 1 + r->loss.n_penalties;
        x->losses = malloc(sizeof *x->losses * (size_t)x->nlosses);
        x->norms = malloc(sizeof *x->norms * (size_t)x->nlosses);
        x->losses[0] = &r->loss.main;
        for (int i = 0; i < r->loss.n_penalties; i++) x->losses[1 + i] = &r->loss.penalties[i];
    }
    if (!rc) rc = prepare_loss(x, &r->loss.main, "loss");
    for (int i = 0; !rc && i < r->loss.n_penalties; i++) rc = prepare_loss(x, &r->loss.penalties[i], "loss.penalties");
    if (!rc) rc = setup_schedule(x);
    if (!rc && resume) rc = resume_from_checkpoint(x);
    if (!rc && r->train.tensorboard) rc = report_tb_open(r->output_dir, resume ? x->st.step + 1 : 0, &x->log.tb);
    report_info_phase(x->info, "load");
    if (!rc) rc = record_inputs(x);
    report_info_phase(x->info, "fingerprints");
    return rc;
}

void run_free(run *x)
{
    for (int i = 0; i < x->n_evals; i++) {
        run_eval_set *s = &x->evals[i];
        if (s->src) dataset_free(&s->data);
        eval_result_free(&s->before);
        eval_result_free(&s->after);
        free(s->name);
    }
    free(x->evals);
    if (x->ref_cache) {
        for (int i = 0; i < x->train.n; i++) free(x->ref_cache[i]);
        free(x->ref_cache);
    }
    float *bufs[] = {x->lp, x->fmass, x->ref, x->ca, x->cb, x->cc};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(x->losses);
    free(x->norms);
    epoch_plan_free(&x->plan);
    dataset_free(&x->train);   /* views: their own example lists only */
    dataset_free(&x->val);
    dataset_free(&x->all);
    engine_free(x->eng);
    lora_free(x->adapter);
    model_free(x->model);
    tok_free(x->tok);
    be_close(x->be);
    tlog_close(&x->log);
    report_info_free(x->info);
}
