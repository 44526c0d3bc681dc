/* finetune/run/sampler.c - the next token from a row of logits: repetition
 * penalty, greedy or temperature + top-k + top-p + min-p (generate.h says in
 * what order and by which rules, those of transformers). */
#include "generate.h"

#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float v;
    int id;
} scored;

/* Descending by value, then ascending by id: a total order, so the cuts are
 * the same on every platform. */
static int by_value_desc(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/* probs = softmax(w) over the finite entries (0 elsewhere). */
static void softmax(const float *w, int V, float *probs)
{
    float m = -INFINITY;
    for (int i = 0; i < V; i++)
        if (w[i] > m) m = w[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += w[i] == -INFINITY ? 0.0 : exp((double)w[i] - m);
    for (int i = 0; i < V; i++) probs[i] = w[i] == -INFINITY ? 0.0f : (float)(exp((double)w[i] - m) / sum);
}

int sampler_probs(const float *logits, int V, const sampler_opts *s, const int32_t *history, size_t n, float *probs)
{
    float *w = ds_malloc(sizeof(float) * (size_t)V, "the sampler's logits");
    uint8_t *seen = s->repetition_penalty != 1.0f ? ds_calloc((size_t)V, 1, "the sampler's seen tokens") : NULL;
    scored *sorted = s->temperature > 0 && (s->top_k > 0 || s->top_p < 1.0f)
                         ? ds_malloc(sizeof(scored) * (size_t)V, "the sampler's ranking") : NULL;
    if (!w || (s->repetition_penalty != 1.0f && !seen) ||
        (s->temperature > 0 && (s->top_k > 0 || s->top_p < 1.0f) && !sorted)) {
        free(w), free(seen), free(sorted);
        return DS_ENOMEM;
    }
    memcpy(w, logits, sizeof(float) * (size_t)V);
    if (seen) {   /* once per distinct token, as transformers' gather/scatter does */
        for (size_t i = 0; i < n; i++) {
            int t = history[i];
            if (t < 0 || t >= V || seen[t]) continue;
            seen[t] = 1;
            w[t] = w[t] < 0 ? w[t] * s->repetition_penalty : w[t] / s->repetition_penalty;
        }
    }
    if (s->temperature <= 0) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (w[i] > w[best]) best = i;
        memset(probs, 0, sizeof(float) * (size_t)V);
        probs[best] = 1.0f;
        free(w), free(seen), free(sorted);
        return DS_OK;
    }
    for (int i = 0; i < V; i++) w[i] /= s->temperature;
    if (sorted) {
        for (int i = 0; i < V; i++) sorted[i] = (scored){w[i], i};
        qsort(sorted, (size_t)V, sizeof *sorted, by_value_desc);
    }
    if (s->top_k > 0 && s->top_k < V) {   /* below the k-th best value: removed (ties with it kept) */
        float kth = sorted[s->top_k - 1].v;
        for (int i = 0; i < V; i++)
            if (w[i] < kth) w[i] = -INFINITY;
    }
    if (s->top_p < 1.0f) {   /* from the least likely up: removed while the removed mass stays <= 1 - p */
        softmax(w, V, probs);
        double tail = 0;
        for (int r = V - 1; r > 0; r--) {
            int id = sorted[r].id;
            if (w[id] == -INFINITY) continue;
            tail += probs[id];
            if (tail > 1.0 - s->top_p) break;
            w[id] = -INFINITY;
        }
    }
    if (s->min_p > 0) {   /* less likely than min_p times the likeliest: removed */
        softmax(w, V, probs);
        float top = 0;
        for (int i = 0; i < V; i++)
            if (probs[i] > top) top = probs[i];
        for (int i = 0; i < V; i++)
            if (probs[i] < s->min_p * top) w[i] = -INFINITY;
    }
    softmax(w, V, probs);
    free(w), free(seen), free(sorted);
    return DS_OK;
}

int sampler_pick(const float *probs, int V, ds_rng *rng)
{
    double u = ds_rng_uniform(rng), acc = 0;
    int last = -1;
    for (int i = 0; i < V; i++) {
        if (probs[i] <= 0) continue;
        last = i;
        acc += probs[i];
        if (u < acc) return i;
    }
    return last < 0 ? 0 : last;   /* u beyond the rounded total: the last token with mass */
}
