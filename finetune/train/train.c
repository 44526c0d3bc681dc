/* finetune/train/train.c - the training loop. One step = gradient_accumulation_steps
 * micro-batches: forward, loss module(s), backward (gradients accumulate),
 * then clipping and AdamW. Losses are normalised over the whole step
 * (loss_module.count), so accumulation equals one large batch. */
#include "train.h"

#include "finetune/run/run.h"
#include "ranks.h"
#include "trainer.h"

#include "core/clock.h"
#include "core/files.h"
#include "core/interrupt.h"
#include "core/mem.h"
#include "core/status.h"
#include "core/units.h"
#include "data/json_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* ------------------------------------------------------------ data order */

/* Micro-batch `st.batch` of epoch `st.epoch` (advancing across epochs). */
static int next_micro_batch(trainer *x, batch *b, int *plan_batch)
{
    const recipe *r = x->r;
    if (x->plan_epoch == x->st.epoch && x->st.batch >= x->plan.nbatches) {
        x->st.epoch++;
        x->st.batch = 0;
    }
    if (x->plan_epoch != x->st.epoch) {
        epoch_plan_free(&x->plan);
        int rc = epoch_plan_make(&x->train, (uint64_t)r->seed, x->st.epoch, r->data.shuffle, r->plan.packing,
                                 r->plan.seq_len, r->plan.micro_batch, &x->plan);
        if (rc) return rc;
        x->plan_epoch = x->st.epoch;
    }
    *plan_batch = x->st.batch;
    int rc = epoch_plan_batch(&x->plan, x->st.batch, &x->train, x->pad_id, b);
    x->st.batch++;
    return rc;
}

/* Reference log-probs of a batch: from the precomputed cache or a forward
 * pass of the model without adapters. */
static int reference_logprobs(trainer *x, const batch *b, int plan_batch, float *ref)
{
    if (!x->ref_cache) {
        engine_fwd f = {.lora = false};
        return engine_forward(x->ctx.eng, b, &f, ref, NULL);
    }
    /* rows 2k, 2k+1 come from the k-th item of the batch's plan rows */
    int row0 = x->plan.batch_start[plan_batch];
    for (int row = 0; row < b->B; row++) {
        int ex = x->plan.items[x->plan.row_start[row0 + row / 2]];
        const float *src = x->ref_cache[ex] + (row % 2 ? x->train.pref[ex].n_chosen : 0);
        int k = 0;
        for (int t = 0; t < b->T; t++) {
            size_t i = (size_t)row * b->T + t;
            ref[i] = b->targets[i] >= 0 ? src[k++] : 0.0f;
        }
    }
    return DS_OK;
}

int trainer_precompute_ref(trainer *x)
{
    epoch_plan plan;
    const recipe *r = x->r;
    int rc = epoch_plan_make(&x->train, (uint64_t)r->seed, 0, false, false, r->plan.seq_len, r->plan.micro_batch, &plan);
    if (rc) return rc;
    x->ref_cache = ds_calloc((size_t)x->train.n, sizeof *x->ref_cache, "the reference log-probs");
    if (!x->ref_cache) rc = DS_ENOMEM;
    engine_fwd f = {.lora = false};
    for (int i = 0; !rc && i < plan.nbatches; i++) {
        if (ds_interrupted()) {
            rc = ds_interrupt_status("while precomputing the reference log-probs");
            break;
        }
        batch b;
        rc = epoch_plan_batch(&plan, i, &x->train, x->pad_id, &b);
        float *lp = rc ? NULL : ds_malloc(sizeof(float) * (size_t)b.B * b.T, "log-probabilities");
        if (!rc && !lp) rc = DS_ENOMEM;
        if (!rc) rc = engine_forward(x->ctx.eng, &b, &f, lp, NULL);
        int row0 = plan.batch_start[i];
        for (int row = 0; !rc && row < b.B; row++) {
            int ex = plan.items[plan.row_start[row0 + row / 2]];
            const pref_example *p = &x->train.pref[ex];
            if (!x->ref_cache[ex])
                x->ref_cache[ex] = ds_calloc((size_t)(p->n_chosen + p->n_rejected), sizeof(float), "reference log-probs");
            if (!x->ref_cache[ex]) {
                rc = DS_ENOMEM;
                break;
            }
            float *dst = x->ref_cache[ex] + (row % 2 ? p->n_chosen : 0);
            int cap = row % 2 ? p->n_rejected : p->n_chosen, k = 0;
            for (int t = 0; t < b.T; t++) {
                size_t j = (size_t)row * b.T + t;
                if (b.targets[j] >= 0 && k < cap) dst[k++] = lp[j];
            }
        }
        free(lp);
        batch_free(&b);
    }
    epoch_plan_free(&plan);
    if (!rc) tlog_say(&x->log, "dpo: reference log-probs precomputed for %d pairs", x->train.n);
    report_info_phase(x->info, "reference log-probs");
    return rc;
}

/* ------------------------------------------------------------ one step */

typedef struct {
    double loss, grad_norm, lr;
    long tokens;
    loss_metrics metrics;
    engine_moe_stats moe;   /* mixture-of-experts models: the step's router statistics */
    int moe_batches;
} step_result;

/* A micro-batch's router statistics into the step's: loads and drops summed,
 * the largest load kept, the balance loss averaged over micro-batches. */
static int add_moe_stats(trainer *x, step_result *res)
{
    engine_moe_stats st;
    int rc = engine_read_moe_stats(x->ctx.eng, -1, &st);
    if (rc || !st.moe_layers) return rc;
    engine_moe_stats *m = &res->moe;
    int n = res->moe_batches++;
    m->moe_layers = st.moe_layers, m->experts = st.experts, m->top_k = st.top_k;
    m->aux_loss = (m->aux_loss * n + st.aux_loss) / (n + 1);
    m->mean_load = (m->mean_load * n + st.mean_load) / (n + 1);
    if (st.max_load > m->max_load) m->max_load = st.max_load;
    m->dropped += st.dropped;
    for (int e = 0; e < st.experts; e++) m->tokens_per_expert[e] += st.tokens_per_expert[e];
    return DS_OK;
}

/* One micro-batch's contribution to the step's gradients. The loss is computed
 * on the host: the engine hands back per-token log-probs, the loss modules turn
 * them into the coefficients of dL/dlogits, and the backward takes those up
 * again. This round-trip is all here, so that a loss computed on the device can
 * replace this one function. */
static int micro_batch_gradients(trainer *x, const batch *b, int plan_batch, step_result *res)
{
    size_t N = (size_t)b->B * b->T;
    memset(x->ca, 0, N * sizeof(float));
    memset(x->cb, 0, N * sizeof(float));
    memset(x->cc, 0, N * sizeof(float));
    int rc = x->r->plan.needs_ref ? reference_logprobs(x, b, plan_batch, x->ref) : DS_OK;
    engine_fwd f = {.lora = true, .training = true, .for_backward = true, .micro_step = x->st.micro_step};
    float *fmass = x->forbidden_owner ? x->fmass : NULL;
    if (!rc) rc = engine_forward(x->ctx.eng, b, &f, x->lp, fmass);
    if (!rc) rc = add_moe_stats(x, res);
    loss_input in = {.B = b->B, .T = b->T, .targets = b->targets, .logprob = x->lp,
                     .ref_logprob = x->r->plan.needs_ref ? x->ref : NULL, .fmass = fmass};
    for (int j = 0; !rc && j < x->nlosses; j++) {
        loss_output out = {.a = x->ca, .b = x->cb, .c = x->cc};
        rc = x->losses[j]->module->forward(x->losses[j]->cfg, &in, x->norms[j], &out);
        res->loss += out.loss;
        loss_metrics_merge(&res->metrics, &out.metrics);
    }
    if (!rc) rc = engine_backward(x->ctx.eng, x->ca, x->cb, x->forbidden_owner ? x->cc : NULL);
    return rc;
}

/* The step's gradients over the ranks: one sum, then every rank holds the same. */
static int sum_over_ranks(trainer *x)
{
    float *grads;
    size_t n;
    int rc = engine_grads_buffer(x->ctx.eng, &grads, &n);
    return rc ? rc : ranks_sum(&x->ranks, grads, n);
}

static int train_step(trainer *x, step_result *res)
{
    const recipe *r = x->r;
    int accum = r->plan.accum, rc = DS_OK;
    int total = accum * x->ranks.world, mine = x->ranks.rank * accum;   /* ranks.h: this rank's share */
    batch *mb = ds_calloc((size_t)total, sizeof *mb, "the step's micro-batches");
    int *plan_batch = ds_calloc((size_t)total, sizeof *plan_batch, "the step's micro-batches");
    memset(res, 0, sizeof *res);
    if (!mb || !plan_batch) rc = DS_ENOMEM;

    /* The step's micro-batches first: each loss is normalised over all of them. */
    for (int k = 0; !rc && k < total; k++) rc = next_micro_batch(x, &mb[k], &plan_batch[k]);
    for (int j = 0; j < x->nlosses; j++) x->norms[j] = 0;
    for (int k = 0; !rc && k < total; k++) {
        loss_input in = {.B = mb[k].B, .T = mb[k].T, .targets = mb[k].targets};
        for (int j = 0; j < x->nlosses; j++) x->norms[j] += x->losses[j]->module->count(x->losses[j]->cfg, &in);
        for (size_t i = 0; i < (size_t)mb[k].B * mb[k].T; i++) res->tokens += mb[k].seg[i] >= 0;
    }
    if (!rc) rc = engine_zero_grads(x->ctx.eng);
    uint64_t first = x->st.micro_step;
    for (int k = mine; !rc && k < mine + accum; k++) {
        x->st.micro_step = first + (uint64_t)k;   /* the dropout mask of the k-th micro-batch of the step */
        rc = micro_batch_gradients(x, &mb[k], plan_batch[k], res);
    }
    x->st.micro_step = first + (uint64_t)total;
    for (int k = 0; mb && k < total; k++) batch_free(&mb[k]);
    free(mb);
    free(plan_batch);
    if (x->ranks.comm) {
        char at[64];
        snprintf(at, sizeof at, "at step %lld", (long long)x->st.step + 1);
        rc = ranks_agree(&x->ranks, rc, at, &res->loss, &res->metrics);
        if (!rc) rc = sum_over_ranks(x);
    }
    if (!rc) rc = engine_grad_norm(x->ctx.eng, &res->grad_norm);
    /* The watchdog looks before the update, so that a bad step never lands. */
    if (!rc && (!isfinite(res->loss) || !isfinite(res->grad_norm)))
        return ds_fail(DS_ETRAIN, "training failed: the loss became %s at step %lld (NaN watchdog); the last "
                                  "checkpoint in %s/checkpoints is intact", isfinite(res->loss) ? "finite but the "
                                  "gradient NaN" : "NaN", (long long)x->st.step + 1, r->output_dir);
    if (!rc) {
        double clip = r->train.max_grad_norm;
        res->lr = lr_at(&x->sched, x->st.step);
        adamw_args a = {.lr = (float)res->lr, .beta1 = (float)r->train.adam_beta1, .beta2 = (float)r->train.adam_beta2,
                        .eps = (float)r->train.adam_epsilon, .weight_decay = (float)r->train.weight_decay,
                        .grad_scale = clip > 0 && res->grad_norm > clip ? (float)(clip / (res->grad_norm + 1e-6)) : 1.0f,
                        .step = (int)x->st.step + 1};
        rc = engine_adamw(x->ctx.eng, &a);
    }
    if (!rc) x->st.step++;
    return rc;
}

/* The divergence watchdog: an exponential moving average of the loss
 * (smoothing over ~10 steps, so one hard batch does not trip it) against
 * its lowest value so far. factor 0 turns it off. */
static bool diverged(train_state *st, double loss, double factor)
{
    st->loss_ema = st->step == 1 ? loss : 0.9 * st->loss_ema + 0.1 * loss;
    if (st->step == 1 || st->loss_ema < st->loss_ema_best) st->loss_ema_best = st->loss_ema;
    return factor > 0 && st->loss_ema > factor * st->loss_ema_best;
}

/* ------------------------------------------------------------ reporting */

static size_t peak_memory(const trainer *x)
{
    if (x->ctx.be->kind == BE_CUDA) return be_peak_bytes(x->ctx.be);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (size_t)ru.ru_maxrss * 1024;
}

/* What a logged row summarises: the steps since the previous row (kept in
 * train_state, so in checkpoints). The loss and the loss modules' metrics are
 * averaged over them, as Hugging Face's Trainer logs its loss; lr and
 * grad_norm are the last step's. */
static void window_add(log_window *w, const step_result *s)
{
    w->steps++;
    w->loss += s->loss;
    loss_metrics_merge(&w->metrics, &s->metrics);
}

static int report_step(trainer *x, const step_result *s, const log_window *w, double tok_per_s, double elapsed,
                       double eta)
{
    double epoch = x->st.epoch + (x->plan.nbatches ? (double)x->st.batch / x->plan.nbatches : 0);
    size_t mem = peak_memory(x);
    double loss = w->steps ? w->loss / w->steps : s->loss;
    json_alloc_reset();   /* the row is built with unchecked jansson calls: see json_util.h */
    json_t *row = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:I, s:f}", "step", (json_int_t)x->st.step, "epoch", epoch,
                            "loss", loss, "lr", s->lr, "grad_norm", s->grad_norm, "tokens_per_s", tok_per_s,
                            "peak_mem_bytes", (json_int_t)mem, "elapsed_s", elapsed);
    const loss_metrics *m = &w->metrics;
    for (int k = 0; k < m->n; k++)
        json_object_set_new(row, m->name[k], json_real(m->count[k] > 0 ? m->sum[k] / m->count[k] : 0.0));
    const engine_moe_stats *moe = &s->moe;
    if (moe->moe_layers) {   /* the last step's router statistics, summed over its MoE layers */
        json_t *tpe = json_array();
        for (int e = 0; e < moe->experts; e++) json_array_append_new(tpe, json_integer(moe->tokens_per_expert[e]));
        json_object_set_new(row, "moe_tokens_per_expert", tpe);
        json_object_set_new(row, "moe_max_load", json_integer(moe->max_load));
        json_object_set_new(row, "moe_mean_load", json_real(moe->mean_load));
        json_object_set_new(row, "moe_dropped", json_integer(moe->dropped));
        json_object_set_new(row, "moe_aux_loss", json_real(moe->aux_loss));
    }
    if (json_alloc_failed()) {   /* a metrics row is never written short */
        json_decref(row);
        return DS_ENOMEM;
    }
    int rc = tlog_row(&x->log, row);
    if (rc) return rc;
    char mb[32], e1[32], e2[32];
    tlog_say(&x->log, "step %lld/%lld  loss %.4f  lr %.3e  grad_norm %.4f  %.0f tok/s  mem %s  elapsed %s  eta %s",
             (long long)x->st.step, (long long)x->st.total_steps, loss, s->lr, s->grad_norm, tok_per_s,
             ds_bytes_str((double)mem, mb, sizeof mb), ds_duration_str(elapsed, e1, sizeof e1),
             ds_duration_str(eta, e2, sizeof e2));
    if (moe->moe_layers)
        tlog_say(&x->log, "  experts: max load %d (mean %.1f) tokens per expert and layer, %lld dropped, balance loss %.4f",
                 moe->max_load, moe->mean_load, moe->dropped, moe->aux_loss);
    return DS_OK;
}

/* run_info.json and report.html (finetune/report/report.h): by-products, so a failure
 * to write them is said in the log and changes neither the run's outcome nor
 * its message. */
static void write_report(trainer *x, int rc, bool final)
{
    const char *state = !final ? "running" : rc == DS_OK ? "finished" : rc == DS_EINTERRUPTED ? "interrupted" : "failed";
    char msg[4096];   /* the run's message, kept across the writing (which may fail and set its own) */
    snprintf(msg, sizeof msg, "%s", ds_errmsg());
    /* the base model's scores as soon as they exist (and no earlier run's eval files) */
    int wrc = !final && x->n_evals && x->evals[0].has_before ? trainer_write_eval_files(x) : DS_OK;
    if (wrc || report_update(x->info, state)) tlog_say(&x->log, "report: not written: %s", ds_errmsg());
    else if (final) tlog_say(&x->log, "report: %s/report.html", x->r->output_dir);
    if (rc) ds_fail(rc, "%s", msg);
}

static int save_checkpoint(trainer *x)
{
    report_info_phase(x->info, "train");
    size_t P = x->ctx.adapter->nparams;
    float *m = ds_malloc(sizeof(float) * P, "the optimizer state");
    float *v = ds_malloc(sizeof(float) * P, "the optimizer state");
    int rc = m && v ? engine_get_params(x->ctx.eng, x->ctx.adapter->data) : DS_ENOMEM;
    if (!rc) rc = engine_get_adam(x->ctx.eng, m, v);
    x->st.elapsed_s += ds_now() - x->t_start;
    x->t_start = ds_now();
    if (!rc) rc = checkpoint_save(x->r->output_dir, &x->st, x->ctx.adapter, m, v, (int)x->r->save.keep_last);
    if (!rc) tlog_say(&x->log, "checkpoint: %s/checkpoints/step-%lld", x->r->output_dir, (long long)x->st.step);
    if (!rc) write_report(x, rc, false);
    report_info_phase(x->info, "checkpoints and reports");
    free(m);
    free(v);
    return rc;
}

/* ------------------------------------------------------------ the run */

/* A stop during the final evaluation or merge: the adapter and the last
 * checkpoint are whole, and --resume does what is left. */
static int stopped_after_training(trainer *x, int rc)
{
    if (rc != DS_EINTERRUPTED) return rc;
    return ds_fail_context(rc, "after training (the checkpoint of step %lld and %s/adapter are complete; ds-ft train "
                               "--resume finishes the evaluation and merge): ", (long long)x->st.step, x->r->output_dir);
}

static int finish(trainer *x)
{
    const recipe *r = x->r;
    int rc = engine_get_params(x->ctx.eng, x->ctx.adapter->data);
    char *dir = ds_path_join(r->output_dir, "adapter");
    if (!rc && !dir) rc = DS_ENOMEM;
    if (!rc) rc = lora_save_peft(x->ctx.adapter, dir);
    if (!rc) tlog_say(&x->log, "adapter: %s (PEFT format)", dir);
    free(dir);
    report_info_phase(x->info, "save adapter");
    if (!rc) rc = trainer_evaluate(x, true, x->st.step);
    if (!rc) rc = trainer_write_eval_files(x);
    if (!rc) trainer_print_summary(x);
    if (!rc && r->save.merge) {
        char *mdir = ds_path_join(r->output_dir, "merged");
        rc = mdir ? merge_write(x->ctx.model, x->ctx.adapter, r->plan.merge_source, mdir) : DS_ENOMEM;
        if (!rc) tlog_say(&x->log, "merged: %s (%s weights + adapter, bf16)", mdir, merge_source_name(r->plan.merge_source));
        free(mdir);
        report_info_phase(x->info, "merge");
    }
    return stopped_after_training(x, rc);
}

/* Evaluation before training; a stop there writes the step-0 checkpoint, so
 * that --resume starts training where a run never stopped would. */
static int evaluate_before(trainer *x)
{
    int rc = trainer_evaluate(x, false, 0);
    if (rc != DS_EINTERRUPTED) return rc;
    rc = save_checkpoint(x);
    if (rc) return rc;
    return ds_fail(DS_EINTERRUPTED, "interrupted during the evaluation before training; checkpoint step-0 written "
                                    "(continue with --resume)");
}

int train_run(const recipe *r, train_start start) { return train_run_ranks(r, start, NULL); }

int train_run_ranks(const recipe *r, train_start start, dist_comm *comm)
{
    trainer x;
    bool resume = start == TRAIN_RESUME;
    int rc = trainer_setup(&x, r, start, comm);
    bool set_up = rc == DS_OK && ranks_writes(&x.ranks);
    if (comm) rc = ranks_agree(&x.ranks, rc, "while setting up", NULL, NULL);
    if (!rc && comm && resume) rc = ranks_share_resume(&x);
    if (!rc && x.r->plan.needs_ref && r->loss.main.module->precompute_ref && r->loss.main.module->precompute_ref(r->loss.main.cfg))
        rc = trainer_precompute_ref(&x);
    if (!rc && r->eval.before_training && !resume && x.n_evals && ranks_writes(&x.ranks)) rc = evaluate_before(&x);

    double window_t = ds_now(), session_t = ds_now();
    long window_tokens = 0;
    log_window *window = &x.st.window;
    int64_t session_steps = 0;
    while (!rc && x.st.step < x.st.total_steps) {
        step_result s;
        rc = train_step(&x, &s);
        if (rc) break;
        session_steps++;
        window_tokens += s.tokens;
        window_add(window, &s);
        x.st.tokens += s.tokens;
        if (diverged(&x.st, s.loss, r->train.divergence_factor)) {
            rc = ds_fail(DS_ETRAIN, "training failed: the loss diverged at step %lld (its moving average %.4g is more "
                                    "than %g x its best, %.4g); the last checkpoint in %s/checkpoints is intact",
                         (long long)x.st.step, x.st.loss_ema, r->train.divergence_factor, x.st.loss_ema_best,
                         r->output_dir);
            break;
        }
        double now = ds_now(), elapsed = x.st.elapsed_s + now - x.t_start;
        double eta = (now - session_t) / session_steps * (double)(x.st.total_steps - x.st.step);
        bool last = x.st.step == x.st.total_steps;
        if (x.st.step % r->train.logging_steps == 0 || last) {
            rc = report_step(&x, &s, window, window_tokens / (now - window_t + 1e-9), elapsed, eta);
            window_t = now;
            window_tokens = 0;
            memset(window, 0, sizeof *window);
        } else {
            char e1[32];
            tlog_live(&x.log, "step %lld/%lld  loss %.4f  lr %.2e  eta %s", (long long)x.st.step,
                      (long long)x.st.total_steps, s.loss, s.lr, ds_duration_str(eta, e1, sizeof e1));
        }
        bool writes = ranks_writes(&x.ranks);
        if (!rc && writes && r->eval.every_steps > 0 && x.st.step % r->eval.every_steps == 0 && !last) {
            rc = trainer_evaluate_midway(&x, x.st.step);
            if (rc == DS_EINTERRUPTED) rc = DS_OK;   /* the checkpoint below, then the stop */
        }
        bool stop = x.ranks.comm ? x.ranks.stop : ds_interrupted();   /* ranks stop after the same step */
        if (writes && !rc && ((r->save.every_steps > 0 && x.st.step % r->save.every_steps == 0) || last || stop)) {
            rc = save_checkpoint(&x);
        }
        if (!rc && stop) {
            rc = ds_fail(DS_EINTERRUPTED, "interrupted at step %lld; checkpoint written (continue with --resume)",
                         (long long)x.st.step);
        }
    }
    report_info_phase(x.info, "train");
    if (!rc && ranks_writes(&x.ranks)) rc = finish(&x);
    if (set_up) write_report(&x, rc, true);
    trainer_free(&x);
    return rc;
}
