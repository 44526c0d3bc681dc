/* finetune/engine/engine_deepseek.h - the DeepSeek-V2/V3 decoder layer in the
 * engine: multi-head latent attention (engine_mla.c) and the dense or
 * mixture-of-experts MLP (engine_moe.c), their memory (engine_deepseek.c).
 * On the GPU the router's choice and the grouping of tokens by expert run on
 * the host (a few numbers per token: its logits come down, the groups go up),
 * every product and row movement on the device. */
#ifndef DS_FINETUNE_ENGINE_DEEPSEEK_H
#define DS_FINETUNE_ENGINE_DEEPSEEK_H

#include "engine_internal.h"

#include "finetune/engine/ops/ops_moe.h"

/* One layer's intermediates beyond layer_acts' h1, rstd1, x_mid, h2, rstd2
 * and g, u, m (the dense MLP's, or the shared experts'). */
typedef struct deepseek_acts {
    void *qa, *qa_n;            /* (N, q_lora_rank): q_a_proj output, after q_a_layernorm */
    float *rstd_qa;             /* (N) */
    void *q;                    /* (N, H*QK) q_proj / q_b_proj output */
    void *kva;                  /* (N, kvr + rope) kv_a_proj_with_mqa output */
    void *ckv_raw, *ckv;        /* (N, kvr) the latent, before and after kv_a_layernorm */
    float *rstd_kv;             /* (N) */
    void *kvb;                  /* (N, H*(nope + v)) kv_b_proj output */
    void *Q, *K, *V;            /* (N, H, D) the attention's heads (op_mla_heads), D = e->attn_D */
    void *O;                    /* (N, H, D) attention output */
    float *lse;                 /* (N, H) */
    void *o_in;                 /* (N, H*v) o_proj input */
    /* the grouping by expert (moe_group), on the host; the dev_ copies on the
     * backend (the same arrays on the CPU) */
    int32_t *start;             /* (E + 1) each expert's grouped rows */
    int32_t *row_token, *row_k; /* (N*K) */
    int32_t *tok_row;           /* (N, K) */
    int32_t *dev_row_token, *dev_row_k, *dev_tok_row;
    float *dev_w;               /* (N, K) the routing weights after any drops */
    void *xe, *ye;              /* (N*K, C) grouped expert inputs, expert outputs */
    void *ge, *ue, *me;         /* (N*K, moe_intermediate) */
    float **lora_u;             /* (slots) LoRA x·Aᵀ per module; the experts' (N*K, r) shared by kind */
} deepseek_acts;

/* Backward scratch of the DeepSeek layer. */
typedef struct deepseek_grads {
    void *dq;                       /* (N, H*QK) */
    void *dQ, *dK, *dV, *dO;        /* (N, H, D) */
    void *do_in;                    /* (N, H*v) */
    void *dkvb;                     /* (N, H*(nope+v)) */
    void *dkva;                     /* (N, kvr + rope) */
    void *dckv, *dckv_raw;          /* (N, kvr) */
    void *dqa, *dqa_n;              /* (N, q_lora_rank) */
    void *dxe, *dye, *dge, *due, *dme;  /* grouped rows */
    float *dw;                      /* (N, K) */
    float *dlogits;                 /* (N, E) */
    /* the router's backward on the host (the same arrays as dw, dlogits on the CPU) */
    float *h_dw, *h_dlogits, *h_dprob;  /* (N, K), (N, E), (N, E) */
} deepseek_grads;

/* The attention's head width for this config on a backend of `kind`: nope +
 * rope (>= v), on CUDA rounded up to a width its attention kernels take. */
int deepseek_head_width(const model_config *c, be_kind kind);
/* The host-side parts (per-layer slot arrays, per-set intermediates' tables,
 * the routing record and the groups), and their release. */
int deepseek_init(engine *e);
void deepseek_free(engine *e);
/* Memory (engine_deepseek.c): the weights of layer l (c->base NULL: count
 * only), one set of intermediates, the backward scratch. */
void deepseek_layout_weights(engine *e, carve *c, int l);
void deepseek_layout_acts(engine *e, carve *c, layer_acts *a);
void deepseek_layout_grads(engine *e, carve *c);
/* The router's fp32 products on the backend (e->router_logits, e->router_xf). */
void deepseek_layout_routes(engine *e, carve *c);
/* The largest linear weight (elements) and LoRA workspace of the model; the
 * largest counts a batch of routed experts' weights (deepseek_expert_batch). */
void deepseek_workspace(const engine *e, size_t *biggest, size_t *lora, size_t *widest);
/* How many routed experts' weights of one projection are dequantized together
 * (WS_DEQUANT): as many as fit in e->opts.expert_batch_bytes (0: 256 MiB), at least one. */
int deepseek_expert_batch(const engine *e);

/* Generation's key/value cache of one layer (engine_decode.c): the step's
 * tokens store their keys and values (each head's D-wide key and value, as
 * op_mla_heads pads them) at slot row[n] * ctx + pos[n] and attend to their
 * cache row instead of to the batch's sequences; pos also places the rope. */
typedef struct {
    void *kc, *vc;              /* (rows * ctx, H, D) act */
    const int32_t *row, *pos;   /* (N) on the backend */
    int ctx;
} mla_cache;

/* The layer's passes: resid[l] -> resid[l + 1] (cache NULL: attention over
 * the batch's sequences, as training runs it); backward: e->dres from
 * dL/d resid[l+1] to dL/d resid[l]. */
void deepseek_layer_forward(engine *e, int l, layer_acts *a, const mla_cache *cache);
void deepseek_layer_backward(engine *e, int l, layer_acts *a);

/* The two halves (engine_mla.c, engine_moe.c): attention h1 -> x_mid; MLP h2 -> resid[l + 1]. */
void mla_forward(engine *e, int l, layer_acts *a, const mla_cache *cache);
void mla_backward(engine *e, int l, layer_acts *a);      /* e->dres: dL/d x_mid -> e->dh = dL/d h1 */
void moe_mlp_forward(engine *e, int l, layer_acts *a, void *out);
void moe_mlp_backward(engine *e, int l, layer_acts *a);  /* e->dres: dL/d out -> e->dh = dL/d h2 */

/* LoRA-aware linear of slot s of layer l on `rows` rows: y = x·Wᵀ + beta·y + LoRA(x), u its LoRA intermediate. */
void ds_linear_fwd(engine *e, int l, int s, void *y, const void *x, int rows, float beta, float *u);
void ds_linear_bwd(engine *e, int l, int s, void *dx, const void *dy, const void *x, int rows, float beta,
                   const float *u);
/* The adapter part alone of slot s (ds_linear_fwd/bwd without the frozen product). */
void ds_lora_fwd(engine *e, int l, int s, void *y, const void *x, int rows, float *u);
void ds_lora_bwd(engine *e, int l, int s, void *dx, const void *dy, const void *x, int rows, const float *u);
/* A host array's copy on the backend and back (nothing to do where they are one, on the CPU). */
void ds_to_backend(engine *e, void *dev, const void *host, size_t bytes);
void ds_to_host(engine *e, void *host, const void *dev, size_t bytes);
/* The router settings of the model. */
moe_router deepseek_router(const model_config *c);

#endif
