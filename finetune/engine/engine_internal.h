/* finetune/engine/engine_internal.h - the engine's state, shared by engine.c
 * (set-up, memory, parameters) and engine_pass.c (forward, backward). */
#ifndef DS_FINETUNE_ENGINE_INTERNAL_H
#define DS_FINETUNE_ENGINE_INTERNAL_H

#include "engine.h"

#include "adapters/lora_ops.h"

typedef struct {
    void *attn_norm, *mlp_norm;         /* (C) act */
    void *q_norm, *k_norm;              /* (D) act, with cfg.qk_norm */
    frozen_linear lin[LIN_COUNT];       /* each with its bias (out) act where cfg.bias[t] */
    attn_shape attn;                    /* heads, window, scale (B and T set per batch) */
    /* DeepSeek (cfg.ds.on; lin[] unused): engine_deepseek.h */
    frozen_linear *dsl;                 /* (deepseek_slots) by deepseek_slot; out = 0 where absent */
    void *q_a_norm, *kv_a_norm;         /* (q_lora_rank), (kv_lora_rank) act */
    float *router, *router_bias;        /* (E, C), (E) fp32: transformers routes in fp32 */
    float *router_bias_host;            /* (E) the bias on the host, where the choice is made */
} layer_weights;

/* One layer's intermediates, as the backward reads them. */
typedef struct {
    void *h1;               /* (N, C)   input_layernorm output */
    float *rstd1;           /* (N) */
    void *q, *k, *v;        /* (N, H*D), (N, Hkv*D), (N, Hkv*D); q and k after RoPE */
    void *q_raw, *k_raw;    /* (N, H*D), (N, Hkv*D): q and k before their per-head norm (cfg.qk_norm) */
    float *rstd_q, *rstd_k; /* (N*H), (N*Hkv) */
    void *att;              /* (N, H*D) attention output, before o_proj */
    float *lse;             /* (N, H)   softmax log-sum-exp */
    void *x_mid;            /* (N, C)   residual after attention */
    void *h2;               /* (N, C)   post_attention_layernorm output */
    float *rstd2;           /* (N) */
    void *g, *u, *m;        /* (mlp_rows, I) gate, up, silu(gate) * up of one slice of tokens */
    float *lora_u[LIN_COUNT];/* (N, r) fp32  x·Aᵀ of each adapted module */
    struct deepseek_acts *ds;   /* DeepSeek's other intermediates (engine_deepseek.h) */
} layer_acts;

/* Entries the backward needs from the forward, one per layer (engine_stash.c):
 * each a device buffer of its own, or with offload (slots > 0) an entry of
 * page-locked host memory each and `slots` device buffers taking turns (entry
 * k in slot k % slots). A stash never set up (count 0, as kept_attn without
 * keep_attention) takes no memory and every stash_* call on it does nothing. */
typedef struct {
    void **dev;             /* (count) where entry k is on the device */
    int count, slots;       /* slots: 0 = every entry on the device */
    size_t bytes;           /* an entry's size at Nmax tokens */
    void *host;             /* (count, bytes) page-locked, with slots */
    int *ticket;            /* (count) the transfer that moves entry k (out, or back in) */
} engine_stash;

struct engine {
    backend *be;
    const llama_model *model;
    model_config cfg;
    engine_opts opts;
    int Nmax;                       /* max_B * max_T */
    int QD, KVD;                    /* H*D, Hkv*D */
    int attn_D;                     /* the attention's head width D: head_dim, or DeepSeek's padded one */
    rope_table rope;                /* the model's rotary embedding */

    /* weights arena */
    void *w_arena;
    size_t w_bytes;
    void *embed, *lm_head, *final_norm;
    layer_weights *layers;          /* (L) */

    /* adapter arena: params | grads | adam m | adam v, P floats each */
    float *a_arena;
    size_t P;
    float *params, *grads, *adam_m, *adam_v;
    int nslots;                     /* modules per layer: LIN_COUNT, or DeepSeek's deepseek_slots() */
    lora_view *views;               /* (L * nslots); A == NULL where not adapted */
    struct deepseek_grads *dsg;     /* DeepSeek's backward scratch */
    float moe_aux_alpha;            /* DeepSeek: the balance loss's coefficient in the backward (0 = off) */
    float moe_capacity;             /* DeepSeek: the expert capacity factor (0 = none) */
    /* each MoE layer's routing in the last forward, on the host (engine_deepseek.c) */
    int32_t *route_idx;             /* (L, N, K) the chosen experts */
    float *route_w, *route_logits, *route_scores;   /* (L, N, K), (L, N, E), (L, N, E) */
    long long *route_dropped;       /* (L) */
    float *router_logits, *router_xf;   /* (N, E), (N, C) fp32 on the backend: the router's products */
    float *sumsq;                   /* (1) */

    /* activations arena */
    void *act_arena;
    size_t act_bytes;
    engine_stash resid;             /* (L + 1) x (N, C): embeddings, then each layer's output (resid.dev[k]);
                                       with offload 2 device slots take turns, 3 for DeepSeek */
    engine_stash kept_attn;         /* with keep_attention (L): layer l's attention output (N, H*D) act and
                                       log-sum-exp (N, H) fp32 (attn_kept_layout); with offload 2 slots */
    engine_stash kept_proj;         /* (keep_projections) the last layers' x_mid, q, k, v, on the device:
                                       entry k is layer L - keep_projections + k's */
    struct {                        /* where the other layers' are (the set's own buffers) */
        void *x_mid, *q, *k, *v;
    } proj_home;
    int mlp_rows;                   /* tokens per MLP slice (Llama-family layers) */
    bool after_backward;            /* a backward ran since the last forward (xf may be overwritten) */
    layer_acts *sets;               /* (nsets): 1 with checkpointing, else L */
    int nsets;
    void *xf;                       /* (N, C) final norm output */
    float *rstdf;                   /* (N) */
    void *dres, *dxf, *dh;          /* (N, C) backward scratch; dxf is dh (dead before a layer's backward) */
    void *datt, *dq;                /* (N, H*D); datt is dh where H*D <= C */
    void *dk, *dv;                  /* (N, Hkv*D) */
    void *dq_raw, *dk_raw;          /* (N, H*D), (N, Hkv*D): through the q/k norms (cfg.qk_norm) */
    void *dm, *dg, *du;             /* (mlp_rows, I) */
    int32_t *ids, *pos, *seg, *targets;   /* (N) */
    float *lse, *logprob, *fmass;   /* (N) */
    float *ca, *cb, *cc;            /* (N) gradient coefficients */
    uint8_t *forbidden;             /* (V) mask, or unused */
    bool has_forbidden;
    int chunk_rows;                 /* logits rows per chunk */
    size_t ws_bytes;

    /* the last forward */
    int B, T, N;
    bool have_fwd;
    engine_fwd last;
};

layer_acts *engine_acts(engine *e, int layer);

/* Two-pass carving of an arena: with base == NULL only the size is counted. */
typedef struct {
    char *base;
    size_t off;
} carve;
void *engine_take(carve *c, size_t bytes);
/* An fp32/16-bit tensor of the file into act values (fp32 with as_f32) on the backend. */
void engine_upload_tensor(backend *be, void *dst, const st_tensor *t);
/* A frozen linear's storage laid out (and, with c->base, uploaded) from the model's. */
void engine_layout_linear(engine *e, carve *c, frozen_linear *dst, const model_linear *src);

/* engine_measure() : set e (zeroed) up as engine_create would for model m,
 * without touching the backend: the sizes of the arenas only (*out), from
 * the counting pass that precedes every allocation. m's tensors are not
 * read, only which exist and their shapes; be only gives the kind and the
 * act size. Free e with engine_free. */
int engine_measure(engine *e, backend *be, const llama_model *m, const engine_opts *o, engine_memory *out);

/* ---- what the backward keeps, on the device or offloaded (engine_stash.c) ---- */
/* stash_check_opts() : whether what options o keep for the backward (offload,
 * keep_attention, keep_projections) goes with the rest of them and model cfg,
 * @return DS_OK, or DS_ECONFIG naming what it needs. */
int stash_check_opts(const model_config *cfg, const engine_opts *o);
/* stash_init() : count entries of `bytes` each, with `slots` device slots
 * (0: each entry on the device), @return DS_OK or DS_ENOMEM. */
int stash_init(engine_stash *s, int count, size_t bytes, int slots);
/* stash_layout() : carve its device buffers from the activations arena. */
void stash_layout(engine_stash *s, carve *c);
/* stash_host_bytes() : the host memory it takes, @return bytes (0 without offload). */
size_t stash_host_bytes(const engine *e, const engine_stash *s);
/* stash_alloc_host() : allocate it, @return DS_OK or the failure. */
int stash_alloc_host(engine *e, engine_stash *s, const char *what);
void stash_free(engine *e, engine_stash *s);
/* Forward: stash_before_write() before entry k is written; stash_written()
 * once it is (its first `used` bytes start moving out). */
void stash_before_write(engine *e, engine_stash *s, int k);
void stash_written(engine *e, engine_stash *s, int k, size_t used);
/* Backward: stash_before_layer() before layer l's backward (entry l on the
 * device, entry l - 1 on its way back; `used` bytes an entry). */
void stash_before_layer(engine *e, engine_stash *s, int l, size_t used);
/* resid_read() : hidden state k (0..L) of the last forward into host fp32,
 * @return DS_OK or why it is no longer kept. */
int resid_read(engine *e, int k, float *host);
/* Where the parts of the kept entries start for N tokens: byte offsets, each
 * 256-aligned. */
typedef struct {
    size_t lse, attn_bytes;       /* e->kept_attn's: att (N, H*D) act at 0, lse (N, H) fp32 */
    size_t q, k, v, proj_bytes;   /* e->kept_proj's: x_mid (N, C) act at 0, q (N, H*D), k and v (N, Hkv*D)
                                     act (q and k as the attention read them, after RoPE; Qwen3's before its norms) */
} kept_layout;

kept_layout attn_kept_layout(const engine *e, int N);

#endif
