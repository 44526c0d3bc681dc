/* The trainer's arithmetic: learning-rate schedules as Hugging Face computes
 * them, and gradient accumulation as one mean over the whole accumulated
 * batch (not a mean of per-micro-batch means). */
#include "testutil.h"

#include "core/status.h"
#include "finetune/engine/engine.h"
#include "finetune/recipe/recipe.h"
#include "finetune/train/schedule.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* transformers.get_{constant,linear,cosine}_schedule_with_warmup, step by step. */
static double hf_lambda(lr_kind k, long step, long warmup, long total)
{
    if (step < warmup) return (double)step / (double)(warmup > 1 ? warmup : 1);
    if (k == LR_CONSTANT) return 1.0;
    double progress = (double)(step - warmup) / (double)(total - warmup > 1 ? total - warmup : 1);
    if (k == LR_LINEAR) return fmax(0.0, (double)(total - step) / (double)(total - warmup > 1 ? total - warmup : 1));
    return fmax(0.0, 0.5 * (1.0 + cos(M_PI * progress)));
}

Test(trainer_math, schedules_match_transformers)
{
    lr_kind kinds[] = {LR_CONSTANT, LR_LINEAR, LR_COSINE};
    for (int k = 0; k < 3; k++)
        for (long warmup = 0; warmup <= 7; warmup += 7) {
            lr_schedule s = {.kind = kinds[k], .peak = 2e-4, .warmup = warmup, .total = 50};
            for (long step = 0; step < 50; step++) {
                double want = 2e-4 * hf_lambda(kinds[k], step, warmup, 50);
                cr_assert(fabs(lr_at(&s, step) - want) < 1e-15, "kind %d warmup %ld step %ld: %g vs %g", k, warmup,
                          step, lr_at(&s, step), want);
            }
        }
    /* the recipe's lr_scheduler becomes the plan's lr_kind; other names are refused */
    const char *text = "base_model: m\noutput_dir: o\ndata: {datasets: [{path: d.jsonl, type: text}]}\n";
    char *cosine[] = {"train.lr_scheduler=cosine"}, *poly[] = {"train.lr_scheduler=polynomial"};
    recipe *r = NULL;
    cr_expect_eq(recipe_parse(text, strlen(text), "r.yaml", cosine, 1, NULL, &r), 0, "%s", ds_errmsg());
    cr_expect(r && r->plan.lr_scheduler == LR_COSINE);
    recipe_free(r);
    cr_expect_eq(recipe_parse(text, strlen(text), "r.yaml", poly, 1, NULL, &r), DS_ECONFIG);
}

/* Rows 0..3 of a batch as one micro-batch, or as two of two rows: with the
 * loss normalised over the step's target tokens the gradients are equal,
 * although the two halves hold different numbers of targets. */
Test(trainer_math, accumulation_is_one_mean_over_the_whole_step)
{
    backend *be;
    cr_assert_eq(be_open(BE_CPU, &be), 0);
    char *dir = tu_shared_path("fixtures/tiny-llama"), *adir = tu_shared_path("fixtures/tiny-llama/adapter");
    llama_model *m;
    lora_adapter *ad;
    cr_assert_eq(model_load(dir, NULL, &m), 0, "%s", ds_errmsg());
    cr_assert_eq(lora_load_peft(adir, &m->cfg, &ad), 0, "%s", ds_errmsg());
    enum { T = 16 };
    batch whole, half[2];
    batch_alloc(&whole, 4, T);
    for (int r = 0; r < 4; r++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)r * T + t;
            whole.ids[i] = (r * 37 + t * 11) % 1000 + 2;
            whole.pos[i] = t;
        }
    for (int r = 0; r < 4; r++)   /* row 0 trains on 2 tokens, the others on more */
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)r * T + t;
            whole.targets[i] = t + 1 < T && t >= (r == 0 ? T - 3 : 4) ? whole.ids[i + 1] : -1;
        }
    for (int h = 0; h < 2; h++) {
        batch_alloc(&half[h], 2, T);
        size_t n = 2 * T;
        memcpy(half[h].ids, whole.ids + h * n, n * sizeof(int32_t));
        memcpy(half[h].pos, whole.pos + h * n, n * sizeof(int32_t));
        memcpy(half[h].seg, whole.seg + h * n, n * sizeof(int32_t));
        memcpy(half[h].targets, whole.targets + h * n, n * sizeof(int32_t));
    }
    engine *e;
    engine_opts eo = {.max_B = 4, .max_T = T, .training = true, .adapter = ad};
    cr_assert_eq(engine_create(be, m, &eo, &e), 0, "%s", ds_errmsg());
    recipe_loss l;
    cr_assert_eq(recipe_loss_parse("{type: sft}", false, &l), 0);
    float lp[4 * T], a[4 * T], b[4 * T];
    float *g_whole = malloc(sizeof(float) * ad->nparams), *g_acc = malloc(sizeof(float) * ad->nparams);
    engine_fwd f = {.lora = true, .for_backward = true};

    /* one micro-batch */
    loss_input in = {.B = 4, .T = T, .targets = whole.targets, .logprob = lp};
    double norm = l.module->count(l.cfg, &in);
    cr_assert_eq(engine_zero_grads(e), 0);
    cr_assert_eq(engine_forward(e, &whole, &f, lp, NULL), 0);
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    loss_output out = {.a = a, .b = b};
    cr_assert_eq(l.module->forward(l.cfg, &in, norm, &out), 0);
    double loss_whole = out.loss;
    cr_assert_eq(engine_backward(e, a, b, NULL), 0);
    cr_assert_eq(engine_get_grads(e, g_whole), 0);

    /* two micro-batches, normalised by the step's total, gradients accumulating */
    double total = 0, loss_acc = 0;
    for (int h = 0; h < 2; h++) {
        loss_input ih = {.B = 2, .T = T, .targets = half[h].targets};
        total += l.module->count(l.cfg, &ih);
    }
    cr_assert_eq(total, norm);
    cr_assert_eq(engine_zero_grads(e), 0);
    for (int h = 0; h < 2; h++) {
        cr_assert_eq(engine_forward(e, &half[h], &f, lp, NULL), 0);
        memset(a, 0, sizeof a);
        memset(b, 0, sizeof b);
        loss_input ih = {.B = 2, .T = T, .targets = half[h].targets, .logprob = lp};
        loss_output oh = {.a = a, .b = b};
        cr_assert_eq(l.module->forward(l.cfg, &ih, total, &oh), 0);
        loss_acc += oh.loss;
        cr_assert_eq(engine_backward(e, a, b, NULL), 0);
    }
    cr_assert_eq(engine_get_grads(e, g_acc), 0);
    cr_expect(fabs(loss_acc - loss_whole) < 1e-5 * loss_whole, "loss %.8f accumulated vs %.8f whole", loss_acc,
              loss_whole);
    double err = tu_rel_err(g_acc, g_whole, ad->nparams);
    cr_expect(err < 1e-5, "accumulated gradients vs one batch: relative error %.3e", err);
    recipe_loss_free(&l);
    free(g_whole);
    free(g_acc);
    batch_free(&whole);
    batch_free(&half[0]);
    batch_free(&half[1]);
    engine_free(e);
    lora_free(ad);
    model_free(m);
    be_close(be);
    free(dir);
    free(adir);
}
