/* losses/logits.h - the vocabulary-sized part of every loss.
 *
 * The engine never holds the full (N, V) logits: it computes them a chunk of
 * rows at a time (lm_head), reduces each chunk to per-row statistics, and in
 * the backward recomputes each chunk and turns it into dlogits from per-row
 * coefficients. Every loss ds-ft knows has a gradient of the form
 *
 *   dL/dz[i, j] = p[i, j] * (a[i] + c[i] * F[j]) + b[i] * [j == t[i]]
 *
 * with p = softmax(z[i]), t[i] the target token and F the forbidden-token set:
 * cross-entropy (a = w, b = -w), sequence log-prob losses such as DPO
 * (a = -g, b = g), and the forbidden-token penalty (a = -w P/(1-P), c = w/(1-P)).
 * Loss modules (loss.h) compute a, b, c from the statistics below.
 */
#ifndef DS_LOSSES_LOGITS_H
#define DS_LOSSES_LOGITS_H

#include "backend/backend.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* For each row i of z (n, V) fp32:
 *   lse[i] = log sum_j exp(z[i, j]);
 *   logprob[i] = z[i, t[i]] - lse[i]  (0 when t[i] < 0);
 *   fmass[i] = sum_{j : forbidden[j]} exp(z[i, j] - lse[i])  (only when forbidden != NULL;
 *              forbidden is a (V) byte mask; fmass may then not be NULL).
 * All outputs (n) fp32. */
void op_logits_stats(backend *be, float *lse, float *logprob, float *fmass, const float *z, const int32_t *targets,
                     const uint8_t *forbidden, int n, int V);

/* dz (n, V) act = p (a + c F) + b [j == t]  with p = exp(z - lse).
 * a, b (n) fp32; c (n) fp32 or NULL (then forbidden is ignored). */
void op_logits_grad(backend *be, void *dz, const float *z, const float *lse, const int32_t *targets, const float *a,
                    const float *b, const float *c, const uint8_t *forbidden, int n, int V);

void logits_stats_cuda(backend *be, float *lse, float *logprob, float *fmass, const float *z, const int32_t *targets,
                       const uint8_t *forbidden, int n, int V);
void logits_grad_cuda(backend *be, void *dz, const float *z, const float *lse, const int32_t *targets, const float *a,
                      const float *b, const float *c, const uint8_t *forbidden, int n, int V);

#ifdef __cplusplus
}
#endif

#endif
