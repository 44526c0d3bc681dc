/* losses/logits.c - per-row statistics of logits and dlogits from per-row
 * coefficients: plain-C references and dispatch to losses/logits_cuda.cu. */
#include "logits.h"

#include "backend/kernel.h"

#include <math.h>

void op_logits_stats(backend *be, float *lse, float *logprob, float *fmass, const float *z, const int32_t *targets,
                     const uint8_t *forbidden, int n, int V)
{
    DS_DISPATCH_CUDA(be, logits_stats_cuda(be, lse, logprob, fmass, z, targets, forbidden, n, V));
#pragma omp parallel for schedule(static) if ((long)n * V > DS_OMP_MIN_WORK)
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * V;
        float m = -INFINITY;
        for (int j = 0; j < V; j++) m = zi[j] > m ? zi[j] : m;
        double s = 0;
        for (int j = 0; j < V; j++) s += exp((double)zi[j] - m);
        float l = m + (float)log(s);
        lse[i] = l;
        logprob[i] = targets[i] >= 0 ? zi[targets[i]] - l : 0.0f;
        if (forbidden) {
            double f = 0;
            for (int j = 0; j < V; j++)
                if (forbidden[j]) f += exp((double)zi[j] - l);
            fmass[i] = (float)f;
        }
    }
}

void op_logits_grad(backend *be, void *dz, const float *z, const float *lse, const int32_t *targets, const float *a,
                    const float *b, const float *c, const uint8_t *forbidden, int n, int V)
{
    DS_DISPATCH_CUDA(be, logits_grad_cuda(be, dz, z, lse, targets, a, b, c, forbidden, n, V));
    float *d = dz;
#pragma omp parallel for schedule(static) if ((long)n * V > DS_OMP_MIN_WORK)
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * V;
        float *di = d + (size_t)i * V;
        float ci = c ? c[i] : 0.0f;
        for (int j = 0; j < V; j++) {
            float p = expf(zi[j] - lse[i]);
            float coef = a[i] + (c && forbidden && forbidden[j] ? ci : 0.0f);
            di[j] = p * coef + (j == targets[i] ? b[i] : 0.0f);
        }
    }
    be_round_act(be, dz, (size_t)n * V);
}
