/* finetune/engine/ops/ops_decode.h - the operations of generation with a
 * key/value cache (engine_decode.c), beside those of ops.h.
 *
 * Each op has its plain-C fp32 reference in NAME.c (kv_cache.c, nf4_gemv.c),
 * which dispatches to its CUDA twin in cuda/NAME.cu, and GPU test cases in
 * tests/gpu/ops/NAME.c. The cache of a layer holds R rows of `ctx` positions:
 * (R * ctx, Hkv, D) act, the key or value of row r at position p in slot
 * r * ctx + p. A step's N new tokens each name their cache row and position.
 */
#ifndef DS_FINETUNE_OPS_DECODE_H
#define DS_FINETUNE_OPS_DECODE_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The shape of the cached attention of one layer. */
typedef struct {
    int H, Hkv, D;      /* query heads, key/value heads, head size */
    int window;         /* a query sees at most this many positions, itself included; 0 = all */
    float scale;        /* softmax scale; 0 = 1/sqrt(D) */
    int ctx;            /* positions per cache row */
} kv_shape;

/* Store the keys and values of N new tokens: token n's k[n], v[n] (Hkv*D act
 * each, i.e. (N, Hkv, D)) into slot row[n] * ctx + pos[n] of kc, vc. */
void op_kv_store(backend *be, void *kc, void *vc, const void *k, const void *v, const int32_t *row,
                 const int32_t *pos, int N, const kv_shape *s);

/* op_rope_kv_store() : a decode step's rotary embedding and cache store in
 * one: q (N, H, D) and k (N, Hkv, D) act rotated in place at positions pos
 * (op_rope, not inverse), then k and v (N, Hkv, D) stored as op_kv_store
 * stores them. The same results as those three calls; on CUDA one launch
 * (a decode step is bound by its launches as much as by its arithmetic). */
void op_rope_kv_store(backend *be, void *q, void *k, const void *v, void *kc, void *vc, const int32_t *row,
                      const int32_t *pos, int N, const kv_shape *s, const rope_table *rt);

/* Attention of N query tokens (q, out (N, H, D) act) against the cache: token
 * n sees positions j <= pos[n] of cache row row[n] (pos[n] - j < window when
 * set), which must already hold its own key and value (op_kv_store first).
 * The CPU reference computes every score, softmax and sum in the order of
 * op_attention_fwd, so a cached step reproduces the full forward bit for bit. */
void op_attention_cached(backend *be, void *out, const void *q, const void *kc, const void *vc,
                         const int32_t *row, const int32_t *pos, int N, const kv_shape *s);

/* The fused NF4 matrix-vector product of decoding: y (N, rows) act =
 * x (N, cols) act · dequant(W)ᵀ + beta · y, W (rows, cols) NF4, each weight
 * decoded where it is used (no 16-bit copy of W is made). The reference sums
 * over the input in ascending order in fp32, as the CPU GEMM does, so it
 * equals dequantization + be_matmul_nt exactly; the CUDA twin reads each
 * packed byte once for all N rows. N <= NF4_GEMV_MAX_ROWS. No bias. */
#define NF4_GEMV_MAX_ROWS 8
void op_nf4_gemv(backend *be, void *y, const void *x, const nf4_view *q, int N, float beta);

/* op_nf4_gemv_multi() : several products of one input, y[i] (N, rows of W[i])
 * = x (N, cols) · dequant(W[i])ᵀ for i < count (count <= NF4_GEMV_MAX_WEIGHTS,
 * every W[i] with `cols` columns): a layer's q, k and v, or its gate and up.
 * Each y[i] is exactly what op_nf4_gemv(y[i], x, W[i], N, 0) writes. On CUDA
 * the products are one launch when every weight takes the tensor-core path
 * and they share double quantization and dtype (so that the kernel's ramp and
 * tail are paid once), else one launch each. */
#define NF4_GEMV_MAX_WEIGHTS 4
void op_nf4_gemv_multi(backend *be, void *const *y, const void *x, const nf4_view *const *q, int count, int N);

/* The op that makes a decode step's input to its 4-bit products, as
 * op_nf4_gemv_in() runs it: RMSNorm (op_rmsnorm_fwd of x with weight w, eps,
 * rstd (N) fp32 written) or SwiGLU (op_swiglu_fwd: x is the gate, up the up). */
typedef enum { GEMV_IN_RMSNORM, GEMV_IN_SWIGLU } gemv_in_kind;
typedef struct {
    gemv_in_kind kind;
    const void *w;   /* RMSNorm: its weight (cols) act */
    float eps;
    float *rstd;     /* RMSNorm: (N) fp32 */
    const void *up;  /* SwiGLU: (N, cols) act */
} gemv_in;

/* op_gemv_in_make() : h (N, cols) act = the input `in` makes of x (N, cols)
 * act, by its op (op_rmsnorm_fwd or op_swiglu_fwd). */
void op_gemv_in_make(backend *be, void *h, const void *x, const gemv_in *in, int N, int cols);

/* op_nf4_gemv_in() : h (N, cols) act = in(x), then y[i] = h · dequant(W[i])ᵀ
 * (+ beta · y[0] when count == 1; beta must be 0 otherwise): the two ops one
 * after the other, with what each writes (h and rstd too: a layer's LoRA
 * products read h). On CUDA one launch when N == 1 and the products take one
 * tensor-core launch: every block makes the input itself into shared memory
 * (block 0 also writes h and rstd), so that a decode step's chain of kernels
 * has one link less; otherwise the two ops' own launches. Every W[i] has
 * `cols` columns; x, h and the y[i] must not overlap (blocks read x while
 * others write y). A bad count, beta or shape fails the backend (DS_EINTERNAL). */
void op_nf4_gemv_in(backend *be, void *const *y, void *h, const void *x, const gemv_in *in,
                    const nf4_view *const *q, int count, int N, float beta);

#ifdef __cplusplus
}
#endif

#endif
