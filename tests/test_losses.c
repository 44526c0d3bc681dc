/* Loss modules against finite differences: random logits -> per-row
 * statistics (op_logits_stats) -> the module's loss and coefficients ->
 * dlogits (op_logits_grad), compared with central differences of the
 * module's own loss. Also the registry and option tables. */
#include "testutil.h"

#include "backend/backend.h"
#include "core/status.h"
#include "finetune/recipe/recipe.h"
#include "losses/logits.h"
#include "losses/loss.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 4, T = 6, V = 9, N = B * T };

typedef struct {
    backend *be;
    recipe_loss l;
    float z[N * V];
    int32_t targets[N];
    float ref[N];
    uint8_t forbidden[V];
    bool use_forbidden;
} harness;

/* The module's loss (and, with a, b, c, its coefficients) for the current z. */
static double module_loss(harness *h, float *a, float *b, float *c, float *lse)
{
    float lp[N], fm[N], lse_local[N];
    op_logits_stats(h->be, lse ? lse : lse_local, lp, fm, h->z, h->targets, h->use_forbidden ? h->forbidden : NULL, N, V);
    float za[N] = {0}, zb[N] = {0}, zc[N] = {0};
    loss_input in = {.B = B, .T = T, .targets = h->targets, .logprob = lp, .ref_logprob = h->ref,
                     .fmass = h->use_forbidden ? fm : NULL};
    loss_output out = {.a = a ? a : za, .b = b ? b : zb, .c = c ? c : zc};
    double norm = h->l.module->count(h->l.cfg, &in);
    cr_assert_eq(h->l.module->forward(h->l.cfg, &in, norm, &out), 0, "%s", ds_errmsg());
    return out.loss;
}

static void setup(harness *h, const char *section, bool penalty)
{
    memset(h, 0, sizeof *h);
    cr_assert_eq(be_open(BE_CPU, &h->be), 0);
    cr_assert_eq(recipe_loss_parse(section, penalty, &h->l), 0, "%s", ds_errmsg());
    tu_fill_uniform(h->z, N * V, 77, 2.0f);
    tu_fill_uniform(h->ref, N, 78, 1.0f);
    /* pairs of rows: a shared prompt (first 2 positions) then completion targets */
    for (int r = 0; r < B; r++)
        for (int t = 0; t < T; t++) h->targets[r * T + t] = t >= 1 && t < T - 1 ? (r * 5 + t * 3) % V : -1;
    h->forbidden[2] = h->forbidden[5] = 1;
    h->use_forbidden = penalty;
}

static void check_fd(harness *h, const char *what)
{
    float a[N] = {0}, b[N] = {0}, c[N] = {0}, lse[N];
    module_loss(h, a, b, c, lse);
    float dz[N * V], num[N * V];
    op_logits_grad(h->be, dz, h->z, lse, h->targets, a, b, h->use_forbidden ? c : NULL,
                   h->use_forbidden ? h->forbidden : NULL, N, V);
    const float eps = 1e-2f;
    for (int i = 0; i < N * V; i++) {
        float old = h->z[i];
        h->z[i] = old + eps;
        double lp = module_loss(h, NULL, NULL, NULL, NULL);
        h->z[i] = old - eps;
        double lm = module_loss(h, NULL, NULL, NULL, NULL);
        h->z[i] = old;
        num[i] = (float)((lp - lm) / (2 * eps));
    }
    double err = tu_rel_err(dz, num, N * V);
    cr_expect(err < 1e-2, "%s: dlogits vs finite differences, relative error %.3e", what, err);
    recipe_loss_free(&h->l);
    be_close(h->be);
}

Test(losses, sft_finite_differences)
{
    harness h;
    setup(&h, "{type: sft}", false);
    check_fd(&h, "sft");
}

Test(losses, dpo_sigmoid_finite_differences)
{
    harness h;
    setup(&h, "{type: dpo, beta: 0.5}", false);
    check_fd(&h, "dpo sigmoid");
}

Test(losses, dpo_label_smoothing_finite_differences)
{
    harness h;
    setup(&h, "{type: dpo, beta: 0.3, label_smoothing: 0.2}", false);
    check_fd(&h, "dpo sigmoid with label smoothing");
}

Test(losses, dpo_ipo_finite_differences)
{
    harness h;
    setup(&h, "{type: dpo, beta: 0.4, loss_type: ipo}", false);
    check_fd(&h, "dpo ipo");
}

Test(losses, dpo_hinge_finite_differences)
{
    harness h;
    setup(&h, "{type: dpo, beta: 0.05, loss_type: hinge}", false);
    check_fd(&h, "dpo hinge");
}

Test(losses, forbidden_tokens_finite_differences)
{
    harness h;
    setup(&h, "{type: forbidden_tokens, weight: 0.7, ids: [2, 5]}", true);
    check_fd(&h, "forbidden_tokens");
}

/* TRL's sigmoid loss for one pair, by hand: -log sigmoid(beta * delta). */
Test(losses, dpo_matches_the_formula_and_reports_trl_metrics)
{
    harness h;
    setup(&h, "{type: dpo, beta: 0.1}", false);
    float lp[N], fm[N], lse[N], a[N] = {0}, b[N] = {0};
    op_logits_stats(h.be, lse, lp, fm, h.z, h.targets, NULL, N, V);
    loss_input in = {.B = B, .T = T, .targets = h.targets, .logprob = lp, .ref_logprob = h.ref};
    loss_output out = {.a = a, .b = b};
    cr_assert_eq(h.l.module->count(h.l.cfg, &in), 2.0);
    cr_assert_eq(h.l.module->forward(h.l.cfg, &in, 2.0, &out), 0);
    double want = 0;
    for (int p = 0; p < 2; p++) {
        double s[2] = {0, 0};
        for (int w = 0; w < 2; w++)
            for (int t = 0; t < T; t++) {
                int i = (2 * p + w) * T + t;
                if (h.targets[i] >= 0) s[w] += lp[i] - h.ref[i];
            }
        want += log1p(exp(-0.1 * (s[0] - s[1]))) / 2;
    }
    cr_expect(fabs(out.loss - want) < 1e-6, "dpo loss %.8f, formula %.8f", out.loss, want);
    const char *names[] = {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                           "logps/chosen", "logps/rejected"};
    for (int k = 0; k < 6; k++) {
        bool found = false;
        for (int m = 0; m < out.metrics.n; m++) found |= !strcmp(out.metrics.name[m], names[k]);
        cr_expect(found, "dpo does not report %s", names[k]);
    }
    recipe_loss_free(&h.l);
    be_close(h.be);
}

Test(losses, registry_lists_every_module)
{
    char buf[128];
    cr_expect_str_eq(loss_names(buf, sizeof buf, false), "sft, dpo");
    cr_expect_str_eq(loss_names(buf, sizeof buf, true), "forbidden_tokens");
    cr_expect(loss_find("dpo") && (loss_find("dpo")->needs & LOSS_NEEDS_REF));
    cr_expect_null(loss_find("kto"));
}

Test(losses, forbidden_tokens_needs_a_set)
{
    recipe_loss l;
    /* checked when the recipe is read */
    cr_expect_eq(recipe_loss_parse("{type: forbidden_tokens, weight: 1.0}", true, &l), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "ids"), "%s", ds_errmsg());
    cr_expect_eq(recipe_loss_parse("{type: forbidden_tokens, strings: [\"\"]}", true, &l), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "empty string"), "%s", ds_errmsg());
    cr_expect_eq(recipe_loss_parse("{type: dpo, loss_type: hinge, label_smoothing: 0.1}", false, &l), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "label_smoothing"), "%s", ds_errmsg());
    /* ids against the vocabulary when the model is known */
    loss_env env = {.vocab_size = 10, .where = "test"};
    cr_assert_eq(recipe_loss_parse("{type: forbidden_tokens, ids: [3, 12]}", true, &l), 0);
    cr_expect_eq(l.module->prepare(l.cfg, &env), DS_ECONFIG, "id 12 is outside a 10-token vocabulary");
    recipe_loss_free(&l);
}
