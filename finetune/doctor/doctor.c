/* finetune/doctor/doctor.c - the report of `ds-ft doctor [RECIPE]`: the machine,
 * then for a recipe its model, data, memory and time (see doctor.h). Every
 * line says whether its figure is measured or estimated. */
#include "doctor.h"

#include "core/files.h"
#include "core/status.h"
#include "data/hub/hub.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef DSFT_VERSION
#define DSFT_VERSION "dev"
#endif
#ifndef DSFT_CUDA_GENCODE
#define DSFT_CUDA_GENCODE ""
#endif

#define GIB (1024.0 * 1024.0 * 1024.0)

/* The card to plan for and its free memory (0: unknown). */
typedef struct {
    const doctor_gpu *card;   /* NULL: none named and none recognised */
    double free_gib;
    const char *label;        /* "the RTX 4090 here", "--gpu 4090", ... */
    char text[300];
} plan_target;

/* "1.2B" or "0.6M" parameters. */
static void params_text(const model_config *cfg, char *buf, size_t n)
{
    double p = (double)model_config_params(cfg);
    if (p >= 1e9) snprintf(buf, n, "%.2fB", p / 1e9);
    else snprintf(buf, n, "%.1fM", p / 1e6);
}

/* "3.4 h" or "12 min". */
static void duration_text(double sec, char *buf, size_t n)
{
    if (sec >= 3600) snprintf(buf, n, "%.1f h", sec / 3600);
    else if (sec >= 60) snprintf(buf, n, "%.0f min", sec / 60);
    else snprintf(buf, n, "%.0f s", sec);
}

/* ---- the machine ---- */

static void report_machine(FILE *out, const doctor_opts *o, plan_target *t)
{
    bool cuda = be_cuda_compiled();
    fprintf(out, "build        ds-ft %s, %s\n", DSFT_VERSION,
            cuda ? "with CUDA (" DSFT_CUDA_GENCODE ")" : "CPU only: no CUDA code (rebuild where nvcc is on the PATH)");
    be_gpu gpus[8];
    int driver, runtime, n = be_cuda_devices(gpus, 8, &driver, &runtime);
    if (n == 0)
        fprintf(out, "gpu          none found (%s); the estimates below are for %s\n",
                cuda ? "no CUDA device is usable: no GPU or no driver" : "this build has no CUDA", o->gpu ? "--gpu" : o->mem_gib > 0 ? "--mem-gib" : "each card ds-ft knows (--gpu KEY for one)");
    for (int i = 0; i < n; i++) {
        char how[512];
        bool runs = doctor_build_covers(DSFT_CUDA_GENCODE, gpus[i].major, gpus[i].minor, how, sizeof how);
        fprintf(out, "gpu %d        %s, compute capability %d.%d, %.1f GiB, %.1f GiB free\n", i, gpus[i].name,
                gpus[i].major, gpus[i].minor, gpus[i].total_bytes / GIB, gpus[i].free_bytes / GIB);
        fprintf(out, "             this build %s: %s\n", runs ? "runs on it" : "cannot run on it", how);
        if (gpus[i].major < 8)
            fprintf(out, "             ds-ft's kernels need compute capability 8.0 or newer (bf16 tensor cores)\n");
    }
    if (driver || runtime)
        fprintf(out, "cuda         driver %d.%d, runtime %d.%d%s\n", driver / 1000, driver % 1000 / 10, runtime / 1000,
                runtime % 1000 / 10, driver && runtime > driver ? " (the driver is older than the runtime: update it)" : "");
    if (o->gpu) {
        t->card = doctor_gpu_find(o->gpu);
        t->free_gib = t->card ? t->card->mem_gib : 0;
        snprintf(t->text, sizeof t->text, "--gpu %s (%s, %.0f GiB on the card)", o->gpu, t->card ? t->card->name : "?",
                 t->free_gib);
    } else if (n > 0) {
        t->card = doctor_gpu_find(gpus[0].name);
        t->free_gib = gpus[0].free_bytes / GIB;
        snprintf(t->text, sizeof t->text, "gpu 0 (%.1f GiB free)", t->free_gib);
    }
    if (o->mem_gib > 0) {
        t->free_gib = o->mem_gib;
        size_t k = strlen(t->text);
        snprintf(t->text + k, sizeof t->text - k, "%s%.1f GiB free (--mem-gib)", k ? ", planned with " : "", o->mem_gib);
    }
    t->label = t->text;
}

/* ---- the model ---- */

/* ds-ft's table of shapes for a Hub id not downloaded yet: "deepseek-ai/deepseek-llm-7b-base@rev" -> deepseek-llm-7b. */
static bool builtin_shape(const char *id, model_config *cfg, char *name, size_t n)
{
    const char *slash = strchr(id, '/');
    snprintf(name, n, "%s", slash ? slash + 1 : id);
    char *at = strchr(name, '@');
    if (at) *at = '\0';
    static const char *const suffixes[] = {"-base", "-chat", "-instruct"};
    for (int i = 0; i < 3; i++) {
        size_t ln = strlen(name), ls = strlen(suffixes[i]);
        if (ln > ls && !strcmp(name + ln - ls, suffixes[i])) name[ln - ls] = '\0';
    }
    if (!strcmp(name, "tiny") || strchr(name, '/') || model_shape(name, cfg) != DS_OK) {
        ds_clear_error();
        return false;
    }
    return true;
}

static void indent(FILE *out, const char *msg)
{
    for (const char *p = msg; *p; p++) {
        fputc(*p, out);
        if (*p == '\n') fputs("             ", out);
    }
    fputc('\n', out);
}

/* The model's config (from its folder, or the table), and its tokenizer when downloaded. */
static bool report_model(FILE *out, const recipe *r, model_config *cfg, tokenizer **tok)
{
    char *dir = NULL, shape[128];
    hub_found f;
    int rc = hub_resolve(r->base_model, "base_model", HUB_MODEL, &dir, &f);
    if (!rc) rc = model_config_load(dir, cfg);
    if (!rc) {
        char params[32];
        params_text(cfg, params, sizeof params);
        fprintf(out, "model        %s%s%s: %d layers, hidden %d, vocabulary %d, %s parameters\n", r->base_model,
                f.from_cache ? " -> " : "", f.from_cache ? dir : "", cfg->num_layers, cfg->hidden_size,
                cfg->vocab_size, params);
        char *tdir = NULL;
        if (!strcmp(r->tokenizer, r->base_model)) tdir = dir, dir = NULL;
        else if (hub_resolve(r->tokenizer, "tokenizer", HUB_TOKENIZER, &tdir, NULL)) {
            fputs("tokenizer    ", out);
            indent(out, ds_errmsg());
        }
        if (tdir && tok_load(tdir, tok) == DS_OK) tok_set_default_ids(*tok, cfg->bos_id, cfg->eos_id, cfg->pad_id);
        else if (tdir) fprintf(out, "tokenizer    %s\n", ds_errmsg());
        free(tdir);
        free(dir);
        return true;
    }
    fputs("model        ", out);
    indent(out, ds_errmsg());
    free(dir);
    if (!builtin_shape(r->base_model, cfg, shape, sizeof shape)) {
        fprintf(out, "             without its config.json the memory and time cannot be estimated\n");
        return false;
    }
    char params[32];
    params_text(cfg, params, sizeof params);
    fprintf(out, "             until then: the shape of %s from ds-ft's table (%d layers, hidden %d, %s parameters)\n",
            shape, cfg->num_layers, cfg->hidden_size, params);
    return true;
}

/* ---- memory and time ---- */

static void say_line(void *out, const char *line) { fprintf(out, "data         %s\n", line); }

#define MAX_MICRO_BATCH 256

/* The largest micro-batch (up to MAX_MICRO_BATCH) whose estimate fits in free_gib; 0 when none does. */
static int largest_fitting(const model_config *cfg, const recipe *r, double free_gib)
{
    int lo = 0, hi = MAX_MICRO_BATCH + 1;   /* lo fits (0: nothing yet), hi does not */
    while (hi - lo > 1) {
        int mb = (lo + hi) / 2;
        doctor_memory m;
        if (doctor_memory_for(cfg, r, mb, &m) == DS_OK && m.total / GIB <= free_gib) lo = mb;
        else hi = mb;
    }
    return lo;
}

static void report_fit(FILE *out, const model_config *cfg, const recipe *r, const doctor_memory *m, double free_gib,
                       const char *label)
{
    double need = m->total / GIB;
    if (free_gib <= 0) return;
    if (need <= free_gib)
        fprintf(out, "fits         yes on %s: %.1f GiB of %.1f GiB, %.1f GiB to spare\n", label, need, free_gib,
                free_gib - need);
    else
        fprintf(out, "fits         NO on %s: %.1f GiB needed, %.1f GiB there\n", label, need, free_gib);
    const char *off = r->train.offload_activations;
    doctor_memory o;
    bool offload_fits = need > free_gib && !m->arenas.host && r->train.gradient_checkpointing &&
                        (!off || !strcmp(off, "auto")) &&
                        doctor_memory_offloaded(cfg, r, r->plan.micro_batch, &o) == DS_OK && o.total / GIB <= free_gib;
    if (offload_fits)
        fprintf(out, "             with each layer's input in host memory it fits: %.1f GiB on the card and %.1f GiB "
                     "of page-locked host memory (train.offload_activations: auto turns this on)\n",
                o.total / GIB, o.arenas.host / GIB);
    int best = largest_fitting(cfg, r, free_gib);
    if (best == 0 && offload_fits)
        return;
    if (best == 0)
        fprintf(out, "             not even micro_batch_size 1 fits at sequence_len %d: shorten data.sequence_len, "
                     "keep train.gradient_checkpointing on, or take a card with more memory\n", r->plan.seq_len);
    else if (best == MAX_MICRO_BATCH)
        fprintf(out, "             micro-batches of %d and more fit at sequence_len %d\n", best, r->plan.seq_len);
    else if (best != r->plan.micro_batch)
        fprintf(out, "             the largest micro-batch that fits at sequence_len %d is %d: "
                     "train.micro_batch_size=%d train.gradient_accumulation_steps=%d keeps %d examples per step\n",
                r->plan.seq_len, best, best, (r->plan.micro_batch * r->plan.accum + best - 1) / best,
                r->plan.micro_batch * r->plan.accum);
}

static void report_time(FILE *out, const doctor_epoch *e, const doctor_speed *s, const recipe *r, const char *label)
{
    double sec = e->computed / s->tokens_per_s;
    double epochs = r->train.max_steps > 0 && e->steps > 0 ? (double)r->train.max_steps / e->steps : r->train.num_epochs;
    char one[32], all[32];
    duration_text(sec, one, sizeof one);
    duration_text(sec * epochs, all, sizeof all);
    fprintf(out, "time         ~%s per epoch on %s (%.0f tokens through the engine at %.0f tokens/s), ~%s for %.2g "
                 "epoch%s; evaluation before and after comes on top\n",
            one, label, e->computed, s->tokens_per_s, all, epochs, epochs == 1 ? "" : "s");
    fprintf(out, "             speed %s\n", s->basis);
}

static void report_recipe(FILE *out, const doctor_opts *o, const plan_target *t)
{
    const recipe *r = o->recipe;
    fprintf(out, "recipe       %s\n", r->file);
    if (r->plan.device == BE_CPU) fprintf(out, "             device: cpu in the recipe; the figures below are for a GPU\n");
    model_config cfg;
    tokenizer *tok = NULL;
    bool shape = report_model(out, r, &cfg, &tok);
    doctor_memory m = {0};
    if (shape && doctor_memory_for(&cfg, r, r->plan.micro_batch, &m) == DS_OK) {
        const engine_memory *a = &m.arenas;
        fprintf(out, "memory       %.1f GiB estimated for micro_batch_size %d, sequence_len %d: weights %.1f, "
                     "adapter and optimizer %.2f, activations %.1f, workspace %.1f, CUDA context and libraries %.1f\n",
                m.total / GIB, r->plan.micro_batch, r->plan.seq_len, a->weights / GIB, a->adapter / GIB,
                a->activations / GIB, a->workspace / GIB, DOCTOR_CUDA_OVERHEAD / GIB);
        if (t->card || t->free_gib > 0) report_fit(out, &cfg, r, &m, t->free_gib, t->label);
    } else if (shape) {
        fprintf(out, "memory       %s\n", ds_errmsg());
        shape = false;
    }
    doctor_epoch e;
    for (int i = 0; i < r->data.n_datasets; i++)
        if (!ds_exists(r->data.datasets[i].path)) {
            fprintf(out, "data         data.datasets[%d].path: %s: no such file; the time cannot be estimated\n", i,
                    r->data.datasets[i].path);
            tok_free(tok);
            return;
        }
    int rc = doctor_epoch_for(r, tok, say_line, out, &e);
    tok_free(tok);
    if (rc) {
        fputs("data         ", out);
        indent(out, ds_errmsg());
        return;
    }
    fprintf(out, "data         %ld training examples, %.0f tokens, %s; an epoch is %ld micro-batches, %ld optimizer "
                 "steps\n", e.examples, e.tokens, e.basis, e.micro_batches, e.steps);
    if (!shape) return;
    if (t->card) {
        doctor_speed s = doctor_speed_for(t->card, &cfg, r->plan.rows, r->plan.paired);
        report_time(out, &e, &s, r, t->label);
        return;
    }
    if (t->free_gib > 0) {
        fprintf(out, "time         no speed figure for this card: measure one with `ds-ft bench train`\n");
        return;
    }
    fprintf(out, "per card     (memory on the card; speed estimated from `ds-ft bench train` on an H100)\n");
    for (int i = 0; doctor_gpu_at(i); i++) {
        const doctor_gpu *g = doctor_gpu_at(i);
        doctor_speed s = doctor_speed_for(g, &cfg, r->plan.rows, r->plan.paired);
        char how[512];
        bool runs = doctor_build_covers(DSFT_CUDA_GENCODE, g->major, g->minor, how, sizeof how);
        char one[32];
        duration_text(e.computed / s.tokens_per_s, one, sizeof one);
        fprintf(out, "  %-5s %5.0f GiB  %-8s ~%s per epoch%s%s\n", g->key, g->mem_gib,
                m.total / GIB <= g->mem_gib ? "fits" : "too big", one, s.measured ? " (measured speed)" : "",
                runs ? "" : "  (DSFT_CUDA_GENCODE has no code for it)");
    }
}

int doctor_run(const doctor_opts *o, FILE *out)
{
    if (o->gpu && !doctor_gpu_find(o->gpu))
        return ds_fail(DS_EUSAGE, "doctor: --gpu %s: not a card ds-ft knows (%s); give the free memory with --mem-gib "
                                  "instead", o->gpu, doctor_gpu_keys());
    plan_target t = {0};
    report_machine(out, o, &t);
    if (o->recipe) report_recipe(out, o, &t);
    else fprintf(out, "recipe       none: `ds-ft doctor RECIPE` also says whether it fits and how long an epoch takes\n");
    return DS_OK;
}
