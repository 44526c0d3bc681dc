/* finetune/engine/engine_resid.c - where each layer's input lives.
 *
 * With checkpointing the backward needs every layer's input resid[k] (N, C),
 * 8 KB a token for a 4096-wide model: a quarter of a megabyte a token over
 * 30 layers, the largest thing a long sequence keeps. Without offload each
 * resid[k] is a device buffer of its own. With offload S device slots take
 * turns (resid[k] is slot k % S) and every resid[k] also has a place in
 * page-locked host memory. S is 2, or 3 for DeepSeek's layers, whose
 * recomputation writes the layer's output again (into resid[l + 1]'s slot,
 * which must then not be the one resid[l - 1] is coming back into).
 *
 *   forward   layer l reads slot l % S and writes slot (l + 1) % S; as soon
 *             as resid[l + 1] is written its copy out starts on the transfer
 *             stream, beside the next layer. Before a layer overwrites the
 *             slot of resid[l + 1 - S], that copy must be done (it had S - 1
 *             layers' time).
 *   backward  resid[L - S + 1 .. L] are still in their slots. Before layer
 *             l's backward, resid[l - 1] starts coming back into the slot of
 *             resid[l - 1 + S], which no later layer needs, beside layer l's
 *             work; layer l itself waits for resid[l], which came back
 *             meanwhile.
 *
 * The copies overlap the layers' work; a step waits for them only where a
 * layer is faster than the copy of its input (short sequences, where offload
 * is not needed and stays off).
 */
#include "engine_internal.h"

#include "core/numeric.h"
#include "core/status.h"

static size_t row_bytes(const engine *e) { return (size_t)e->cfg.hidden_size * e->be->act_size; }

static void *host_of(const engine *e, int k)
{
    return (char *)e->resid_host + (size_t)k * e->Nmax * row_bytes(e);
}

/* Whether this forward's inputs are copied out: offload, and a backward to follow. */
static bool copying(const engine *e) { return e->opts.offload && e->last.for_backward; }

void resid_layout(engine *e, carve *c)
{
    const int L = e->cfg.num_layers;
    const size_t bytes = (size_t)e->Nmax * row_bytes(e);
    if (!e->opts.offload) {
        for (int k = 0; k <= L; k++) e->resid[k] = engine_take(c, bytes);
        return;
    }
    void *slot[3];
    for (int i = 0; i < e->resid_slots; i++) slot[i] = engine_take(c, bytes);
    for (int k = 0; k <= L; k++) e->resid[k] = slot[k % e->resid_slots];
}

/* Host copies are made only by forwards kept for a backward: training engines. */
size_t resid_host_bytes(const engine *e)
{
    return e->opts.offload && e->opts.training ? (size_t)(e->cfg.num_layers + 1) * e->Nmax * row_bytes(e) : 0;
}

int resid_alloc_host(engine *e)
{
    if (!resid_host_bytes(e)) return DS_OK;
    e->resid_host = be_host_alloc(e->be, resid_host_bytes(e), "offloaded activations (each layer's input)");
    return be_sync(e->be);
}

void resid_free_host(engine *e) { be_host_free(e->be, e->resid_host); }

void resid_before_write(engine *e, int k)
{
    const int S = e->resid_slots;
    if (copying(e) && k >= S) be_wait_transfer(e->be, e->resid_ticket[k - S]);   /* the slot's last tenant is out */
}

void resid_written(engine *e, int k)
{
    if (copying(e))
        e->resid_ticket[k] = be_transfer(e->be, host_of(e, k), e->resid[k], (size_t)e->N * row_bytes(e), true);
}

void resid_before_layer(engine *e, int l)
{
    if (!e->opts.offload) return;
    const int first_kept = e->cfg.num_layers - e->resid_slots + 1;   /* resid[first_kept..L] never left */
    if (l < first_kept) be_wait_transfer(e->be, e->resid_ticket[l]);   /* brought back during layer l + 1 */
    if (l >= 1 && l - 1 < first_kept)                                  /* into the slot of resid[l - 1 + S] */
        e->resid_ticket[l - 1] =
            be_transfer(e->be, e->resid[l - 1], host_of(e, l - 1), (size_t)e->N * row_bytes(e), false);
}

int resid_read(engine *e, int k, float *host)
{
    const int L = e->cfg.num_layers;
    const size_t n = (size_t)e->N * e->cfg.hidden_size;
    if (!e->opts.offload) {
        be_download_act_as_f32(e->be, host, e->resid[k], n);
        return be_sync(e->be);
    }
    if (e->last.for_backward) {   /* every input was copied out: read the host copy */
        int rc = be_sync(e->be);
        if (rc) return rc;
        const void *src = host_of(e, k);
        for (size_t i = 0; i < n; i++)
            host[i] = e->be->act_size == sizeof(float) ? ((const float *)src)[i]
                                                       : ds_bf16_to_f32(((const uint16_t *)src)[i]);
        return DS_OK;
    }
    if (k < L - e->resid_slots + 1)
        return ds_fail(DS_EINTERNAL, "hidden state %d is not kept: activations are offloaded and the forward was not "
                                     "kept for a backward", k - 1);
    be_download_act_as_f32(e->be, host, e->resid[k], n);
    return be_sync(e->be);
}
