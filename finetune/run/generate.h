/* finetune/run/generate.h - text generation on a decoder (engine_decode.h):
 * the sampler, and the loop that generates for a batch of prompts with stop
 * tokens, stop strings and a token budget (ds-ft generate, bench generate).
 *
 * The sampler follows transformers' generate(): the repetition penalty first
 * (each token already in the sequence, prompt included, has its logit divided
 * by the penalty when positive and multiplied by it when negative); then, with
 * temperature 0, the likeliest token (greedy); otherwise the logits divided by
 * the temperature, top-k (tokens scoring below the k-th best removed, ties
 * kept), top-p (the least likely tokens removed while their total probability
 * stays <= 1 - p; the likeliest always kept), min-p (tokens less likely than
 * min_p times the likeliest removed), and one token drawn from what remains.
 */
#ifndef DS_FINETUNE_GENERATE_H
#define DS_FINETUNE_GENERATE_H

#include "finetune/engine/engine_decode.h"

#include "core/rng.h"
#include "data/tokenizer/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    float temperature;          /* 0 = greedy */
    int top_k;                  /* 0 = off */
    float top_p;                /* 1 = off */
    float min_p;                /* 0 = off */
    float repetition_penalty;   /* 1 = off */
} sampler_opts;

/* sampler_probs() : the distribution the sampler draws from: probs (V) gets
 * each token's probability after the penalty and the filters (0 for removed
 * tokens; they sum to 1). Greedy (temperature 0) puts 1 on the likeliest
 * token (the lowest id among equals). history (n ids) is the sequence so far.
 * @return DS_OK or DS_ENOMEM. */
int sampler_probs(const float *logits, int V, const sampler_opts *s, const int32_t *history, size_t n, float *probs);
/* sampler_pick() : a token drawn from probs (V) with one uniform of rng. */
int sampler_pick(const float *probs, int V, ds_rng *rng);

typedef enum { GEN_LENGTH, GEN_EOS, GEN_STOP } gen_end;
const char *gen_end_name(gen_end e);   /* "length", "eos", "stop" */

typedef struct {
    int max_new;                    /* new tokens per prompt at most */
    sampler_opts sample;
    uint64_t seed;                  /* prompt b of the batch draws from stream first_stream + b of the seed */
    uint64_t first_stream;
    const int32_t *stop_ids;        /* end-of-sequence ids (the token ends the sequence and is kept) */
    int nstop_ids;
    const char *const *stop;        /* stop strings: the text is cut before the first one found */
    int nstop;
    /* Streaming, or NULL: called with each piece of prompt b's text as soon as it is final (text that
     * could begin a stop string, or an incomplete UTF-8 character, waits); the pieces make up its text. */
    void (*on_text)(void *ctx, int b, const char *piece, size_t len);
    void *on_text_ctx;
} gen_opts;

typedef struct {
    tok_ids ids;                    /* the new tokens (up to and including a stop token) */
    char *text;                     /* their text, cut before a stop string; special tokens skipped */
    gen_end end;
} gen_result;
void gen_result_free(gen_result *r);

typedef struct {
    long prompt_tokens;             /* fed in the prefill (a cached prefix not counted) */
    long new_tokens;                /* generated */
    long decode_tokens;             /* fed in decode steps: each new token but the last of a prompt */
    double prefill_s, decode_s;     /* wall time of the prefill, and of the decode steps with sampling */
} gen_stats;

/* generate() : continue prompts[0..B) (B <= the decoder's rows) on rows
 * 0..B-1 of d, whose caches hold the first decoder_len(d, b) tokens of each
 * prompt already (0 for a fresh decoder): the rest is fed, then tokens are
 * drawn until each prompt ends. res (B) filled; st may be NULL.
 * @return DS_OK, DS_EDATA when logits are not finite (a broken weight),
 * DS_EINTERRUPTED (results hold what was made), or the decoder's failure. */
int generate(engine_decoder *d, const tokenizer *tok, int V, int B, const tok_ids *prompts, const gen_opts *o,
             gen_result *res, gen_stats *st);

/* generate_recompute() : the same for one prompt without a cache: every new
 * token runs engine_forward over the whole sequence (e was created for at
 * least prompt + max_new tokens in one row). The check of the cache: both give
 * the same tokens. */
int generate_recompute(engine *e, bool lora, const tokenizer *tok, int V, const tok_ids *prompt, const gen_opts *o,
                       gen_result *res, gen_stats *st);

#endif
