/* finetune/engine/engine.h - the Llama forward and backward on a backend.
 *
 * The engine owns everything that lives on the device, allocated once at
 * creation in one arena per category:
 *   weights      frozen: embeddings, norms, lm_head (act), linear layers (act or NF4)
 *   adapter      fp32 LoRA parameters, their gradients and AdamW's m and v (4 x P floats)
 *   activations  what the backward needs: with checkpointing, each layer's input
 *                and one layer's intermediates (recomputed per layer in the
 *                backward); without, every layer's intermediates. With
 *                offload, the layers' inputs live in host memory instead and
 *                two take turns on the device (engine_stash.c); with
 *                keep_attention each layer's attention output is kept too
 *                (with keep_projections some layers' q, k, v and residual as well)
 *   workspace    dequantized weights, logits chunks, LoRA scratch (backend slots)
 *
 * A step is: engine_forward (per-token log-probs of the targets, and the
 * forbidden-token mass when asked) -> a loss module turns them into
 * per-row coefficients -> engine_backward (accumulates LoRA gradients) ->
 * engine_clip_and_step. The (N, V) logits never exist at once: they are
 * computed in chunks of rows, reduced to statistics, and recomputed in the
 * backward.
 */
#ifndef DS_FINETUNE_ENGINE_H
#define DS_FINETUNE_ENGINE_H

#include "finetune/model/model.h"
#include "finetune/engine/ops/ops.h"

#include "adapters/lora.h"
#include "backend/backend.h"
#include "data/dataset/batch.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int max_B, max_T;               /* the largest micro-batch it will see: any B x T with T <= max_T
                                       and B*T <= max_B*max_T runs */
    bool checkpointing;             /* recompute each layer in the backward */
    bool training;                  /* allocate gradients, optimizer state and backward buffers */
    const lora_adapter *adapter;    /* layout and initial values; NULL = no adapter */
    uint64_t seed;                  /* LoRA dropout masks */
    size_t expert_batch_bytes;      /* routed experts' weights dequantized together: at most this many
                                       bytes of them at a time (at least one expert); 0 = 256 MiB */
    bool offload;                   /* with checkpointing: each layer's input kept in page-locked host
                                       memory, two on the device (engine_stash.c) */
    bool keep_attention;            /* with checkpointing, Llama-family layers: each layer's attention output
                                       and log-sum-exp kept from the forward (on the device; with offload in
                                       page-locked host memory, two on the device), so that the backward's
                                       recomputation skips the attention forward */
    int keep_projections;           /* with keep_attention: the last this many layers also keep q, k, v (as
                                       the attention read them; Qwen3's before their norms) and the residual
                                       after attention, on the device (never offloaded: up to four times a layer's
                                       input), so that their recomputation runs no projection of the
                                       attention block; 0 = none, at most the layer count */
    int mlp_rows;                   /* with checkpointing, Llama-family layers: the MLP runs over slices of
                                       this many tokens; 0 = slices of ENGINE_MLP_ROWS with offload, else the
                                       whole micro-batch */
} engine_opts;

#define ENGINE_MLP_ROWS 4096

typedef struct engine engine;

int engine_create(backend *be, const llama_model *m, const engine_opts *o, engine **out);
void engine_free(engine *e);
backend *engine_backend(const engine *e);

typedef struct {
    bool lora;              /* add the adapters (false: the base model, e.g. DPO's reference) */
    bool training;          /* LoRA dropout on */
    bool for_backward;      /* keep what engine_backward needs */
    uint64_t micro_step;    /* a new dropout mask per micro-batch */
} engine_fwd;

/* The forbidden-token set for fmass (ids < V), or n = 0 for none. */
int engine_set_forbidden(engine *e, const int32_t *ids, int n);

/* Run the model on a batch (T <= max_T, B*T <= max_B*max_T). logprob (N) host
 * gets log p(target) per row (0 where no target); fmass (N) host, if not
 * NULL, the probability of the forbidden set. */
int engine_forward(engine *e, const batch *b, const engine_fwd *f, float *logprob, float *fmass);

/* Backward of the last forward (which had for_backward): dL/dz = p(a + cF) +
 * b[j = t] per row (host arrays (N); c may be NULL). Adds into the LoRA
 * gradients. */
int engine_backward(engine *e, const float *a, const float *b, const float *c);

/* Optimizer: zero the gradients; global L2 norm of the gradients; AdamW with
 * the gradients scaled by grad_scale (clipping). */
int engine_zero_grads(engine *e);
int engine_grad_norm(engine *e, double *norm);
int engine_adamw(engine *e, const adamw_args *a);

/* LoRA parameters / gradients / optimizer state <-> host (nparams floats each). */
size_t engine_nparams(const engine *e);
int engine_get_params(engine *e, float *host);
int engine_set_params(engine *e, const float *host);
int engine_get_grads(engine *e, float *host);
/* The gradients where they live (nparams floats: device memory on CUDA, host
 * memory on the CPU), complete, for a sum over several processes in place. */
int engine_grads_buffer(engine *e, float **grads, size_t *n);
int engine_get_adam(engine *e, float *m, float *v);
int engine_set_adam(engine *e, const float *m, const float *v);

/* Debugging window (ds-ft dump, tests), valid after a forward:
 * hidden state `which` = -1 embeddings, 0..L-1 output of layer i,
 * L final norm; (N, C) fp32 to host. */
int engine_read_hidden(engine *e, int which, float *host);
/* Logits of rows [row0, row0 + n) of the last forward, (n, V) fp32 to host. */
int engine_read_logits(engine *e, int row0, int n, float *host);
/* Token budget (max_B * max_T) and longest row. */
int engine_max_tokens(const engine *e);
int engine_max_T(const engine *e);

/* ---- DeepSeek mixture-of-experts layers (engine_moe_stats.c) ---- */

/* The balance loss's coefficient in the backward (DeepSeek's sequence-level
 * loss; 0 = off, the default) and the expert capacity factor (each expert
 * takes at most ceil(factor * N*K / E) of a layer's N*K routed slots, later
 * tokens' slots beyond it are dropped; 0 = no limit, the default, as
 * transformers computes). DS_ECONFIG for negative values or a model without
 * experts. */
int engine_set_moe(engine *e, float aux_alpha, float capacity_factor);
/* MoE layer `layer` of the last forward: the chosen experts idx (N, K)
 * ascending, their weights w (N, K), the router logits (N, E); any may be
 * NULL. DS_EINTERNAL for a dense layer. */
int engine_read_routing(engine *e, int layer, int32_t *idx, float *w, float *logits);
typedef struct {
    int moe_layers;             /* 0 for models without experts */
    int experts, top_k;
    double aux_loss;            /* the balance loss summed over MoE layers, without its coefficient */
    double mean_load;           /* routed slots per expert and layer: N*K / E */
    int max_load;               /* the most slots an expert got in a layer */
    long long dropped;          /* slots dropped by the capacity factor */
    int64_t tokens_per_expert[1024];   /* (experts) summed over the MoE layers */
} engine_moe_stats;
/* The router statistics of the last forward: of MoE layer `layer`, or of all (-1). */
int engine_read_moe_stats(engine *e, int layer, engine_moe_stats *out);

/* Bytes of each arena, for reports; `host` is the page-locked host memory
 * of offloaded activations (not in engine_memory_total). */
typedef struct {
    size_t weights, adapter, activations, workspace;
    size_t host;
} engine_memory;
engine_memory engine_memory_use(const engine *e);
/* engine_memory_total() : the four arenas together, @return bytes. */
size_t engine_memory_total(const engine_memory *m);
/* engine_estimate() : the arenas engine_create would allocate for a model of
 * config cfg (its linear layers NF4 with double quantization when
 * `quantized`, else 16-bit) on a backend of kind `kind`, with options o
 * (o->adapter gives the LoRA layout: lora_create's, its values unused),
 * without any weights or device: the counting pass engine_create makes
 * before it allocates, over the config's shapes (engine_estimate.c). Not
 * counted: the backend's own memory (the CUDA context, cuBLASLt's workspace).
 * @return DS_OK with *out, or the refusal engine_create would give (a head
 * size the CUDA kernels lack), or DS_ENOMEM. */
int engine_estimate(const model_config *cfg, bool quantized, be_kind kind, const engine_opts *o, engine_memory *out);

#endif
