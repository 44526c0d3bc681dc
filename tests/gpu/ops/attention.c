/* tests/gpu/ops/attention.c - GPU test cases of attention: the CUDA twin against the plain-C
 * reference (finetune/engine/ops/attention.c and cuda/attention_{fwd,bwd}.cu). */
#include "tests/gpu/gpu_ops.h"

#include <string.h>

/* K: the sliding window (0 = none); p: the softmax scale (0 = 1/sqrt(D)). */
static void run_attention(tctx *t, const op_case *c)
{
    const int B = c->B, T = c->T, H = c->H, Hkv = c->Hkv, D = c->D;
    const attn_shape sh = {.B = B, .T = T, .H = H, .Hkv = Hkv, .D = D, .window = c->K, .scale = c->p};
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * Hkv * D, nl = (size_t)B * T * H;
    float *q = rnd(t, nq, 2.0f, false), *k = rnd(t, nk, 2.0f, false), *v = rnd(t, nk, 1.0f, false);
    int32_t *seg = c->flag ? rand_segments(t, B, T, c->flag) : NULL;
    float *out = hmem(t, nq * sizeof(float)), *lse = hmem(t, nl * sizeof(float));
    if (c->tol >= 0) op_attention_fwd(t->cpu, out, lse, q, k, v, seg, &sh);
    void *gq = dev_act(t, q, nq), *gk = dev_act(t, k, nk), *gv = dev_act(t, v, nk);
    int32_t *gseg = seg ? dev_raw(t, seg, (size_t)B * T * sizeof(int32_t)) : NULL;
    if (c->op == OP_ATTN_FWD) {
        void *gout = dev_poison(t, nq * 2);
        float *glse = dev_poison(t, nl * sizeof(float));
        op_attention_fwd(t->gpu, gout, glse, gq, gk, gv, gseg, &sh);
        if (c->tol < 0) {   /* unsupported head size: a clear failure, no crash */
            int rc = be_sync(t->gpu);
            cr_assert_neq(rc, DS_OK, "%s: expected a failure", t->desc);
            cr_assert(strstr(ds_errmsg(), "head_dim"), "%s: message: %s", t->desc, ds_errmsg());
            return;
        }
        gpu_ok(t);
        check(t, "out", get_act(t, gout, nq), out, nq, c->tol);
        check(t, "lse", get_f32(t, glse, nl), lse, nl, F32);
        if (D == 128) {   /* on an H100 the above ran the wgmma kernel: the mma.sync one must agree too */
            t->gpu->attn_fwd_rows = 32;
            gout = dev_poison(t, nq * 2), glse = dev_poison(t, nl * sizeof(float));
            op_attention_fwd(t->gpu, gout, glse, gq, gk, gv, gseg, &sh);
            t->gpu->attn_fwd_rows = 0;
            gpu_ok(t);
            check(t, "out (mma.sync)", get_act(t, gout, nq), out, nq, c->tol);
            check(t, "lse (mma.sync)", get_f32(t, glse, nl), lse, nl, F32);
        }
        return;
    }
    for (size_t i = 0; i < nq; i++) out[i] = ds_round_bf16(out[i]);   /* what the GPU forward stores */
    float *dout = rnd(t, nq, 1.0f, false);
    float *dq = hmem(t, nq * sizeof(float)), *dk = hmem(t, nk * sizeof(float)), *dv = hmem(t, nk * sizeof(float));
    op_attention_bwd(t->cpu, dq, dk, dv, dout, out, lse, q, k, v, seg, &sh);
    void *gdq = dev_poison(t, nq * 2), *gdk = dev_poison(t, nk * 2), *gdv = dev_poison(t, nk * 2);
    op_attention_bwd(t->gpu, gdq, gdk, gdv, dev_act(t, dout, nq), dev_act(t, out, nq), dev_f32(t, lse, nl), gq, gk, gv,
                     gseg, &sh);
    gpu_ok(t);
    check(t, "dq", get_act(t, gdq, nq), dq, nq, c->tol);
    check(t, "dk", get_act(t, gdk, nk), dk, nk, c->tol);
    check(t, "dv", get_act(t, gdv, nk), dv, nk, c->tol);
    if (D == 128) {   /* on an H100 the above ran the wgmma kernel: the mma.sync one must agree too */
        t->gpu->attn_fwd_rows = 32;
        gdq = dev_poison(t, nq * 2), gdk = dev_poison(t, nk * 2), gdv = dev_poison(t, nk * 2);
        op_attention_bwd(t->gpu, gdq, gdk, gdv, dev_act(t, dout, nq), dev_act(t, out, nq), dev_f32(t, lse, nl), gq, gk,
                         gv, gseg, &sh);
        t->gpu->attn_fwd_rows = 0;
        gpu_ok(t);
        check(t, "dq (mma.sync)", get_act(t, gdq, nq), dq, nq, c->tol);
        check(t, "dk (mma.sync)", get_act(t, gdk, nk), dk, nk, c->tol);
        check(t, "dv (mma.sync)", get_act(t, gdv, nk), dv, nk, c->tol);
    }
}

const op_case GPU_CASES_ATTENTION[] = {
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 1, .T = 37, .H = 2, .Hkv = 2, .D = 16, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 2, .T = 37, .H = 4, .Hkv = 2, .D = 64, .flag = 1, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 1, .T = 300, .H = 4, .Hkv = 2, .D = 128, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 2, .T = 300, .H = 32, .Hkv = 8, .D = 64, .flag = 1, .tol = BF, .heavy = true},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 3, .T = 130, .H = 2, .Hkv = 1, .D = 32, .flag = 1, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 1, .T = 300, .H = 4, .Hkv = 4, .D = 128, .flag = 1, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 2, .T = 300, .H = 4, .Hkv = 2, .D = 128, .flag = 2, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 2, .T = 500, .H = 4, .Hkv = 1, .D = 64, .flag = 3, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 1, .T = 2048, .H = 2, .Hkv = 1, .D = 128, .flag = 1, .tol = BF, .heavy = true},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 1, .T = 64, .H = 2, .Hkv = 2, .D = 48, .tol = -1},   /* must fail cleanly */
    /* head size 128 (the wgmma kernel on an H100): shorter than a tile, partial tiles of 128 and 64 keys,
     * 32 heads over 8 kv heads with packed segments, a window longer than a tile, a softmax scale */
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 2, .T = 37, .H = 2, .Hkv = 1, .D = 128, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 1, .T = 1000, .H = 32, .Hkv = 8, .D = 128, .flag = 3, .tol = BF, .heavy = true},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 2, .T = 449, .H = 4, .Hkv = 2, .D = 128, .K = 150, .flag = 1, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 1, .T = 320, .H = 2, .Hkv = 2, .D = 128, .p = 0.05f, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 1, .T = 700, .H = 4, .Hkv = 1, .D = 128, .flag = 2, .tol = BF},
    /* sliding windows (K) shorter and longer than a tile, with segments; a softmax scale (p) */
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 1, .T = 300, .H = 4, .Hkv = 2, .D = 128, .K = 8, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 2, .T = 500, .H = 4, .Hkv = 1, .D = 64, .K = 100, .flag = 3, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 1, .T = 257, .H = 2, .Hkv = 1, .D = 32, .K = 64, .p = 0.05f, .tol = BF},
    /* D = 192 (DeepSeek-V2 latent attention: 128 + 64 rope): a partial last tile, segments, one kv head, a scale */
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 2, .T = 200, .H = 4, .Hkv = 4, .D = 192, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 2, .T = 200, .H = 4, .Hkv = 4, .D = 192, .flag = 1, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 2, .T = 200, .H = 4, .Hkv = 1, .D = 192, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_FWD, .B = 1, .T = 200, .H = 4, .Hkv = 2, .D = 192, .p = 0.1f, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 1, .T = 300, .H = 4, .Hkv = 2, .D = 128, .K = 8, .tol = BF},
    /* head size 128 (the wgmma kernel on an H100): shorter than a tile, partial tiles, 32 heads over 8 kv heads
     * with packed segments, random segment ids, a window longer than a tile, a softmax scale */
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 2, .T = 37, .H = 2, .Hkv = 1, .D = 128, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 1, .T = 1000, .H = 32, .Hkv = 8, .D = 128, .flag = 3, .tol = BF, .heavy = true},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 2, .T = 449, .H = 4, .Hkv = 2, .D = 128, .K = 150, .flag = 1, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 1, .T = 320, .H = 2, .Hkv = 2, .D = 128, .p = 0.05f, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 1, .T = 700, .H = 4, .Hkv = 1, .D = 128, .flag = 2, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 2, .T = 500, .H = 4, .Hkv = 1, .D = 64, .K = 100, .flag = 3, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 1, .T = 257, .H = 2, .Hkv = 1, .D = 32, .K = 64, .p = 0.05f, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 2, .T = 200, .H = 4, .Hkv = 4, .D = 192, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 2, .T = 200, .H = 4, .Hkv = 4, .D = 192, .flag = 1, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 2, .T = 200, .H = 4, .Hkv = 1, .D = 192, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 1, .T = 200, .H = 4, .Hkv = 2, .D = 192, .p = 0.1f, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 1, .T = 37, .H = 2, .Hkv = 2, .D = 16, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 2, .T = 37, .H = 4, .Hkv = 2, .D = 64, .flag = 1, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 1, .T = 300, .H = 4, .Hkv = 2, .D = 128, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 2, .T = 300, .H = 32, .Hkv = 8, .D = 64, .flag = 1, .tol = BF, .heavy = true},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 3, .T = 130, .H = 2, .Hkv = 1, .D = 32, .flag = 1, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 1, .T = 300, .H = 4, .Hkv = 4, .D = 128, .flag = 1, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 2, .T = 300, .H = 4, .Hkv = 2, .D = 128, .flag = 2, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 2, .T = 500, .H = 4, .Hkv = 1, .D = 64, .flag = 3, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 1, .T = 500, .H = 2, .Hkv = 2, .D = 128, .flag = 1, .tol = BF},
    {.run = run_attention, .op = OP_ATTN_BWD, .B = 1, .T = 2048, .H = 2, .Hkv = 1, .D = 128, .flag = 1, .tol = BF, .heavy = true},
};
const int GPU_NCASES_ATTENTION = sizeof GPU_CASES_ATTENTION / sizeof GPU_CASES_ATTENTION[0];
