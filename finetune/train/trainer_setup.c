/* finetune/train/trainer_setup.c - everything a run loads before its first step:
 * device, tokenizer, loss modules, model, data, adapter, engine, schedule,
 * and (on --resume) the newest checkpoint. */
#include "trainer.h"

#include "core/clock.h"
#include "core/files.h"
#include "core/interrupt.h"
#include "core/mem.h"
#include "core/status.h"
#include "core/units.h"
#include "data/dataset/chat_template.h"

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

static int prepare_loss(trainer *x, const recipe_loss *l, const char *where)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s:%d: %s", x->r->file, l->line, where);
    loss_env env = {.vocab_size = x->ctx.model->cfg.vocab_size, .encode = encode_plain, .tok = x->ctx.tok, .where = buf};
    int rc = l->module->prepare ? l->module->prepare(l->cfg, &env) : DS_OK;
    if (rc) return rc;
    if (l->module->needs & LOSS_NEEDS_FORBIDDEN) {
        if (x->forbidden_owner)
            return ds_fail(DS_ECONFIG, "%s: only one forbidden-token penalty per recipe", buf);
        x->forbidden_owner = l->module;
        const int32_t *ids;
        int n;
        l->module->forbidden_ids(l->cfg, &ids, &n);
        return engine_set_forbidden(x->ctx.eng, ids, n);
    }
    return DS_OK;
}

/* "data/medmcqa_val.jsonl.zst" -> "medmcqa_val"; NULL when out of memory (message set) */
static char *dataset_name(const char *path)
{
    const char *base = strrchr(path, '/');
    char *name = ds_strdup(base ? base + 1 : path);
    if (!name) return NULL;
    const char *exts[] = {".zst", ".jsonl", ".json"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(name), e = strlen(exts[i]);
        if (n > e && !strcmp(name + n - e, exts[i])) name[n - e] = '\0';
    }
    return name;
}

/* What loading the data has to tell (a file's answer numbering) goes to the run's log. */
static void say_log(void *log, const char *line) { tlog_say(log, "data: %s", line); }

static int load_data(trainer *x)
{
    const recipe *r = x->r;
    data_options data = r->plan.data;
    data.say = say_log;
    data.say_ctx = &x->log;
    data.vocab_size = x->ctx.model->cfg.vocab_size;
    const data_options *opt = &data;
    const chat_template *ct;
    int trc = chat_template_open(opt->chat_template, opt->template_dir, &ct);
    if (trc) return trc;
    tlog_say(&x->log, "chat template: %s", chat_template_about(ct));
    chat_template_close(ct);
    char *cache_dir = ds_path_join(r->output_dir, "cache");
    int rc = ds_mkdirs(cache_dir);
    char *path = ds_path_join(cache_dir, "train.tokens");
    bool hit = false;
    const recipe_dataset *sources = r->data.datasets;
    if (!rc) rc = trainer_clean_data(x, cache_dir, opt, &sources);
    if (!rc) rc = dataset_load_cached(path, sources, r->data.n_datasets, x->r->plan.paired ? EX_PREF : EX_SFT, x->ctx.tok,
                                      opt, &x->all, &hit);
    free(path);
    if (!rc) {
        tlog_say(&x->log, "data: %d %s examples%s (%ld truncated to %d tokens, %ld without trained tokens dropped, "
                          "%ld bad lines skipped)", x->all.n, x->r->plan.paired ? "preference" : "training",
                 hit ? " from the token cache" : "", x->all.truncated, opt->sequence_len, x->all.dropped,
                 x->all.skipped_lines);
        rc = dataset_split(&x->all, r->data.val_set_size, (uint64_t)r->seed, &x->train, &x->val);
    }
    if (!rc && x->train.n == 0) rc = ds_fail(DS_EDATA, "%s: no training examples left", r->file);
    x->has_val = !rc && x->val.n > 0 && !x->r->plan.paired;
    if (!rc && x->val.n > 0) tlog_say(&x->log, "data: %d held out for validation", x->val.n);

    if (!rc && !(x->evals = ds_calloc((size_t)r->eval.n_datasets + 1, sizeof *x->evals, "the eval sets")))
        rc = DS_ENOMEM;
    for (int i = 0; !rc && i < r->eval.n_datasets; i++) {
        trainer_eval_set *s = &x->evals[x->n_evals++];   /* counted now: trainer_free frees what it holds */
        s->src = &r->eval.datasets[i];
        if (!(s->name = dataset_name(s->src->path))) rc = DS_ENOMEM;
        example_kind kind = !strcmp(s->src->type, "mcq") ? EX_MCQ : EX_SFT;
        char *p = rc ? NULL : ds_strdupf("%s/eval-%d.tokens", cache_dir, i);
        if (!rc) rc = p ? dataset_load_cached(p, s->src, 1, kind, x->ctx.tok, opt, &s->data, &hit) : DS_ENOMEM;
        free(p);
    }
    if (!rc && x->has_val) {
        trainer_eval_set *s = &x->evals[x->n_evals++];
        s->data = x->val;   /* the validation view, freed once as x->val */
        if (!(s->name = ds_strdup("validation"))) rc = DS_ENOMEM;
    }
    free(cache_dir);
    return rc;
}

/* The adapter the run trains: a new one of the recipe's shape, or adapter.init_from. */
static int adapter_options(const recipe *r, lora_config *c, ds_run_opts *o)
{
    *c = (lora_config){.r = (int)r->adapter.lora_r, .alpha = r->adapter.lora_alpha, .dropout = r->adapter.lora_dropout,
                       .use_rslora = r->adapter.use_rslora};
    int rc = lora_targets_parse(r->adapter.lora_target_modules.items, r->adapter.lora_target_modules.n, &c->targets);
    if (rc) return ds_fail_context(rc, "%s: adapter.lora_target_modules: ", r->file);
    if (r->adapter.init_from) o->adapter_dir = r->adapter.init_from;
    else o->new_adapter = c;
    o->adapter_seed = (uint64_t)r->seed;
    return DS_OK;
}

static int setup_schedule(trainer *x)
{
    const recipe *r = x->r;
    const run_plan *p = &r->plan;
    int rc = epoch_plan_make(&x->train, (uint64_t)r->seed, 0, r->data.shuffle, p->packing, p->seq_len, p->micro_batch,
                             &x->plan);
    if (rc) return rc;
    x->plan_epoch = 0;
    int64_t per_epoch = x->plan.nbatches, accum = (int64_t)p->accum * x->ranks.world;   /* per step, all ranks */
    int64_t total = r->train.max_steps >= 0 ? r->train.max_steps
                                            : (int64_t)ceil(r->train.num_epochs * (double)per_epoch / (double)accum);
    if (total < 1) total = 1;
    x->sched.total = total;
    x->sched.peak = r->train.learning_rate;
    x->sched.warmup = r->train.warmup_steps >= 0 ? r->train.warmup_steps
                                                  : (int64_t)ceil(r->train.warmup_ratio * (double)total);
    x->sched.kind = p->lr_scheduler;
    x->st.total_steps = total;
    x->st.seed = (uint64_t)r->seed;
    tlog_say(&x->log, "schedule: %lld steps of %lld micro-batches x %d rows (%lld micro-batches per epoch), "
                      "%s lr %g, warmup %lld", (long long)total, (long long)accum, p->rows,
                      (long long)per_epoch, r->train.lr_scheduler, r->train.learning_rate, (long long)x->sched.warmup);
    if (x->ranks.comm)
        tlog_say(&x->log, "ranks: %d (%s), each %d micro-batches of each step", x->ranks.world,
                 dist_kind_name(x->ranks.comm), p->accum);
    return rc;
}

/* run_info.json: what the run computes on and from (finetune/report/report.h). */
static int record_inputs(trainer *x)
{
    const recipe *r = x->r;
    report_info_device(x->info, be_name(x->ctx.be), be_device_name(x->ctx.be));
    int rc = report_info_model(x->info, r->base_model, r->tokenizer ? r->tokenizer : r->base_model);
    for (int i = 0; !rc && i < r->data.n_datasets; i++) rc = report_info_data(x->info, "train", r->data.datasets[i].path);
    for (int i = 0; !rc && i < r->eval.n_datasets; i++) rc = report_info_data(x->info, "eval", r->eval.datasets[i].path);
    return rc;
}

static int resume_from_checkpoint(trainer *x)
{
    char *path, *skipped;
    int rc = checkpoint_latest(x->r->output_dir, &path, &skipped);
    if (rc) return rc;
    if (skipped) tlog_say(&x->log, "resume: skipped %s (incomplete: no %s)", skipped, CHECKPOINT_MARKER);
    free(skipped);
    size_t P = x->ctx.adapter->nparams;
    float *m = ds_malloc(sizeof(float) * P, "the optimizer's first moments");
    float *v = m ? ds_malloc(sizeof(float) * P, "the optimizer's second moments") : NULL;
    train_state s;
    rc = v ? checkpoint_load(path, &x->ctx.model->cfg, &s, x->ctx.adapter, m, v) : DS_ENOMEM;
    if (!rc && s.seed != (uint64_t)x->r->seed)
        rc = ds_fail(DS_ECONFIG, "%s: the checkpoint was made with seed %llu, the recipe says %lld", path,
                     (unsigned long long)s.seed, (long long)x->r->seed);
    if (!rc) rc = engine_set_params(x->ctx.eng, x->ctx.adapter->data);
    if (!rc) rc = engine_set_adam(x->ctx.eng, m, v);
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

/* adapter.init_from brings its own rank, alpha and rsLoRA: a recipe value left
 * at its default takes the adapter's; one set to anything else must agree. */
static int check_init_from(const recipe *r, const lora_adapter *ad, const lora_config *want)
{
    const char *bad = NULL;
    char mine[64], theirs[64];
    if (!recipe_at_default(r, "adapter", "lora_r") && ad->cfg.r != want->r) {
        bad = "lora_r";
        snprintf(mine, sizeof mine, "%d", want->r);
        snprintf(theirs, sizeof theirs, "r = %d", ad->cfg.r);
    } else if (!recipe_at_default(r, "adapter", "lora_alpha") && ad->cfg.alpha != want->alpha) {
        bad = "lora_alpha";
        snprintf(mine, sizeof mine, "%g", want->alpha);
        snprintf(theirs, sizeof theirs, "lora_alpha = %g", ad->cfg.alpha);
    } else if (!recipe_at_default(r, "adapter", "use_rslora") && ad->cfg.use_rslora != want->use_rslora) {
        bad = "use_rslora";
        snprintf(mine, sizeof mine, "%s", want->use_rslora ? "true" : "false");
        snprintf(theirs, sizeof theirs, "use_rslora = %s", ad->cfg.use_rslora ? "true" : "false");
    }
    if (!bad) return DS_OK;
    return ds_fail(DS_ECONFIG, "%s: adapter.%s is %s but adapter.init_from %s has %s (leave adapter.%s out to take "
                               "the adapter's)", r->file, bad, mine, r->adapter.init_from, theirs, bad);
}

/* The recipe's moe section: the engine's balance loss (its coefficient split
 * over the step's micro-batches on all ranks, as the main loss is averaged over them) and
 * capacity factor; set on a model without experts, refused. */
static int setup_moe(trainer *x)
{
    const recipe *r = x->r;
    const model_config *c = &x->ctx.model->cfg;
    if (!c->ds.on) {
        if (r->moe.aux_loss_alpha != -1 || r->moe.capacity_factor != 0)
            return ds_fail(DS_ECONFIG, "%s: moe.%s is set, but %s (%s) has no experts", r->file,
                           r->moe.aux_loss_alpha != -1 ? "aux_loss_alpha" : "capacity_factor", r->base_model,
                           c->architecture);
        return DS_OK;
    }
    double alpha = r->moe.aux_loss_alpha < 0 ? c->ds.aux_loss_alpha : r->moe.aux_loss_alpha;
    double micro_batches = (double)r->plan.accum * x->ranks.world;   /* per step, all ranks */
    int rc = engine_set_moe(x->ctx.eng, (float)(alpha / micro_batches), (float)r->moe.capacity_factor);
    char cap[32] = "off";
    if (r->moe.capacity_factor > 0) snprintf(cap, sizeof cap, "%g", r->moe.capacity_factor);
    if (!rc)
        tlog_say(&x->log, "experts: %d routed (top %d) + %d shared in %d MoE layers; balance loss alpha %g%s; "
                          "capacity factor %s", c->ds.n_routed, c->ds.top_k, c->ds.n_shared,
                 c->num_layers - c->ds.first_k_dense, alpha, r->moe.aux_loss_alpha < 0 ? " (the model's)" : "", cap);
    return rc;
}

/* On a GPU: the engine's sizing of this run against the free memory, said in
 * the log, and a stop with what to change where it does not fit. */
static int fits_on_device(trainer *x, engine_opts *eo)
{
    backend *be = x->ctx.be;
    if (be->kind != BE_CUDA) return DS_OK;
    size_t free_bytes = 0, total = 0, need = 0;
    be_mem_info(be, &free_bytes, &total);
    engine_opts o = *eo;
    o.adapter = x->ctx.adapter;
    const llama_model *model = x->ctx.model;
    if (trainer_offload_needed(x->r, &model->cfg, model->quantized, &o, free_bytes)) {
        eo->offload = o.offload = true;
        tlog_say(&x->log, "memory: each layer's input kept in host memory (train.offload_activations: auto): the "
                          "run would not fit the GPU's free memory otherwise");
    }
    if (!strcmp(x->r->train.keep_attention, "auto") && train_keep_attention_pays(&model->cfg, model->quantized, &o,
                                                                                  free_bytes)) {
        eo->keep_attention = o.keep_attention = true;
        tlog_say(&x->log, "memory: each layer's attention output kept %s (train.keep_attention: auto), so that the "
                          "backward does not compute the attention again",
                 o.offload ? "in host memory too" : "on the GPU");
    }
    if (!strcmp(x->r->train.keep_projections, "auto")) {   /* none without the attention output kept */
        eo->keep_projections = o.keep_projections =
            train_projections_that_fit(&model->cfg, model->quantized, &o, free_bytes);
        if (o.keep_projections)
            tlog_say(&x->log, "memory: q, k, v and the residual after attention kept on the GPU in %d of %d layers "
                              "(train.keep_projections: auto), so that the backward does not compute their "
                              "projections again", o.keep_projections, model->cfg.num_layers);
    }
    int rc = trainer_memory_check(x->r, &model->cfg, model->quantized, &o, free_bytes, be_device_name(be), &need);
    if (need)   /* the estimate includes a margin for what the run allocates beyond its arenas */
        tlog_say(&x->log, "memory: an estimated %.2f GiB for this run, %.2f GiB free of %.2f GiB",
                 (double)need / 1073741824.0, (double)free_bytes / 1073741824.0, (double)total / 1073741824.0);
    return rc;
}

int trainer_setup(trainer *x, const recipe *r, train_start start, dist_comm *comm)
{
    memset(x, 0, sizeof *x);
    ranks_init(&x->ranks, comm);
    bool writes = ranks_writes(&x->ranks);
    x->log.quiet = !writes;
    x->r = r;
    x->plan_epoch = -1;
    x->t_start = ds_now();
    bool resume = start == TRAIN_RESUME;
    /* Inputs first: nothing in output_dir is touched until all of them were read. */
    int rc = recipe_check_inputs(r);
    if (!rc && writes) rc = output_check(r, start);
    lora_config lc;
    if (!rc && writes) rc = report_info_open(r->output_dir, resume, &x->info);
    ds_run_opts ro = {.device = r->plan.device, .model_dir = r->base_model, .tokenizer_dir = r->tokenizer,
                      .load_in_4bit = r->quant.load_in_4bit, .double_quant = r->quant.double_quant,
                      .model_name = r->base_model_name};
    if (!rc) rc = adapter_options(r, &lc, &ro);
    if (!rc) rc = ds_run_open(&ro, &x->ctx);
    if (!rc) rc = ranks_check_device(&x->ranks, x->ctx.be);
    if (rc) return rc;
    const llama_model *m = x->ctx.model;
    lora_adapter *ad = x->ctx.adapter;
    tlog_say(&x->log, "device: %s (%s)", be_name(x->ctx.be), be_device_name(x->ctx.be));
    tlog_say(&x->log, "model: %s, %d layers, hidden %d, %s weights", r->base_model, m->cfg.num_layers,
             m->cfg.hidden_size, m->quantized ? "NF4 4-bit" : "16-bit");
    int context = model_config_context(&m->cfg);
    if (r->plan.seq_len > context)
        return ds_fail(DS_ECONFIG, "%s: data.sequence_len %d is longer than the %d positions of %s "
                                   "(max_position_embeddings%s); shorten it, or set rope scaling in its config.json",
                       r->file, r->plan.seq_len, context, r->base_model, context > m->cfg.max_position ? " with its rope scaling" : "");
    if (!strcmp(r->train.keep_attention, "true") && !r->train.gradient_checkpointing)
        return ds_fail(DS_ECONFIG, "%s: train.keep_attention: true spares the recomputing backward the attention: it "
                                   "needs train.gradient_checkpointing: true", r->file);
    if (!strcmp(r->train.keep_attention, "true") && m->cfg.ds.on)
        return ds_fail(DS_ECONFIG, "%s: train.keep_attention: true is for Llama-family layers; %s has DeepSeek's "
                                   "(set it to auto or false)", r->file, r->base_model);
    if (r->adapter.init_from) {
        rc = check_init_from(r, ad, &lc);
        tlog_say(&x->log, "adapter: starting from %s (r=%d, alpha=%g)", r->adapter.init_from, ad->cfg.r, ad->cfg.alpha);
        ad->cfg.dropout = lc.dropout;
    }
    if (!rc && r->save.merge && r->plan.merge_source == MERGE_ORIGINAL && m->prequantized)
        rc = ds_fail(DS_ECONFIG, "%s: save.merge_source: original, but %s is a 4-bit checkpoint with no original "
                                 "16-bit weights (use dequantized)", r->file, r->base_model);
    report_info_phase(x->info, "load");
    if (!rc) rc = load_data(x);
    report_info_phase(x->info, "tokenize");
    if (!rc && ds_interrupted()) rc = ds_interrupt_status("while loading the data; nothing was written");
    if (!rc) {
        engine_opts eo = {.max_B = r->plan.rows, .max_T = r->plan.seq_len,
                          .checkpointing = r->train.gradient_checkpointing, .training = true, .seed = (uint64_t)r->seed,
                          .offload = !strcmp(r->train.offload_activations, "true"),
                          .keep_attention = !strcmp(r->train.keep_attention, "true"),
                          .keep_projections = !strcmp(r->train.keep_projections, "true") ? m->cfg.num_layers : 0};
        if (eo.offload && !eo.checkpointing)
            rc = ds_fail(DS_ECONFIG, "%s: train.offload_activations: true keeps each layer's input in host memory for "
                                     "the recomputing backward: it needs train.gradient_checkpointing: true", r->file);
        if (!rc) rc = fits_on_device(x, &eo);
        if (!rc) rc = ds_run_start(&x->ctx, &eo);
    }
    if (!rc) rc = setup_moe(x);
    if (!rc) {
        engine_memory mem = engine_memory_use(x->ctx.eng);
        char a[32], b[32], c[32], d[32];
        tlog_say(&x->log, "memory: weights %s, adapter+optimizer %s, activations %s, workspace %s",
                 ds_bytes_str((double)mem.weights, a, sizeof a), ds_bytes_str((double)mem.adapter, b, sizeof b),
                 ds_bytes_str((double)mem.activations, c, sizeof c), ds_bytes_str((double)mem.workspace, d, sizeof d));
        if (mem.host)
            tlog_say(&x->log, "memory: offloaded activations %s of page-locked host memory",
                     ds_bytes_str((double)mem.host, a, sizeof a));
        tlog_say(&x->log, "adapter: r=%d alpha=%g on %d modules, %zu trainable parameters", x->ctx.adapter->cfg.r,
                 x->ctx.adapter->cfg.alpha, __builtin_popcount(x->ctx.adapter->cfg.targets), x->ctx.adapter->nparams);
    }
    if (!rc) {
        size_t N = (size_t)r->plan.rows * (size_t)r->plan.seq_len;
        float **bufs[] = {&x->lp, &x->fmass, &x->ref, &x->ca, &x->cb, &x->cc};
        for (size_t i = 0; !rc && i < sizeof bufs / sizeof *bufs; i++)
            if (!(*bufs[i] = ds_calloc(N, sizeof(float), "a micro-batch's per-token values"))) rc = DS_ENOMEM;
        x->pad_id = tok_pad_id(x->ctx.tok) >= 0 ? tok_pad_id(x->ctx.tok) : 0;
        x->nlosses = 1 + r->loss.n_penalties;
        if (!rc && !(x->losses = ds_malloc(sizeof *x->losses * (size_t)x->nlosses, "the losses"))) rc = DS_ENOMEM;
        if (!rc && !(x->norms = ds_malloc(sizeof *x->norms * (size_t)x->nlosses, "the losses' norms"))) rc = DS_ENOMEM;
        for (int i = 0; !rc && i < x->nlosses; i++) x->losses[i] = i ? &r->loss.penalties[i - 1] : &r->loss.main;
    }
    if (!rc) rc = prepare_loss(x, &r->loss.main, "loss");
    for (int i = 0; !rc && i < r->loss.n_penalties; i++) rc = prepare_loss(x, &r->loss.penalties[i], "loss.penalties");
    if (!rc) rc = setup_schedule(x);
    if (!rc && resume && writes) rc = resume_from_checkpoint(x);   /* the other ranks: from rank 0 (ranks_resume.c) */
    /* Every input was read: now the output folder. */
    if (!writes) return rc;
    if (!rc) rc = output_clean_debris(r);
    if (!rc && start == TRAIN_OVERWRITE) rc = output_discard(r, &x->log);
    if (!rc) rc = tlog_open(&x->log, r->output_dir, resume);
    if (!rc && resume) rc = tlog_keep_until(&x->log, r->output_dir, (long)x->st.step);
    if (!rc) {
        char *resolved = ds_path_join(r->output_dir, "recipe.resolved.yaml");
        rc = recipe_write(r, resolved);
        free(resolved);
    }
    if (!rc) rc = trainer_clean_write_report(x);
    if (!rc && r->train.tensorboard) rc = report_tb_open(r->output_dir, resume ? x->st.step + 1 : 0, &x->log.tb);
    report_info_phase(x->info, "load");
    if (!rc) rc = record_inputs(x);
    report_info_phase(x->info, "fingerprints");
    return rc;
}

void trainer_free(trainer *x)
{
    for (int i = 0; i < x->n_evals; i++) {
        trainer_eval_set *s = &x->evals[i];
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
    ds_run_close(&x->ctx);
    trainer_clean_free(x);
    tlog_close(&x->log);
    report_info_free(x->info);
}
