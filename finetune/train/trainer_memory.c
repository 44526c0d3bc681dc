/* finetune/train/trainer_memory.c - before the engine's arenas are allocated
 * (and the weights placed): does the recipe's shape fit the device's free
 * memory? Where it does not, the run stops at once with the keys to change and
 * what each would need, instead of failing on an allocation later. */
#include "trainer.h"

#include "core/status.h"

#include <stdio.h>
#include <string.h>

/* Device memory a run takes beyond its arenas once its CUDA context exists
 * (that is already missing from the free figure): cuBLASLt's plans and the
 * allocator's rounding. */
#define FIT_MARGIN ((size_t)128 << 20)

static double gib(size_t b) { return (double)b / 1073741824.0; }

/* The device memory engine_create would take for options o, margin included. */
static int need_for(const model_config *cfg, bool quantized, const engine_opts *o, size_t *bytes)
{
    engine_memory m;
    int rc = engine_estimate(cfg, quantized, BE_CUDA, o, &m);
    if (!rc) *bytes = engine_memory_total(&m) + FIT_MARGIN;
    return rc;
}

/* Whether options t fit; if so, "<change> (an estimated X GiB)" into advice. */
static bool try_fit(const model_config *cfg, bool quantized, const engine_opts *t, size_t free_bytes,
                    const char *change, char *advice, size_t cap)
{
    size_t n;
    if (need_for(cfg, quantized, t, &n) || n > free_bytes) return false;
    snprintf(advice, cap, "%s (an estimated %.2f GiB)", change, gib(n));
    return true;
}

bool train_offload_helps(const model_config *cfg, bool quantized, const engine_opts *o, size_t free_bytes)
{
    size_t need;
    if (!o->checkpointing || o->offload) return false;
    return !need_for(cfg, quantized, o, &need) && need > free_bytes;
}

/* The host memory available to a new allocation (MemAvailable), 0 where unknown. */
static size_t host_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[128];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
    fclose(f);
    return (size_t)kib * 1024;
}

#define HOST_MARGIN ((size_t)2 << 30)

bool train_keep_attention_pays(const model_config *cfg, bool quantized, const engine_opts *o, size_t free_bytes)
{
    if (!o->checkpointing || cfg->ds.on) return false;
    engine_opts t = *o;
    t.keep_attention = true;
    engine_memory m;
    if (engine_estimate(cfg, quantized, BE_CUDA, &t, &m)) return false;
    bool host_holds = !o->offload || m.host + HOST_MARGIN <= host_available();
    return engine_memory_total(&m) + FIT_MARGIN <= free_bytes && host_holds;
}

/* What the projections leave free: they are a speed-up that fills the card, and
 * a run that then fails on an allocation its estimate missed loses more. */
#define KEEP_HEADROOM ((size_t)1 << 30)

int train_projections_that_fit(const model_config *cfg, bool quantized, const engine_opts *o, size_t free_bytes)
{
    if (!o->keep_attention || cfg->ds.on) return 0;
    engine_opts t = *o;
    size_t none, one;   /* a layer's entry is the difference between keeping none and one */
    t.keep_projections = 0;
    if (need_for(cfg, quantized, &t, &none) || none + KEEP_HEADROOM >= free_bytes) return 0;
    size_t all;   /* every layer's: the set's own buffers for them are then not needed */
    t.keep_projections = cfg->num_layers;
    if (!need_for(cfg, quantized, &t, &all) && all + KEEP_HEADROOM <= free_bytes) return cfg->num_layers;
    t.keep_projections = 1;
    if (need_for(cfg, quantized, &t, &one) || one <= none) return 0;
    size_t n = (free_bytes - KEEP_HEADROOM - none) / (one - none);
    return n < (size_t)cfg->num_layers ? (int)n : cfg->num_layers;
}

bool trainer_offload_needed(const recipe *r, const model_config *cfg, bool quantized, const engine_opts *o,
                            size_t free_bytes)
{
    const char *key = r->train.offload_activations;
    return key && !strcmp(key, "auto") && train_offload_helps(cfg, quantized, o, free_bytes);
}

int trainer_memory_check(const recipe *r, const model_config *cfg, bool quantized, const engine_opts *o,
                         size_t free_bytes, const char *device, size_t *need_out)
{
    size_t need = 0;
    int rc = need_for(cfg, quantized, o, &need);
    if (need_out) *need_out = rc ? 0 : need;
    if (rc || need <= free_bytes) return rc;
    const int per = r->plan.paired ? 2 : 1;   /* rows per example */
    char advice[256] = "", change[160];
    engine_opts t = *o;
    /* the usual remedies in order: checkpointing, the projections not kept
     * in every layer, offload, a smaller micro-batch, shorter rows */
    if (!o->checkpointing) {
        t.checkpointing = true;
        try_fit(cfg, quantized, &t, free_bytes, "train.gradient_checkpointing: true", advice, sizeof advice);
    }
    if (!*advice && o->keep_projections) {   /* train.keep_projections: true; auto keeps what fits */
        t.keep_projections = 0;
        try_fit(cfg, quantized, &t, free_bytes, "train.keep_projections: auto", advice, sizeof advice);
        t.keep_projections = o->keep_projections;
    }
    const char *off = r->train.offload_activations;
    if (!*advice && !o->offload && off && !strcmp(off, "false")) {   /* turned off by the recipe */
        t.offload = t.checkpointing = true;
        try_fit(cfg, quantized, &t, free_bytes,
                o->checkpointing ? "train.offload_activations: true" : "train.offload_activations: true with "
                "train.gradient_checkpointing: true", advice, sizeof advice);
        t.offload = o->offload, t.checkpointing = o->checkpointing;
    }
    for (int mb = r->plan.micro_batch - 1; !*advice && mb >= 1; mb--) {
        t.max_B = mb * per;
        snprintf(change, sizeof change, "train.micro_batch_size: %d, with gradient_accumulation_steps raised "
                                        "to keep the batch%s", mb, o->checkpointing ? "" : ", checkpointing on");
        try_fit(cfg, quantized, &t, free_bytes, change, advice, sizeof advice);
    }
    t.max_B = per;
    for (int T = o->max_T / 2; !*advice && T >= 128; T /= 2) {
        t.max_T = T;
        snprintf(change, sizeof change, "data.sequence_len: %d at micro_batch_size 1%s", T,
                 o->checkpointing ? "" : ", checkpointing on");
        try_fit(cfg, quantized, &t, free_bytes, change, advice, sizeof advice);
    }
    if (!*advice) snprintf(advice, sizeof advice, "a card with more free memory: even one row of 128 tokens does not fit");
    return ds_fail(DS_ETRAIN, "%s: out of device memory before the first step: micro_batch_size %d at sequence_len %d "
                              "needs an estimated %.2f GiB on %s, which has %.2f GiB free; set %s",
                   r->file, r->plan.micro_batch, o->max_T, gib(need), device, gib(free_bytes), advice);
}
