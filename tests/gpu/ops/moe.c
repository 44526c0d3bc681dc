/* tests/gpu/ops/moe.c - GPU test cases of the mixture of experts' ops: the
 * router's fp32 products and the token gather/scatter, CUDA twins against the
 * plain-C references (finetune/engine/ops/moe.c and cuda/moe.cu). Shapes: N
 * tokens of width C, K choices each among V experts; flag bit 0: a capacity
 * that drops some choices (rows without a token slot). */
#include "tests/gpu/gpu_ops.h"

#include "finetune/engine/ops/ops_moe.h"

/* A random routing: K distinct experts per token, ascending, and its grouping. */
typedef struct {
    int32_t *idx, *start, *row_token, *row_k, *tok_row;
    float *w;
    int R;
} routing;

static routing random_routing(tctx *t, const op_case *c)
{
    const int N = c->N, K = c->K, E = c->V;
    routing r = {.idx = hmem(t, (size_t)N * K * sizeof(int32_t)), .start = hmem(t, (size_t)(E + 1) * sizeof(int32_t)),
                 .row_token = hmem(t, (size_t)N * K * sizeof(int32_t)), .row_k = hmem(t, (size_t)N * K * sizeof(int32_t)),
                 .tok_row = hmem(t, (size_t)N * K * sizeof(int32_t)), .w = rnd(t, (size_t)N * K, 1.0f, true)};
    int32_t *pick = rand_ints(t, (size_t)N * E, 0, 1 << 30);
    for (int n = 0; n < N; n++) {   /* the K experts with the smallest random keys, then ascending */
        int32_t *key = pick + (size_t)n * E, *out = r.idx + (size_t)n * K;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                bool taken = false;
                for (int j = 0; j < k; j++) taken |= out[j] == e;
                if (!taken && (best < 0 || key[e] < key[best])) best = e;
            }
            out[k] = best;
        }
        for (int a = 1; a < K; a++)
            for (int b = a; b > 0 && out[b] < out[b - 1]; b--) {
                int32_t s = out[b];
                out[b] = out[b - 1], out[b - 1] = s;
            }
    }
    int capacity = c->flag & 1 ? (N * K) / (2 * E) + 1 : 0;
    moe_group(r.start, r.row_token, r.row_k, r.tok_row, r.idx, r.w, N, K, E, capacity);
    r.R = r.start[E];
    return r;
}

static void run_moe(tctx *t, const op_case *c)
{
    const int N = c->N, K = c->K, E = c->V, C = c->C;
    const size_t NC = (size_t)N * C, NK = (size_t)N * K;
    if (c->op == OP_MOE_LOGITS || c->op == OP_MOE_ROUTE_DX) {
        float *W = rnd(t, (size_t)E * C, 0.1f, true), *gW = dev_f32(t, W, (size_t)E * C);
        float *xf = hmem(t, NC * sizeof(float)), *gxf = dmem(t, NC * sizeof(float));
        if (c->op == OP_MOE_LOGITS) {
            size_t NE = (size_t)N * E;
            float *x = rnd(t, NC, 1.0f, false), *z = hmem(t, NE * sizeof(float));
            float *gz = dev_poison(t, NE * sizeof(float));
            op_moe_logits(t->cpu, z, xf, x, W, N, C, E);
            op_moe_logits(t->gpu, gz, gxf, dev_act(t, x, NC), gW, N, C, E);
            gpu_ok(t);
            check(t, "logits", get_f32(t, gz, NE), z, NE, c->tol);
        } else {
            float *dz = rnd(t, (size_t)N * E, 1.0f, true), *dx = rnd(t, NC, 1.0f, false);
            void *gdx = dev_act(t, dx, NC);
            float beta = c->flag & 2 ? 1.0f : 0.0f;
            op_moe_route_dx(t->cpu, dx, xf, dz, W, N, C, E, beta);
            op_moe_route_dx(t->gpu, gdx, gxf, dev_f32(t, dz, (size_t)N * E), gW, N, C, E, beta);
            gpu_ok(t);
            check(t, "dx", get_act(t, gdx, NC), dx, NC, c->tol);
        }
        return;
    }
    routing r = random_routing(t, c);
    const size_t RC = (size_t)r.R * C;
    int32_t *g_tok = dev_raw(t, r.row_token, NK * sizeof(int32_t)), *g_k = dev_raw(t, r.row_k, NK * sizeof(int32_t));
    int32_t *g_tok_row = dev_raw(t, r.tok_row, NK * sizeof(int32_t));
    float *g_w = dev_f32(t, r.w, NK);
    if (c->op == OP_MOE_GATHER) {
        float *x = rnd(t, NC, 1.0f, false), *xe = hmem(t, RC * sizeof(float) + 4);
        void *gxe = dev_poison(t, RC * 2 + 2);
        op_moe_gather(t->cpu, xe, x, r.row_token, r.R, C);
        op_moe_gather(t->gpu, gxe, dev_act(t, x, NC), g_tok, r.R, C);
        gpu_ok(t);
        check(t, "xe", get_act(t, gxe, RC), xe, RC, c->tol);
    } else if (c->op == OP_MOE_SCATTER || c->op == OP_MOE_GATHER_BWD) {
        float *y = rnd(t, NC, 1.0f, false), *ye = rnd(t, RC + 1, 1.0f, false);
        void *gy = dev_act(t, y, NC), *gye = dev_act(t, ye, RC + 1);
        if (c->op == OP_MOE_SCATTER) {
            op_moe_scatter(t->cpu, y, ye, r.w, r.tok_row, N, K, C);
            op_moe_scatter(t->gpu, gy, gye, g_w, g_tok_row, N, K, C);
        } else {
            op_moe_gather_bwd(t->cpu, y, ye, r.tok_row, N, K, C);
            op_moe_gather_bwd(t->gpu, gy, gye, g_tok_row, N, K, C);
        }
        gpu_ok(t);
        check(t, "y", get_act(t, gy, NC), y, NC, c->tol);
    } else {   /* OP_MOE_SCATTER_BWD */
        float *dy = rnd(t, NC, 1.0f, false), *ye = rnd(t, RC + 1, 1.0f, false);
        float *dye = hmem(t, RC * sizeof(float) + 4), *dw = rnd(t, NK, 1.0f, true);   /* dropped slots: left alone */
        void *gdye = dev_poison(t, RC * 2 + 2);
        float *gdw = dev_f32(t, dw, NK);
        op_moe_scatter_bwd(t->cpu, dye, dw, dy, ye, r.w, r.row_token, r.row_k, r.R, K, C);
        op_moe_scatter_bwd(t->gpu, gdye, gdw, dev_act(t, dy, NC), dev_act(t, ye, RC + 1), g_w, g_tok, g_k, r.R, K, C);
        gpu_ok(t);
        check(t, "dye", get_act(t, gdye, RC), dye, RC, c->tol);
        check(t, "dw", get_f32(t, gdw, NK), dw, NK, 1e-4);   /* fp32 dots of bf16 rows, summed in another order */
    }
}

const op_case GPU_CASES_MOE[] = {
    /* DeepSeek-V2-Lite: 64 experts, 6 per token, hidden 2048 */
    {.run = run_moe, .op = OP_MOE_LOGITS, .N = 300, .V = 64, .K = 6, .C = 2048, .tol = F32},
    {.run = run_moe, .op = OP_MOE_ROUTE_DX, .N = 300, .V = 64, .K = 6, .C = 2048, .tol = BF},
    {.run = run_moe, .op = OP_MOE_ROUTE_DX, .N = 77, .V = 8, .K = 2, .C = 64, .flag = 2, .tol = BF},
    {.run = run_moe, .op = OP_MOE_GATHER, .N = 300, .V = 64, .K = 6, .C = 2048, .tol = BF},
    {.run = run_moe, .op = OP_MOE_GATHER, .N = 77, .V = 8, .K = 2, .C = 37, .flag = 1, .tol = BF},
    {.run = run_moe, .op = OP_MOE_SCATTER, .N = 300, .V = 64, .K = 6, .C = 2048, .tol = BF},
    {.run = run_moe, .op = OP_MOE_SCATTER, .N = 77, .V = 8, .K = 2, .C = 37, .flag = 1, .tol = BF},
    {.run = run_moe, .op = OP_MOE_SCATTER_BWD, .N = 300, .V = 64, .K = 6, .C = 2048, .tol = BF},
    {.run = run_moe, .op = OP_MOE_SCATTER_BWD, .N = 77, .V = 8, .K = 2, .C = 37, .flag = 1, .tol = BF},
    {.run = run_moe, .op = OP_MOE_GATHER_BWD, .N = 300, .V = 64, .K = 6, .C = 2048, .tol = BF},
    {.run = run_moe, .op = OP_MOE_GATHER_BWD, .N = 77, .V = 8, .K = 2, .C = 37, .flag = 1, .tol = BF},
};
const int GPU_NCASES_MOE = sizeof GPU_CASES_MOE / sizeof GPU_CASES_MOE[0];
