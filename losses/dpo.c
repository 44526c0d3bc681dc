/* losses/dpo.c - Direct Preference Optimization, as TRL computes it.
 *
 * Rows come in pairs: 2k = prompt + chosen, 2k+1 = prompt + rejected, with
 * targets on the completion tokens only. With logπ the sum of completion
 * log-probs (IPO: their mean) under the policy and logπref under the
 * reference (the same model with adapters disabled):
 *   Δ = (logπ(c) - logπref(c)) - (logπ(r) - logπref(r))
 *   sigmoid: -(1-ε) logσ(βΔ) - ε logσ(-βΔ)
 *   ipo:     (Δ - 1/(2β))²
 *   hinge:   relu(1 - βΔ)
 * The loss is the mean over the pairs of the whole step. Its gradient reaches
 * each completion token's log-prob as ±dL/dΔ (÷ length for IPO), and
 * d logp/dz = onehot - p gives a_i = -g_i, b_i = g_i. */
#include "loss.h"

#include "core/status.h"
#include "data/dataset/batch.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

typedef struct {
    double beta;
    char *loss_type;          /* sigmoid | ipo | hinge */
    double label_smoothing;
    bool precompute_ref_log_probs;
} dpo_cfg;

static const opt_key DPO_KEYS[] = {
    {"beta", OPT_FLOAT, offsetof(dpo_cfg, beta), "0.1", 0, 1e6, NULL, OPT_MIN_OPEN, "β: strength of the preference (TRL's beta)"},
    {"loss_type", OPT_CHOICE, offsetof(dpo_cfg, loss_type), "sigmoid", 0, -1, "sigmoid|ipo|hinge", 0,
     "sigmoid (DPO), ipo, or hinge (SLiC)"},
    {"label_smoothing", OPT_FLOAT, offsetof(dpo_cfg, label_smoothing), "0.0", 0, 0.5, NULL, 0,
     "ε: assumed probability that a preference label is flipped (sigmoid only)"},
    {"precompute_ref_log_probs", OPT_BOOL, offsetof(dpo_cfg, precompute_ref_log_probs), "false", 0, -1, NULL, 0,
     "compute the reference log-probs once before training instead of every step"},
    OPT_END,
};

static int dpo_check(const void *cfg, const char *where)
{
    const dpo_cfg *c = cfg;
    if (c->label_smoothing > 0 && strcmp(c->loss_type, "sigmoid"))
        return ds_fail(DS_ECONFIG, "%s: label_smoothing applies to loss_type sigmoid only", where);
    return DS_OK;
}

static double dpo_count(const void *cfg, const loss_input *in)
{
    (void)cfg;
    return in->B / 2;
}

static double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Sum of a row's completion log-probs and its completion length. */
static void row_sum(const loss_input *in, const float *lp, int row, double *sum, double *len)
{
    *sum = batch_row_sum(in->targets, in->T, lp, row);
    *len = 0;
    for (int t = 0; t < in->T; t++) *len += in->targets[row * in->T + t] >= 0;
}

static int dpo_forward(const void *cfg, const loss_input *in, double norm, loss_output *out)
{
    const dpo_cfg *c = cfg;
    if (in->B % 2) return ds_fail(DS_EINTERNAL, "dpo: a micro-batch of %d rows is not made of pairs", in->B);
    if (!in->ref_logprob) return ds_fail(DS_EINTERNAL, "dpo: no reference log-probs");
    const bool ipo = !strcmp(c->loss_type, "ipo"), hinge = !strcmp(c->loss_type, "hinge");
    const double beta = c->beta, eps = c->label_smoothing;
    for (int k = 0; k < in->B / 2; k++) {
        int rc_row = 2 * k, rr_row = 2 * k + 1;
        double pc, pr, rfc, rfr, nc, nr;
        row_sum(in, in->logprob, rc_row, &pc, &nc);
        row_sum(in, in->logprob, rr_row, &pr, &nr);
        row_sum(in, in->ref_logprob, rc_row, &rfc, &nc);
        row_sum(in, in->ref_logprob, rr_row, &rfr, &nr);
        if (nc == 0 || nr == 0) return ds_fail(DS_EDATA, "dpo: pair %d has an empty completion", k);
        if (ipo) {   /* IPO works on per-token averages */
            pc /= nc; pr /= nr; rfc /= nc; rfr /= nr;
        }
        double delta = (pc - rfc) - (pr - rfr);
        double loss, dldelta;
        if (ipo) {
            double e = delta - 1.0 / (2.0 * beta);
            loss = e * e;
            dldelta = 2.0 * e;
        } else if (hinge) {
            loss = 1.0 - beta * delta > 0 ? 1.0 - beta * delta : 0.0;
            dldelta = 1.0 - beta * delta > 0 ? -beta : 0.0;
        } else {
            loss = -(1.0 - eps) * log_sigmoid(beta * delta) - eps * log_sigmoid(-beta * delta);
            dldelta = -(1.0 - eps) * beta * sigmoid(-beta * delta) + eps * beta * sigmoid(beta * delta);
        }
        out->loss += loss / norm;
        /* dL/dlogp of each completion token: +dL/dΔ for chosen, -dL/dΔ for rejected. */
        double gc = dldelta / norm / (ipo ? nc : 1.0), gr = -dldelta / norm / (ipo ? nr : 1.0);
        for (int t = 0; t < in->T; t++) {
            int ic = rc_row * in->T + t, ir = rr_row * in->T + t;
            if (in->targets[ic] >= 0) { out->a[ic] -= (float)gc; out->b[ic] += (float)gc; }
            if (in->targets[ir] >= 0) { out->a[ir] -= (float)gr; out->b[ir] += (float)gr; }
        }
        double rew_c = beta * (pc - rfc), rew_r = beta * (pr - rfr);
        loss_metrics_add(&out->metrics, "rewards/chosen", rew_c, 1);
        loss_metrics_add(&out->metrics, "rewards/rejected", rew_r, 1);
        loss_metrics_add(&out->metrics, "rewards/accuracies", rew_c > rew_r ? 1.0 : 0.0, 1);
        loss_metrics_add(&out->metrics, "rewards/margins", rew_c - rew_r, 1);
        loss_metrics_add(&out->metrics, "logps/chosen", pc, 1);
        loss_metrics_add(&out->metrics, "logps/rejected", pr, 1);
    }
    return DS_OK;
}

static bool dpo_precompute(const void *cfg) { return ((const dpo_cfg *)cfg)->precompute_ref_log_probs; }

const loss_module LOSS_DPO = {
    .name = "dpo",
    .summary = "direct preference optimisation against the adapter-free model (sigmoid, ipo, hinge)",
    .needs = LOSS_NEEDS_REF | LOSS_PAIRED,
    .keys = DPO_KEYS,
    .cfg_size = sizeof(dpo_cfg),
    .check = dpo_check,
    .count = dpo_count,
    .forward = dpo_forward,
    .precompute_ref = dpo_precompute,
};
