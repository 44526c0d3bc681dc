/* finetune/engine/engine_stash.c - where what the backward needs from the
 * forward lives: each layer's input (e->resid) and, with keep_attention,
 * each layer's attention output and log-sum-exp (e->kept_attn), with
 * keep_projections some layers' q, k, v and residual after attention
 * (e->kept_proj: on the device only, never offloaded), and which options of
 * what is kept go together (stash_check_opts).
 *
 * With checkpointing the backward needs every layer's input resid[k] (N, C),
 * 8 KB a token for a 4096-wide model: a quarter of a megabyte a token over
 * 30 layers, the largest thing a long sequence keeps. Without offload each
 * entry of a stash is a device buffer of its own. With offload S device
 * slots take turns (entry k is slot k % S) and every entry also has a place
 * in page-locked host memory. S is 2, or 3 for the inputs of DeepSeek's
 * layers, whose recomputation writes the layer's output again (into resid[l +
 * 1]'s slot, which must then not be the one resid[l - 1] is coming back into).
 *
 *   forward   as soon as entry k is written its copy out starts on the
 *             transfer stream, beside the next layer. Before a layer
 *             overwrites the slot of entry k - S, that copy must be done (it
 *             had S - 1 layers' time).
 *   backward  the last S entries are still in their slots. Before layer l's
 *             backward, entry l - 1 starts coming back into the slot of entry
 *             l - 1 + S, which no later layer needs, beside layer l's work;
 *             layer l itself waits for entry l, which came back meanwhile.
 *
 * Layer l reads resid[l] and writes resid[l + 1], and its attention output is
 * kept_attn entry l, so the same rules serve both.
 *
 * The copies overlap the layers' work; a step waits for them only where a
 * layer is faster than the copy of its input (short sequences, where offload
 * is not needed and stays off).
 */
#include "engine_internal.h"

#include "core/mem.h"
#include "core/numeric.h"
#include "core/status.h"

#include <stdlib.h>

int stash_check_opts(const model_config *cfg, const engine_opts *o)
{
    if (o->offload && !o->checkpointing)
        return ds_fail(DS_ECONFIG, "activation offload keeps each layer's input in host memory for a recomputing "
                                   "backward: it needs gradient checkpointing");
    if (o->keep_attention && (!o->checkpointing || cfg->ds.on))
        return ds_fail(DS_ECONFIG, "keeping the attention output spares its recomputation in the backward: it "
                                   "needs gradient checkpointing and Llama-family layers (not DeepSeek's)");
    if (o->keep_projections && !o->keep_attention)
        return ds_fail(DS_ECONFIG, "keeping the attention block's projections adds them to the kept attention "
                                   "output: it needs keep_attention");
    if (o->keep_projections < 0 || o->keep_projections > cfg->num_layers)
        return ds_fail(DS_EINTERNAL, "engine: projections kept for %d of %d layers", o->keep_projections,
                       cfg->num_layers);
    return DS_OK;
}

static void *host_of(const engine_stash *s, int k) { return (char *)s->host + (size_t)k * s->bytes; }

/* Whether this forward's entries are copied out: offload, and a backward to follow. */
static bool copying(const engine *e, const engine_stash *s) { return s->slots && e->last.for_backward; }

int stash_init(engine_stash *s, int count, size_t bytes, int slots)
{
    s->count = count, s->bytes = bytes, s->slots = slots;
    s->dev = ds_calloc((size_t)count, sizeof *s->dev, "engine layers");
    s->ticket = ds_calloc((size_t)count, sizeof *s->ticket, "engine layers");
    return s->dev && s->ticket ? DS_OK : DS_ENOMEM;
}

void stash_layout(engine_stash *s, carve *c)
{
    if (!s->slots) {
        for (int k = 0; k < s->count; k++) s->dev[k] = engine_take(c, s->bytes);
        return;
    }
    void *slot[3];
    for (int i = 0; i < s->slots; i++) slot[i] = engine_take(c, s->bytes);
    for (int k = 0; k < s->count; k++) s->dev[k] = slot[k % s->slots];
}

size_t stash_host_bytes(const engine *e, const engine_stash *s)
{
    return s->slots && e->opts.training ? (size_t)s->count * s->bytes : 0;
}

int stash_alloc_host(engine *e, engine_stash *s, const char *what)
{
    if (!stash_host_bytes(e, s)) return DS_OK;
    s->host = be_host_alloc(e->be, stash_host_bytes(e, s), what);
    return be_sync(e->be);
}

void stash_free(engine *e, engine_stash *s)
{
    be_host_free(e->be, s->host);
    free(s->dev);
    free(s->ticket);
}

void stash_before_write(engine *e, engine_stash *s, int k)
{
    if (copying(e, s) && k >= s->slots)
        be_wait_transfer(e->be, s->ticket[k - s->slots]);   /* the slot's last tenant is out */
}

void stash_written(engine *e, engine_stash *s, int k, size_t used)
{
    if (copying(e, s)) s->ticket[k] = be_transfer(e->be, host_of(s, k), s->dev[k], used, true);
}

void stash_before_layer(engine *e, engine_stash *s, int l, size_t used)
{
    if (!s->slots) return;
    const int first_kept = s->count - s->slots;   /* entries first_kept.. never left */
    if (l < first_kept) be_wait_transfer(e->be, s->ticket[l]);   /* brought back during layer l + 1 */
    if (l >= 1 && l - 1 < first_kept)                           /* into the slot of entry l - 1 + S */
        s->ticket[l - 1] = be_transfer(e->be, s->dev[l - 1], host_of(s, l - 1), used, false);
}

int resid_read(engine *e, int k, float *host)
{
    const engine_stash *s = &e->resid;
    const size_t n = (size_t)e->N * e->cfg.hidden_size;
    if (!s->slots) {
        be_download_act_as_f32(e->be, host, s->dev[k], n);
        return be_sync(e->be);
    }
    if (e->last.for_backward) {   /* every input was copied out: read the host copy */
        int rc = be_sync(e->be);
        if (rc) return rc;
        const void *src = host_of(s, k);
        for (size_t i = 0; i < n; i++)
            host[i] = e->be->act_size == sizeof(float) ? ((const float *)src)[i]
                                                       : ds_bf16_to_f32(((const uint16_t *)src)[i]);
        return DS_OK;
    }
    if (k < s->count - s->slots)
        return ds_fail(DS_EINTERNAL, "hidden state %d is not kept: activations are offloaded and the forward was not "
                                     "kept for a backward", k - 1);
    be_download_act_as_f32(e->be, host, s->dev[k], n);
    return be_sync(e->be);
}
