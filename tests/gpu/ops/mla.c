/* tests/gpu/ops/mla.c - GPU test cases of multi-head latent attention's heads:
 * the CUDA twins against the plain-C references (finetune/engine/ops/mla.c and
 * cuda/mla.cu). Shapes: N tokens, H heads stored D wide, K = nope, M = rope,
 * V = v, C = kv_lora_rank; flag bit 0: the rope part interleaved; p: the rope
 * table's scale (YaRN's attention factor). */
#include "tests/gpu/gpu_ops.h"

#include "finetune/engine/ops/ops_moe.h"

#include <math.h>

static void run_mla(tctx *t, const op_case *c)
{
    const mla_dims d = {.H = c->H, .nope = c->K, .rope = c->M, .v = c->V, .kvr = c->C, .D = c->D,
                        .interleave = c->flag & 1};
    const int N = c->N, QK = d.nope + d.rope, KV = d.nope + d.v, A = d.kvr + d.rope;
    size_t nq = (size_t)N * d.H * QK, na = (size_t)N * A, nb = (size_t)N * d.H * KV, nh = (size_t)N * d.H * d.D;
    rope_table rt = {.half = d.rope / 2, .scale = c->p != 0 ? c->p : 1.0f};
    for (int i = 0; i < rt.half; i++) rt.inv_freq[i] = 1.0f / powf(10000.0f, (float)(2 * i) / (float)d.rope);
    int32_t *pos = rand_ints(t, (size_t)N, 0, 4096), *gpos = dev_raw(t, pos, (size_t)N * sizeof(int32_t));
    if (c->op == OP_MLA_HEADS) {
        float *q = rnd(t, nq, 1.0f, false), *kva = rnd(t, na, 1.0f, false), *kvb = rnd(t, nb, 1.0f, false);
        float *Q = hmem(t, nh * sizeof(float)), *K = hmem(t, nh * sizeof(float)), *V = hmem(t, nh * sizeof(float));
        void *gQ = dev_poison(t, nh * 2), *gK = dev_poison(t, nh * 2), *gV = dev_poison(t, nh * 2);
        op_mla_heads(t->cpu, Q, K, V, q, kva, kvb, pos, N, &d, &rt);
        op_mla_heads(t->gpu, gQ, gK, gV, dev_act(t, q, nq), dev_act(t, kva, na), dev_act(t, kvb, nb), gpos, N, &d, &rt);
        gpu_ok(t);
        check(t, "Q", get_act(t, gQ, nh), Q, nh, c->tol);
        check(t, "K", get_act(t, gK, nh), K, nh, c->tol);
        check(t, "V", get_act(t, gV, nh), V, nh, c->tol);
    } else if (c->op == OP_MLA_HEADS_BWD) {
        float *dQ = rnd(t, nh, 1.0f, false), *dK = rnd(t, nh, 1.0f, false), *dV = rnd(t, nh, 1.0f, false);
        float *dq = hmem(t, nq * sizeof(float)), *dkvb = hmem(t, nb * sizeof(float));
        float *dkva = rnd(t, na, 1.0f, false);   /* its latent columns are the caller's: left alone by both */
        void *gdq = dev_poison(t, nq * 2), *gdkvb = dev_poison(t, nb * 2), *gdkva = dev_act(t, dkva, na);
        op_mla_heads_bwd(t->cpu, dq, dkva, dkvb, dQ, dK, dV, pos, N, &d, &rt);
        op_mla_heads_bwd(t->gpu, gdq, gdkva, gdkvb, dev_act(t, dQ, nh), dev_act(t, dK, nh), dev_act(t, dV, nh), gpos,
                         N, &d, &rt);
        gpu_ok(t);
        check(t, "dq", get_act(t, gdq, nq), dq, nq, c->tol);
        check(t, "dkvb", get_act(t, gdkvb, nb), dkvb, nb, c->tol);
        check(t, "dkva", get_act(t, gdkva, na), dkva, na, c->tol);
    } else {   /* OP_MLA_OUT: o_proj's input and its backward (the column copies) */
        size_t no = (size_t)N * d.H * d.v;
        float *O = rnd(t, nh, 1.0f, false), *out = hmem(t, no * sizeof(float));
        float *dout = rnd(t, no, 1.0f, false), *dO = hmem(t, nh * sizeof(float));
        void *gout = dev_poison(t, no * 2), *gdO = dev_poison(t, nh * 2);
        op_mla_out(t->cpu, out, O, N, &d);
        op_mla_out(t->gpu, gout, dev_act(t, O, nh), N, &d);
        op_mla_out_bwd(t->cpu, dO, dout, N, &d);
        op_mla_out_bwd(t->gpu, gdO, dev_act(t, dout, no), N, &d);
        gpu_ok(t);
        check(t, "out", get_act(t, gout, no), out, no, c->tol);
        check(t, "dO", get_act(t, gdO, nh), dO, nh, c->tol);
    }
}

const op_case GPU_CASES_MLA[] = {
    /* DeepSeek-V2-Lite's heads: 128 + 64 rope, v 128, stored 192 wide */
    {.run = run_mla, .op = OP_MLA_HEADS, .N = 37, .H = 16, .K = 128, .M = 64, .V = 128, .C = 512, .D = 192, .flag = 1,
     .p = 1.2f, .tol = BF},
    {.run = run_mla, .op = OP_MLA_HEADS_BWD, .N = 37, .H = 16, .K = 128, .M = 64, .V = 128, .C = 512, .D = 192,
     .flag = 1, .p = 1.2f, .tol = BF},
    /* the tiny fixtures' heads: 16 + 8 rope, v 16, padded to 32; halves layout */
    {.run = run_mla, .op = OP_MLA_HEADS, .N = 50, .H = 4, .K = 16, .M = 8, .V = 16, .C = 32, .D = 32, .tol = BF},
    {.run = run_mla, .op = OP_MLA_HEADS_BWD, .N = 50, .H = 4, .K = 16, .M = 8, .V = 16, .C = 32, .D = 32, .tol = BF},
    {.run = run_mla, .op = OP_MLA_HEADS, .N = 9, .H = 3, .K = 5, .M = 4, .V = 7, .C = 11, .D = 16, .flag = 1, .tol = BF},
    {.run = run_mla, .op = OP_MLA_HEADS_BWD, .N = 9, .H = 3, .K = 5, .M = 4, .V = 7, .C = 11, .D = 16, .flag = 1,
     .tol = BF},
    {.run = run_mla, .op = OP_MLA_OUT, .N = 37, .H = 16, .K = 128, .M = 64, .V = 128, .C = 512, .D = 192, .tol = BF},
    {.run = run_mla, .op = OP_MLA_OUT, .N = 9, .H = 3, .K = 5, .M = 4, .V = 7, .C = 11, .D = 16, .tol = BF},
};
const int GPU_NCASES_MLA = sizeof GPU_CASES_MLA / sizeof GPU_CASES_MLA[0];
