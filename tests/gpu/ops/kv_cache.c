/* tests/gpu/ops/kv_cache.c - GPU test cases of kv_store, rope_kv_store and attention_cached: the
 * CUDA twins against the plain-C references (finetune/engine/ops/kv_cache.c and
 * cuda/kv_cache.cu). B cache rows of T positions; N tokens; K the window. */
#include "tests/gpu/gpu_ops.h"

#include "core/rng.h"
#include "finetune/engine/ops/ops_decode.h"

#include <math.h>

/* N distinct (row, position) slots; for attention, positions anywhere in the row
 * (the whole cache holds values), at least one at the row's end. */
static void rand_slots(tctx *t, const op_case *c, int32_t *row, int32_t *pos)
{
    ds_rng r = ds_rng_make(t->seed, 400 + t->draws++);
    for (int n = 0; n < c->N; n++) {
        for (;;) {
            row[n] = (int32_t)ds_rng_below(&r, (uint64_t)c->B);
            pos[n] = n == 0 ? c->T - 1 : (int32_t)ds_rng_below(&r, (uint64_t)c->T);
            int dup = 0;
            for (int m = 0; m < n; m++) dup |= row[m] == row[n] && pos[m] == pos[n];
            if (!dup) break;
        }
    }
}

static void run_kv(tctx *t, const op_case *c)
{
    const kv_shape s = {.H = c->H, .Hkv = c->Hkv, .D = c->D, .window = c->K, .scale = c->p, .ctx = c->T};
    const size_t slots = (size_t)c->B * c->T, KVD = (size_t)c->Hkv * c->D, nq = (size_t)c->N * c->H * c->D;
    int32_t *row = hmem(t, c->N * sizeof(int32_t)), *pos = hmem(t, c->N * sizeof(int32_t));
    rand_slots(t, c, row, pos);
    float *kc = rnd(t, slots * KVD, 2.0f, false), *vc = rnd(t, slots * KVD, 1.0f, false);
    int32_t *grow = dev_raw(t, row, c->N * sizeof(int32_t)), *gpos = dev_raw(t, pos, c->N * sizeof(int32_t));
    void *gkc = dev_act(t, kc, slots * KVD), *gvc = dev_act(t, vc, slots * KVD);
    if (c->op == OP_KV_STORE) {
        float *k = rnd(t, c->N * KVD, 2.0f, false), *v = rnd(t, c->N * KVD, 1.0f, false);
        op_kv_store(t->cpu, kc, vc, k, v, row, pos, c->N, &s);
        op_kv_store(t->gpu, gkc, gvc, dev_act(t, k, c->N * KVD), dev_act(t, v, c->N * KVD), grow, gpos, c->N, &s);
        gpu_ok(t);
        check(t, "keys", get_act(t, gkc, slots * KVD), kc, slots * KVD, F32);    /* copies: exact */
        check(t, "values", get_act(t, gvc, slots * KVD), vc, slots * KVD, F32);
        return;
    }
    float *q = rnd(t, nq, 2.0f, false), *out = hmem(t, nq * sizeof(float));
    op_attention_cached(t->cpu, out, q, kc, vc, row, pos, c->N, &s);
    void *gout = dev_poison(t, nq * 2);
    op_attention_cached(t->gpu, gout, dev_act(t, q, nq), gkc, gvc, grow, gpos, c->N, &s);
    gpu_ok(t);
    check(t, "out", get_act(t, gout, nq), out, nq, c->tol);
}

/* The decode step's fused rotation and store against op_rope twice and
 * op_kv_store on the CPU: rotated q and k to the rope cases' tolerance, the
 * cache slots of the new tokens exactly as k (rotated) and v were left. */
static void run_rope_kv(tctx *t, const op_case *c)
{
    const kv_shape s = {.H = c->H, .Hkv = c->Hkv, .D = c->D, .ctx = c->T};
    const size_t slots = (size_t)c->B * c->T, KVD = (size_t)c->Hkv * c->D, nq = (size_t)c->N * c->H * c->D;
    int32_t *row = hmem(t, c->N * sizeof(int32_t)), *pos = hmem(t, c->N * sizeof(int32_t));
    rand_slots(t, c, row, pos);
    rope_table rt = {.half = c->D / 2, .scale = c->flag & 2 ? 1.3f : 1.0f};
    for (int i = 0; i < rt.half; i++) rt.inv_freq[i] = 1.0f / powf(10000.0f, (float)(2 * i) / (float)c->D);
    float *kc = rnd(t, slots * KVD, 2.0f, false), *vc = rnd(t, slots * KVD, 1.0f, false);
    float *q = rnd(t, nq, 1.0f, false), *k = rnd(t, c->N * KVD, 1.0f, false), *v = rnd(t, c->N * KVD, 1.0f, false);
    void *gq = dev_act(t, q, nq), *gk = dev_act(t, k, c->N * KVD), *gv = dev_act(t, v, c->N * KVD);
    void *gkc = dev_act(t, kc, slots * KVD), *gvc = dev_act(t, vc, slots * KVD);
    op_rope_kv_store(t->cpu, q, k, v, kc, vc, row, pos, c->N, &s, &rt);
    op_rope_kv_store(t->gpu, gq, gk, gv, gkc, gvc, dev_raw(t, row, c->N * sizeof(int32_t)),
                     dev_raw(t, pos, c->N * sizeof(int32_t)), c->N, &s, &rt);
    gpu_ok(t);
    check(t, "q", get_act(t, gq, nq), q, nq, c->tol);
    check(t, "k", get_act(t, gk, c->N * KVD), k, c->N * KVD, c->tol);
    check(t, "keys", get_act(t, gkc, slots * KVD), kc, slots * KVD, c->tol);
    check(t, "values", get_act(t, gvc, slots * KVD), vc, slots * KVD, F32);   /* copies: exact */
}

const op_case GPU_CASES_KV_CACHE[] = {
    /* rotation and store: a decode step, grouped heads and a yarn scale, a prefill of 17 tokens */
    {.run = run_rope_kv, .op = OP_ROPE_KV_STORE, .B = 1, .T = 300, .N = 1, .H = 32, .Hkv = 32, .D = 128, .tol = BF},
    {.run = run_rope_kv, .op = OP_ROPE_KV_STORE, .B = 4, .T = 90, .N = 4, .H = 28, .Hkv = 4, .D = 128, .flag = 2,
     .tol = BF},
    {.run = run_rope_kv, .op = OP_ROPE_KV_STORE, .B = 3, .T = 40, .N = 17, .H = 4, .Hkv = 2, .D = 64, .tol = BF},
    {.run = run_kv, .op = OP_KV_STORE, .B = 3, .T = 40, .N = 17, .H = 4, .Hkv = 2, .D = 64, .tol = F32},
    {.run = run_kv, .op = OP_KV_STORE, .B = 1, .T = 300, .N = 1, .H = 32, .Hkv = 32, .D = 128, .tol = F32},
    {.run = run_kv, .op = OP_KV_STORE, .B = 2, .T = 40, .N = 9, .H = 4, .Hkv = 4, .D = 192, .tol = F32},
    /* decode steps (one token per row), a prefill, grouped heads, windows, a scale */
    {.run = run_kv, .op = OP_ATTN_CACHED, .B = 1, .T = 1, .N = 1, .H = 2, .Hkv = 2, .D = 16, .tol = BF},
    {.run = run_kv, .op = OP_ATTN_CACHED, .B = 4, .T = 300, .N = 4, .H = 32, .Hkv = 8, .D = 128, .tol = BF},
    {.run = run_kv, .op = OP_ATTN_CACHED, .B = 1, .T = 130, .N = 100, .H = 4, .Hkv = 1, .D = 64, .tol = BF},
    {.run = run_kv, .op = OP_ATTN_CACHED, .B = 2, .T = 257, .N = 9, .H = 4, .Hkv = 2, .D = 32, .K = 8, .tol = BF},
    {.run = run_kv, .op = OP_ATTN_CACHED, .B = 2, .T = 500, .N = 5, .H = 6, .Hkv = 3, .D = 128, .K = 100,
     .p = 0.05f, .tol = BF},
    /* D = 192 (DeepSeek-V2 latent attention): all heads cached, then grouped with a window and a scale */
    {.run = run_kv, .op = OP_ATTN_CACHED, .B = 4, .T = 300, .N = 4, .H = 4, .Hkv = 4, .D = 192, .tol = BF},
    {.run = run_kv, .op = OP_ATTN_CACHED, .B = 1, .T = 130, .N = 50, .H = 4, .Hkv = 1, .D = 192, .K = 64, .p = 0.1f,
     .tol = BF},
    {.run = run_kv, .op = OP_ATTN_CACHED, .B = 1, .T = 4096, .N = 1, .H = 32, .Hkv = 32, .D = 128, .tol = BF,
     .heavy = true},
};
const int GPU_NCASES_KV_CACHE = sizeof GPU_CASES_KV_CACHE / sizeof GPU_CASES_KV_CACHE[0];
