/* finetune/run/dump_loss.c - the loss parts of ds-ft dump: SFT coefficients and
 * the dpo.* outputs, computed by the registered loss modules. */
#include "dump_internal.h"

#include "finetune/recipe/recipe.h"

#include "core/mem.h"
#include "core/status.h"
#include "losses/loss.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Run the loss a YAML section describes ("{type: sft}") on one micro-batch. */
static int run_loss(const char *section, const batch *b, const float *lp, const float *ref, float *a, float *bc,
                    double *loss)
{
    recipe_loss l;
    int rc = recipe_loss_parse(section, false, &l);
    if (rc) return rc;
    loss_input in = {.B = b->B, .T = b->T, .targets = b->targets, .logprob = lp, .ref_logprob = ref};
    loss_output out = {.a = a, .b = bc};
    memset(a, 0, sizeof(float) * (size_t)b->B * b->T);
    memset(bc, 0, sizeof(float) * (size_t)b->B * b->T);
    rc = l.module->forward(l.cfg, &in, l.module->count(l.cfg, &in), &out);
    *loss = out.loss;
    recipe_loss_free(&l);
    return rc;
}

int dump_sft_coefs(const batch *b, const float *logprob, float *a, float *bc)
{
    double loss;
    return run_loss("{type: sft}", b, logprob, NULL, a, bc, &loss);
}

int dump_dpo_batch(const st_file *in, const char *path, batch *out)
{
    const st_tensor *ch = st_file_find(in, "dpo.chosen_ids"), *rj = st_file_find(in, "dpo.rejected_ids");
    const st_tensor *pl = st_file_find(in, "dpo.prompt_len");
    if (!ch || !rj || !pl || ch->ndim != 2 || st_check_shape(rj, 2, ch->shape) || pl->numel != 1)
        return ds_fail(DS_EDATA, "%s: dpo.chosen_ids and dpo.rejected_ids (same 2-d shape) and dpo.prompt_len needed",
                       path);
    int P = (int)ch->shape[0], T = (int)ch->shape[1];
    int32_t prompt_len;
    int32_t *c = ds_malloc(sizeof(int32_t) * (size_t)P * T, "dpo.chosen_ids");
    int32_t *r = ds_malloc(sizeof(int32_t) * (size_t)P * T, "dpo.rejected_ids");
    int rc = c && r ? st_to_i32(ch, c) : DS_ENOMEM;
    if (!rc) rc = st_to_i32(rj, r);
    if (!rc) rc = st_to_i32(pl, &prompt_len);
    if (!rc && (prompt_len < 1 || prompt_len >= T)) rc = ds_fail(DS_EDATA, "%s: dpo.prompt_len out of range", path);
    if (!rc) rc = batch_alloc(out, 2 * P, T);
    for (int p = 0; !rc && p < P; p++)
        for (int which = 0; which < 2; which++) {
            const int32_t *src = (which ? r : c) + (size_t)p * T;
            int row = 2 * p + which;
            for (int t = 0; t < T; t++) {
                size_t i = (size_t)row * T + t;
                out->ids[i] = src[t];
                out->pos[i] = t;
                out->seg[i] = 0;
                /* completion tokens are the targets: position t predicts t + 1 */
                out->targets[i] = t + 1 < T && t + 1 >= prompt_len ? src[t + 1] : -1;
            }
        }
    free(c);
    free(r);
    return rc;
}

/* Sum of log-probs per row (the completion's log-likelihood). */
static void row_sums(const batch *b, const float *lp, float *chosen, float *rejected)
{
    for (int p = 0; p < b->B / 2; p++)
        for (int which = 0; which < 2; which++) {
            double s = 0;
            int row = 2 * p + which;
            for (int t = 0; t < b->T; t++)
                if (b->targets[(size_t)row * b->T + t] >= 0) s += lp[(size_t)row * b->T + t];
            (which ? rejected : chosen)[p] = (float)s;
        }
}

int dump_dpo(engine *e, const st_file *in, const batch *pairs, const lora_adapter *ad, st_writer *w)
{
    size_t N = (size_t)pairs->B * pairs->T;
    int P = pairs->B / 2;
    float beta = 0.1f;
    const st_tensor *tb = st_file_find(in, "dpo.beta");
    if (tb && tb->numel == 1) st_to_f32(tb, &beta);
    float *ref = ds_malloc(sizeof(float) * N, "log-probabilities");
    float *lp = ds_malloc(sizeof(float) * N, "log-probabilities");
    float *a = ds_malloc(sizeof(float) * N, "loss coefficients");
    float *bc = ds_malloc(sizeof(float) * N, "loss coefficients");
    float *grads = ds_malloc(sizeof(float) * ad->nparams, "gradients");
    float *pc = ds_malloc(sizeof(float) * P, "log-likelihoods"), *pr = ds_malloc(sizeof(float) * P, "log-likelihoods");
    engine_fwd fref = {.lora = false}, fpol = {.lora = true, .for_backward = true};
    double loss = 0;
    bool have_all = ref && lp && a && bc && grads && pc && pr;
    int rc = have_all ? engine_forward(e, pairs, &fref, ref, NULL) : DS_ENOMEM;
    if (!rc) rc = engine_zero_grads(e);
    if (!rc) rc = engine_forward(e, pairs, &fpol, lp, NULL);
    char section[64];
    snprintf(section, sizeof section, "{type: dpo, beta: %.9g}", beta);
    if (!rc) rc = run_loss(section, pairs, lp, ref, a, bc, &loss);
    if (!rc) rc = engine_backward(e, a, bc, NULL);
    if (!rc) rc = engine_get_grads(e, grads);
    int64_t np = P, one = 1;
    float l = (float)loss;
    if (!rc) {
        row_sums(pairs, lp, pc, pr);
        rc = st_writer_add_copy(w, "dpo.policy_chosen_logps", ST_F32, 1, &np, pc);
        if (!rc) rc = st_writer_add_copy(w, "dpo.policy_rejected_logps", ST_F32, 1, &np, pr);
        row_sums(pairs, ref, pc, pr);
        if (!rc) rc = st_writer_add_copy(w, "dpo.ref_chosen_logps", ST_F32, 1, &np, pc);
        if (!rc) rc = st_writer_add_copy(w, "dpo.ref_rejected_logps", ST_F32, 1, &np, pr);
        if (!rc) rc = st_writer_add_copy(w, "dpo.loss", ST_F32, 1, &one, &l);
        if (!rc) rc = dump_adapter_tensors(w, "dpo.grad.", ad, grads);
    }
    free(ref);
    free(lp);
    free(a);
    free(bc);
    free(grads);
    free(pc);
    free(pr);
    return rc;
}
