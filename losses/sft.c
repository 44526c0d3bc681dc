/* losses/sft.c - supervised fine-tuning: mean token cross-entropy over the
 * rows that have a target (completion tokens; prompt and padding carry none,
 * like Hugging Face's labels = -100). Training on the whole text instead is a
 * data option (data.train_on_inputs), since it decides which rows get targets.
 *
 *   L = -(1/N) sum_i log p(t_i),   dL/dz_ij = (p_ij - [j = t_i]) / N
 * so a_i = 1/N and b_i = -1/N, with N the target tokens of the whole step. */
#include "loss.h"

#include "core/status.h"

static const opt_key SFT_KEYS[] = {OPT_END};

static double sft_count(const void *cfg, const loss_input *in)
{
    (void)cfg;
    return loss_count_targets(in);
}

static int sft_forward(const void *cfg, const loss_input *in, double norm, loss_output *out)
{
    (void)cfg;
    double nll = 0, count = 0;
    float w = norm > 0 ? (float)(1.0 / norm) : 0.0f;
    for (int i = 0; i < in->B * in->T; i++) {
        if (in->targets[i] < 0) continue;
        nll -= in->logprob[i];
        count += 1;
        out->a[i] += w;
        out->b[i] -= w;
    }
    out->loss += norm > 0 ? nll / norm : 0.0;
    loss_metrics_add(&out->metrics, "sft/nll", nll, count);
    return DS_OK;
}

const loss_module LOSS_SFT = {
    .name = "sft",
    .summary = "mean token cross-entropy over completion tokens",
    .keys = SFT_KEYS,
    .cfg_size = 1,
    .count = sft_count,
    .forward = sft_forward,
};
