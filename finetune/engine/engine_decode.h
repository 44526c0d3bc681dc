/* finetune/engine/engine_decode.h - generation with a key/value cache.
 *
 * A decoder runs the engine's model (its weights and adapter, on its backend)
 * one step at a time: each step appends new tokens to rows of a key/value
 * cache and returns, for every row that received tokens, the logits of the
 * next token. A prompt is one step of many tokens (the prefill, cut into
 * steps of at most max_step tokens), each generated token one step of one
 * token per row; rows advance independently (batched prompts of different
 * lengths need no padding). The cache lives on the backend: (max_B, ctx)
 * positions of keys and values per layer.
 *
 * On the CPU every operation is the reference of the full forward, in the same
 * order, so a cached step gives the logits of engine_forward bit for bit. On
 * CUDA, 4-bit linear layers of a decode step (at most NF4_GEMV_MAX_ROWS tokens)
 * use the fused NF4 matrix-vector kernel; a longer step dequantizes and uses the
 * GEMM, as training does. Families: Llama, Mistral, Qwen2, Qwen3 (RoPE
 * scalings, sliding windows, biases, q/k norms), and on the CPU DeepSeek-V2/V3
 * (the cache holds each head's key and value after kv_b_proj; its steps run
 * in the engine's buffers, at most max_B * max_T tokens each); any other
 * architecture is refused by name.
 */
#ifndef DS_FINETUNE_ENGINE_DECODE_H
#define DS_FINETUNE_ENGINE_DECODE_H

#include "engine.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int max_B;      /* cache rows (sequences generated together) */
    int ctx;        /* positions per row: prompt + new tokens */
    int max_step;   /* tokens per step (the prefill is cut into steps of this size); 0 = 256 */
    bool lora;      /* add the engine's adapter */
    bool plain;     /* launch every op of every step (no recorded steps: see decoder_feed) */
} decoder_opts;

typedef struct engine_decoder engine_decoder;

/* decoder_create() : a decoder on e (which may have been created with the
 * smallest batch shape: the decoder has its own buffers) and its cache.
 * @return DS_OK, DS_EUSAGE for a model the decoder does not run, DS_ETRAIN
 * when the cache does not fit. */
int decoder_create(engine *e, const decoder_opts *o, engine_decoder **out);
void decoder_free(engine_decoder *d);

/* decoder_feed() : append n tokens: token i (ids[i]) to the end of cache row
 * rows[i], in order. On a backend that records work (CUDA), a step whose shape
 * (tokens, rows touched) ran before is recorded once and then replayed: the
 * ~500 kernels of a decode step in one launch. logits (max_B, V) fp32 host: row r is overwritten with
 * the next-token logits of every row r that received a token; the others are
 * left as they were. @return DS_OK, DS_EUSAGE when a row would pass ctx, or a
 * backend failure. */
int decoder_feed(engine_decoder *d, int n, const int32_t *ids, const int32_t *rows, float *logits);

/* Positions held by row r; decoder_truncate() forgets all but its first len
 * (a chat's shared prefix is kept, the rest recomputed). */
int decoder_len(const engine_decoder *d, int r);
void decoder_truncate(engine_decoder *d, int r, int len);

/* Bytes of the decoder's arena on the backend (cache and step buffers). */
size_t decoder_bytes(const engine_decoder *d);

#endif
