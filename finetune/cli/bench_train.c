/* finetune/cli/bench_train.c - `ds-ft bench train`: QLoRA training steps on a
 * model of a given shape with random NF4 weights (no files), timed after a
 * warm-up. Reports tokens/s, step time, peak memory and the executed FLOP
 * rate as a share of the GPU's bf16 peak measured here with one large GEMM. */
#include "bench.h"
#include "finetune/model/model.h"
#include "commands.h"
#include "finetune/engine/engine.h"
#include "finetune/train/train.h"

#include "core/clock.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/units.h"
#include "losses/loss.h"

#include <math.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *shape;
    int seq, batch, rank, steps, warmup, accum;
    bool dpo, checkpointing;
    bool profile;           /* one more step, timed by op */
    bool precompute_ref;    /* DPO: the reference log-probs once before the steps, as precompute_ref_log_probs */
    const char *offload;    /* auto | on | off */
    const char *keep_attention;   /* auto | on | off */
    const char *keep_projections;   /* auto | on | off */
    unsigned targets;
    bool default_targets;   /* no --targets: q_proj,v_proj, or DeepSeek's MLA pair */
    double mem_limit_gib;   /* > 0: search the largest micro-batch under this */
    const char *device;
} bench_opts;

/* Measured bf16 GEMM rate (TFLOP/s): the ceiling the shares refer to. */
static double measure_peak(backend *be)
{
    int n = be->kind == BE_CUDA ? 8192 : 256, reps = be->kind == BE_CUDA ? 20 : 3;
    size_t bytes = (size_t)n * n * be->act_size;
    void *a = be_alloc(be, bytes, "peak A"), *b = be_alloc(be, bytes, "peak B"), *c = be_alloc(be, bytes, "peak C");
    float *host = be->err ? NULL : ds_malloc(sizeof(float) * (size_t)n * n, "the GEMM's operands");
    if (!host && !be->err) be_fail(be, DS_ENOMEM, "%s", ds_errmsg());   /* the caller's be_sync() says it */
    if (be->err) {
        be_free(be, a);
        be_free(be, b);
        be_free(be, c);
        return 0;
    }
    for (size_t i = 0; i < (size_t)n * n; i++) host[i] = ds_u01(ds_hash3(1, 2, i)) - 0.5f;   /* never zeros */
    be_upload_f32_as_act(be, a, host, (size_t)n * n);
    be_upload_f32_as_act(be, b, host, (size_t)n * n);
    free(host);
    be_matmul_nt(be, c, a, b, n, n, n, 0.0f);
    be_sync(be);
    double t0 = ds_now();
    for (int i = 0; i < reps; i++) be_matmul_nt(be, c, a, b, n, n, n, 0.0f);
    be_sync(be);
    double dt = ds_now() - t0;
    be_free(be, a);
    be_free(be, b);
    be_free(be, c);
    return 2.0 * n * n * (double)n * reps / dt / 1e12;
}

/* Multiply-adds per token of the linear layers, summed over the layers: all
 * of them (*lin; in a DeepSeek MoE layer the router, and the routed experts'
 * top_k / n_routed share: each token runs through top_k of them), the down
 * projections among them (*down), the attention block's q, k, v and o among
 * them (*attn; Llama-family layers), and the LoRA products of the targets at
 * rank r (*lora). */
static void linear_work(const model_config *c, unsigned targets, int r, double *lin, double *down, double *attn,
                        double *lora)
{
    *lin = *down = *attn = *lora = 0;
    for (int l = 0; l < c->num_layers; l++) {
        if (c->ds.on && deepseek_is_moe(c, l)) *lin += (double)c->ds.n_routed * c->hidden_size;
        for (int s = 0; s < model_slots(c); s++) {
            int out, in;
            const char *name;
            double share = 1;
            if (c->ds.on) {
                if (!deepseek_linear(c, l, s, NULL, 0, &name, &out, &in)) continue;
                if (s >= DSL_EXPERTS) share = (double)c->ds.top_k / c->ds.n_routed;
            } else {
                llama_linear_shape(c, (llama_linear)s, &out, &in);
                name = llama_linear_name((llama_linear)s);
            }
            *lin += share * out * in;
            if (!strcmp(name, "down_proj")) *down += share * out * in;
            if (!c->ds.on && s <= LIN_O) *attn += (double)out * in;
            int bit = lora_target_bit(name);
            if (bit >= 0 && (targets & (1u << bit))) *lora += share * r * ((double)out + in);
        }
    }
}

/* FLOPs one step executes (matrix products and attention). */
static double step_flops(const model_config *c, const bench_opts *o, long rows, bool kept_attention,
                         int kept_projections)
{
    double C = c->hidden_size, V = c->vocab_size, T = o->seq, L = c->num_layers, lin, down, attn, lora;
    linear_work(c, o->targets, o->rank, &lin, &down, &attn, &lora);
    double tokens = (double)rows * T;
    double dv = c->ds.on ? c->ds.v_head_dim : c->head_dim;   /* DeepSeek's values are narrower than q/k */
    double attn_fwd = T * c->num_heads * (c->head_dim + dv) * L;   /* causal: T/2 keys, 2 products, 2 flops */
    double fwd = 2 * lin + 2 * lora + 2 * V * C + attn_fwd;
    double bwd = 2 * lin + 4 * lora + 4 * V * C + 2.5 * attn_fwd;   /* dx only; logits recomputed */
    /* kept projections: their layers recompute only the LoRA intermediates
     * u = x Aᵀ of q, k, v and o, counted here in full (r·out of r·(in + out)
     * more, a few hundredths of a percent of the step) */
    double recompute = o->checkpointing ? 2 * (lin - down - attn * kept_projections / L) + 2 * lora +
                                          (kept_attention ? 0 : attn_fwd) : 0;
    double ref = o->dpo && !o->precompute_ref ? 2 * lin + 2 * V * C + attn_fwd : 0;
    return tokens * (fwd + bwd + recompute + ref) * o->accum;
}

static int random_batch(batch *b, int B, int T, int V, bool dpo, uint64_t seed)
{
    int rc = batch_alloc(b, B, T);
    if (rc) return rc;
    for (int r = 0; r < B; r++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)r * T + t;
            /* DPO: rows 2k and 2k+1 share their first half (the prompt) */
            uint64_t row_seed = dpo && t < T / 2 ? (uint64_t)(r / 2) : (uint64_t)r + 1000;
            b->ids[i] = (int32_t)ds_rng_below(&(ds_rng){seed, row_seed, (uint64_t)t}, (uint64_t)V);
            b->pos[i] = t;
            b->seg[i] = 0;
        }
    for (int r = 0; r < B; r++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)r * T + t;
            b->targets[i] = t + 1 < T && (!dpo || t + 1 >= T / 2) ? b->ids[i + 1] : -1;
        }
    return DS_OK;
}

/* The reference log-probs of DPO: the same model with the adapter off. */
static int ref_pass(engine *e, const batch *b, float *ref)
{
    engine_fwd fr = {.lora = false};
    return engine_forward(e, b, &fr, ref, NULL);
}

/* One optimizer step: accum micro-batches of forward (+reference), loss, backward. */
static int one_step(engine *e, const batch *b, const bench_opts *o, const recipe_loss *l, int step, float *lp,
                    float *ref, float *a, float *bc)
{
    const loss_module *m = l->module;
    void *cfg = l->cfg;
    int rc = engine_zero_grads(e);
    for (int k = 0; !rc && k < o->accum; k++) {
        size_t N = (size_t)b->B * b->T;
        if (o->dpo && !o->precompute_ref) rc = ref_pass(e, b, ref);
        engine_fwd f = {.lora = true, .training = true, .for_backward = true, .micro_step = (uint64_t)step};
        if (!rc) rc = engine_forward(e, b, &f, lp, NULL);
        memset(a, 0, sizeof(float) * N);
        memset(bc, 0, sizeof(float) * N);
        loss_input in = {.B = b->B, .T = b->T, .targets = b->targets, .logprob = lp, .ref_logprob = ref};
        loss_output out = {.a = a, .b = bc};
        if (!rc) rc = m->forward(cfg, &in, m->count(cfg, &in) * o->accum, &out);
        if (!rc) rc = engine_backward(e, a, bc, NULL);
    }
    double norm;
    if (!rc) rc = engine_grad_norm(e, &norm);
    adamw_args aw = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .grad_scale = 1.0f, .step = step + 1};
    if (!rc) rc = engine_adamw(e, &aw);
    return rc;
}

typedef struct {
    double step_s, tokens_per_s, tflops;
    size_t peak_alloc, in_use;
    engine_memory plan;   /* the engine's arenas: where the run's memory lives */
    size_t host_peak;     /* the process's peak resident set so far (over every micro-batch run) */
    bool offload;         /* each layer's input was offloaded to host memory */
    bool keep_attention;  /* each layer's attention output was kept for the backward */
    int keep_projections;   /* layers whose q, k, v and residual after attention were kept too */
} bench_result;

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* One step after the timed ones, with every op timed on the device
 * (be_profile_begin): a table of where the step's time goes. */
static int profile_step(engine *e, const batch *b, const bench_opts *o, const recipe_loss *l, int step, float *lp,
                        float *ref, float *a, float *bc)
{
    backend *be = engine_backend(e);
    int rc = be_sync(be);
    if (!rc) rc = be_profile_begin(be);
    double t0 = ds_now();
    if (!rc) rc = one_step(e, b, o, l, step, lp, ref, a, bc);
    if (!rc) rc = be_sync(be);
    const double step_ms = (ds_now() - t0) * 1e3;   /* before the events are read back */
    be_profile_row *rows = NULL;
    int n = 0, prc = be_profile_end(be, &rows, &n);
    if (!rc) rc = prc;
    if (rc) {
        free(rows);
        return rc;
    }
    const int micro_batch = o->dpo ? b->B / 2 : b->B;   /* pairs with DPO, as the run's other lines count */
    double sum = 0;
    for (int i = 0; i < n; i++) sum += rows[i].ms;
    printf("  time by op, micro-batch %d, one step of %.1f ms (device time between events around each call; an op's "
           "own products count as the op; be_gemm is the base model's):\n", micro_batch, step_ms);
    printf("    %-28s %7s %10s %7s\n", "op", "calls", "ms", "share");
    for (int i = 0; i < n; i++)
        printf("    %-28s %7ld %10.2f %6.1f%%\n", rows[i].name, rows[i].calls, rows[i].ms, 100.0 * rows[i].ms / step_ms);
    printf("    %-28s %7s %10.2f %6.1f%%\n", "(between calls)", "", step_ms - sum, 100.0 * (step_ms - sum) / step_ms);
    printf("PROFILE {\"micro_batch\": %d, \"step_ms\": %.3f", micro_batch, step_ms);
    for (int i = 0; i < n; i++) printf(", \"%s\": [%ld, %.3f]", rows[i].name, rows[i].calls, rows[i].ms);
    printf("}\n");
    free(rows);
    return DS_OK;
}

static int run_batch(backend *be, const llama_model *m, const lora_adapter *ad, const bench_opts *o, int B,
                     bench_result *res)
{
    int rows = o->dpo ? 2 * B : B;
    engine *e = NULL;
    engine_opts eo = {.max_B = rows, .max_T = o->seq, .checkpointing = o->checkpointing, .training = true,
                      .adapter = ad, .seed = 1, .offload = !strcmp(o->offload, "on")};
    eo.keep_attention = !strcmp(o->keep_attention, "on");
    size_t free_b = 0, total_b = 0;   /* `auto` decides as training does, on the GPU's free memory */
    if (be->kind == BE_CUDA) be_mem_info(be, &free_b, &total_b);
    size_t limit = (size_t)(o->mem_limit_gib * 1073741824.0), in_use = total_b - free_b;
    if (o->mem_limit_gib > 0)   /* a limit searched under: what is free under it */
        free_b = limit <= in_use ? 0 : limit - in_use < free_b ? limit - in_use : free_b;
    if (!strcmp(o->offload, "auto") && be->kind == BE_CUDA)
        eo.offload = train_offload_helps(&m->cfg, true, &eo, free_b);
    if (!strcmp(o->keep_attention, "auto") && be->kind == BE_CUDA)
        eo.keep_attention = train_keep_attention_pays(&m->cfg, true, &eo, free_b);
    res->offload = eo.offload;
    if (!strcmp(o->keep_projections, "on")) eo.keep_projections = m->cfg.num_layers;   /* parse(): with the attention */
    if (!strcmp(o->keep_projections, "auto") && be->kind == BE_CUDA)
        eo.keep_projections = train_projections_that_fit(&m->cfg, true, &eo, free_b);
    res->keep_attention = eo.keep_attention;
    res->keep_projections = eo.keep_projections;
    int rc = engine_create(be, m, &eo, &e);
    if (rc) return rc;
    batch b;
    rc = random_batch(&b, rows, o->seq, m->cfg.vocab_size, o->dpo, 99);
    size_t N = (size_t)rows * o->seq;
    float *lp = ds_malloc(sizeof(float) * N, "log-probabilities");
    float *ref = ds_malloc(sizeof(float) * N, "log-probabilities");
    float *a = ds_malloc(sizeof(float) * N, "loss coefficients");
    float *bc = ds_malloc(sizeof(float) * N, "loss coefficients");
    double *times = ds_calloc((size_t)o->steps, sizeof(double), "step times");
    if (!rc && !(lp && ref && a && bc && times)) rc = DS_ENOMEM;
    recipe_loss l = {0};
    if (!rc) rc = recipe_loss_parse(o->dpo ? "{type: dpo}" : "{type: sft}", false, &l);
    if (!rc && o->dpo && o->precompute_ref) rc = ref_pass(e, &b, ref);   /* once, untimed, as training does */
    for (int s = 0; !rc && s < o->warmup + o->steps; s++) {
        double t0 = ds_now();
        rc = one_step(e, &b, o, &l, s, lp, ref, a, bc);
        if (!rc) rc = be_sync(be);
        if (s >= o->warmup) times[s - o->warmup] = ds_now() - t0;
    }
    if (!rc && o->profile) rc = profile_step(e, &b, o, &l, o->warmup + o->steps, lp, ref, a, bc);
    if (!rc) {
        qsort(times, (size_t)o->steps, sizeof *times, cmp_double);
        res->step_s = times[o->steps / 2];
        res->tokens_per_s = (double)N * o->accum / res->step_s;
        res->tflops = step_flops(&m->cfg, o, rows, res->keep_attention, res->keep_projections) / res->step_s / 1e12;
        be_mem_info(be, &free_b, &total_b);   /* now, with the engine and its steps */
        res->peak_alloc = be_peak_bytes(be);
        res->in_use = total_b - free_b;
        res->plan = engine_memory_use(e);
        struct rusage ru;
        res->host_peak = getrusage(RUSAGE_SELF, &ru) == 0 ? (size_t)ru.ru_maxrss * 1024 : 0;   /* KiB on Linux */
    }
    recipe_loss_free(&l);
    free(times); free(lp); free(ref); free(a); free(bc);
    batch_free(&b);
    engine_free(e);
    return rc;
}

/* The command line, as the table says; turned into bench_opts by parse(). */
typedef struct {
    const char *shape, *device, *loss, *checkpointing, *targets, *offload, *keep_attention, *keep_projections;
    long seq, batch, rank, steps, warmup, accum;
    double mem_limit_gib;
    bool profile, precompute_ref;
} bench_args;

static const cli_opt BENCH_TRAIN_OPTS[] = {
    {"--shape", ARG_TEXT, offsetof(bench_args, shape), "NAME|DIR", "deepseek-llm-7b", 0, 0, NULL, false,
     "a built-in shape (deepseek-llm-7b, deepseek-coder-1.3b, deepseek-coder-6.7b, tiny, "
     "deepseek-r1-distill-qwen-7b, deepseek-r1-distill-qwen-14b, deepseek-r1-distill-llama-8b, deepseek-v2-lite) "
     "or a model folder's config.json; the weights are random NF4"},
    {"--seq", ARG_INT, offsetof(bench_args, seq), "N", "2048", 2, 1 << 20, NULL, false, "sequence length"},
    {"--batch", ARG_INT, offsetof(bench_args, batch), "N", "4", 1, 4096, NULL, false,
     "micro-batch (rows; pairs with --loss dpo)"},
    {"--rank", ARG_INT, offsetof(bench_args, rank), "R", "16", 1, 4096, NULL, false, "LoRA rank"},
    {"--targets", ARG_TEXT, offsetof(bench_args, targets), "LIST", "q_proj,v_proj", 0, 0, NULL, false,
     "the linear layers with adapters, comma-separated (" LORA_TARGET_NAMES "); names the model lacks "
     "(v_proj on DeepSeek) adapt nothing; DeepSeek's default: q_proj (q_b_proj with a low-rank query) and "
     "kv_b_proj"},
    {"--loss", ARG_CHOICE, offsetof(bench_args, loss), NULL, "sft", 0, 0, "sft|dpo", false,
     "sft, or dpo (chosen + rejected rows and the reference pass)"},
    {"--checkpointing", ARG_CHOICE, offsetof(bench_args, checkpointing), NULL, "on", 0, 0, "on|off", false,
     "gradient checkpointing"},
    {"--offload", ARG_CHOICE, offsetof(bench_args, offload), NULL, "auto", 0, 0, "auto|on|off", false,
     "each layer's input kept in host memory (with checkpointing); auto = where the run would not fit the GPU's "
     "free memory otherwise"},
    {"--keep-attention", ARG_CHOICE, offsetof(bench_args, keep_attention), NULL, "auto", 0, 0, "auto|on|off", false,
     "each layer's attention output kept for the backward, which then does not compute it again (with "
     "checkpointing); auto = where it fits, as train.keep_attention: auto"},
    {"--keep-projections", ARG_CHOICE, offsetof(bench_args, keep_projections), NULL, "auto", 0, 0, "auto|on|off",
     false, "with the attention output kept: each layer's q, k, v and residual after attention kept on the device "
     "too, so that the recomputation runs no projection of the attention block; auto = in as many layers as the "
     "free memory holds, as train.keep_projections: auto"},
    {"--accum", ARG_INT, offsetof(bench_args, accum), "N", "1", 1, 4096, NULL, false,
     "micro-batches per optimizer step"},
    {"--steps", ARG_INT, offsetof(bench_args, steps), "N", "5", 1, 100000, NULL, false,
     "timed steps (the median is reported)"},
    {"--warmup", ARG_INT, offsetof(bench_args, warmup), "N", "2", 0, 100000, NULL, false, "untimed steps first"},
    {"--precompute-ref", ARG_FLAG, offsetof(bench_args, precompute_ref), NULL, "off", 0, 0, NULL, false,
     "with --loss dpo: the reference log-probs computed once before the steps (precompute_ref_log_probs), not in each"},
    {"--profile", ARG_FLAG, offsetof(bench_args, profile), NULL, "off", 0, 0, NULL, false,
     "then one more step with each op timed on the device: a table of time by op (CUDA)"},
    {"--mem-limit-gib", ARG_NUM, offsetof(bench_args, mem_limit_gib), "G", "0", 0, 1e6, NULL, false,
     "search the largest micro-batch in use under G GiB; 0 = run --batch only"},
    CLI_DEVICE(bench_args, device),
    CLI_END,
};

const cli_spec BENCH_TRAIN_SPEC = {"bench train", "", 0, 0, NULL,
                                   "QLoRA training steps on random NF4 weights of a model shape: tokens/s, step time, "
                                   "peak memory, FLOP rate",
                                   BENCH_TRAIN_OPTS, NULL};

static int parse(int argc, char **argv, bench_opts *o)
{
    bench_args a;
    cli_parsed p;
    int rc = cli_parse(&BENCH_TRAIN_SPEC, argc, argv, &a, &p);
    *o = (bench_opts){.shape = a.shape ? a.shape : "deepseek-llm-7b", .seq = (int)a.seq, .batch = (int)a.batch,
                      .rank = (int)a.rank, .steps = (int)a.steps, .warmup = (int)a.warmup, .accum = (int)a.accum,
                      .dpo = !strcmp(a.loss, "dpo"), .checkpointing = !strcmp(a.checkpointing, "on"), .offload = a.offload,
                      .keep_attention = a.keep_attention,
                      .keep_projections = a.keep_projections, .targets = (1u << LIN_Q) | (1u << LIN_V),
                      .default_targets = !a.targets,
                      .mem_limit_gib = a.mem_limit_gib, .device = a.device, .profile = a.profile,
                      .precompute_ref = a.precompute_ref};
    if (!rc && !strcmp(o->keep_projections, "on") && strcmp(o->keep_attention, "on"))
        rc = ds_fail(DS_EUSAGE, "bench train: --keep-projections on adds them to the kept attention output: it goes "
                                "with --keep-attention on (as train.keep_projections: true)");
    if (!rc && o->precompute_ref && !o->dpo)
        rc = ds_fail(DS_EUSAGE, "bench train: --precompute-ref goes with --loss dpo (the reference of DPO)");
    if (!rc && a.targets) {
        char *copy = ds_strdup(a.targets), *save = NULL, *names[LORA_T_COUNT + 1];
        int n = 0;
        for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && n <= LORA_T_COUNT; t = strtok_r(NULL, ",", &save))
            names[n++] = t;
        rc = copy ? lora_targets_parse(names, n, &o->targets) : DS_ENOMEM;
        free(copy);
        if (rc && rc != DS_ENOMEM) rc = ds_fail_context(DS_EUSAGE, "bench train: --targets: ");
    }
    cli_parsed_free(&p);   /* the strings are argv's or the table's */
    return rc;
}

int bench_train(int argc, char **argv)
{
    bench_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    model_config cfg;
    rc = model_shape(o.shape, &cfg);
    if (rc) return ds_fail_context(DS_EUSAGE, "bench train: --shape is one of %s or a model folder: ", model_shape_names());
    /* MLA has no v_proj: its query (q_proj, or q_b_proj) and kv_b_proj, which makes the values */
    if (cfg.ds.on && o.default_targets) o.targets = (1u << LIN_Q) | (1u << LORA_T_Q_B) | (1u << LORA_T_KV_B);
    backend *be;
    if ((rc = be_open_named(o.device, &be))) return rc;
    if (o.profile && be->kind != BE_CUDA) {
        be_close(be);
        return ds_fail(DS_EUSAGE, "bench train: --profile times ops on a CUDA device; this run is on the CPU");
    }
    llama_model *m = NULL;
    lora_adapter *ad = NULL;
    lora_config lc = {.r = o.rank, .alpha = 2.0 * o.rank, .targets = o.targets};
    double peak = measure_peak(be);
    rc = be_sync(be);
    if (!rc) rc = model_random(&cfg, 7, &m);
    if (!rc) rc = lora_create(&cfg, &lc, o.shape, &ad);
    if (!rc) lora_init(ad, 7);
    if (!rc) o.targets = ad->cfg.targets;   /* those the model has */
    static const char *const MLA[] = {"q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj"};
    char targets[160] = "";
    for (int t = 0; t < LORA_T_COUNT; t++)
        if (o.targets & (1u << t)) {
            if (*targets) strcat(targets, ",");
            strcat(targets, t < LIN_COUNT ? llama_linear_name((llama_linear)t) : MLA[t - LIN_COUNT]);
        }
    printf("bench train: %s (%.2fB parameters), NF4 base, LoRA r=%d on %s, %s, seq %d, checkpointing %s, offload %s, "
           "keep attention %s, keep projections %s\n",
           o.shape, model_config_params(&cfg) / 1e9, o.rank, targets,
           !o.dpo ? "sft"
           : o.precompute_ref ? "dpo (pairs; reference log-probs computed once before the steps)"
                              : "dpo (pairs; reference pass through the disabled adapter)",
           o.seq, o.checkpointing ? "on" : "off", o.offload, o.keep_attention,
           o.keep_projections);
    printf("device: %s (%s); measured bf16 GEMM peak %.1f TFLOP/s\n", be_device_name(be), be_name(be), peak);
    int sizes[] = {1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32};
    int nsizes = o.mem_limit_gib > 0 ? (int)(sizeof sizes / sizeof *sizes) : 1;
    int best = 0;
    for (int i = 0; !rc && i < nsizes; i++) {
        int B = o.mem_limit_gib > 0 ? sizes[i] : o.batch;
        bench_result r = {0};
        be->peak_bytes = be->bytes_in_use;
        int brc = run_batch(be, m, ad, &o, B, &r);
        if (brc) {
            if (o.mem_limit_gib > 0 && brc == DS_ETRAIN) {   /* out of memory ends the search */
                printf("micro-batch %2d: does not fit (%s)\n", B, ds_errmsg());
                be->err = 0;
                break;
            }
            rc = brc;
            break;
        }
        double gib = 1024.0 * 1024.0 * 1024.0;
        bool fits = o.mem_limit_gib <= 0 || r.in_use / gib <= o.mem_limit_gib;
        if (r.keep_projections) printf("q, k, v and the residual after attention kept in %d layers\n", r.keep_projections);
        printf("micro-batch %2d%s: step %.3f s, %.0f tokens/s, %.1f TFLOP/s executed (%.1f%% of the measured peak), "
               "peak memory %.2f GiB allocated, %.2f GiB in use on the device%s\n", B, o.dpo ? " pairs" : "", r.step_s,
               r.tokens_per_s, r.tflops, peak > 0 ? 100.0 * r.tflops / peak : 0.0, r.peak_alloc / gib, r.in_use / gib,
               fits ? "" : "  (over the limit)");
        /* what lives where: the arenas on the device, the offloaded inputs in host memory */
        char w[32], ad[32], ac[32], ws[32], host[32], off[32];
        printf("  memory plan on the %s: weights %s, adapter + gradients + optimizer %s, activations %s (%s%s), "
               "workspace %s; host: peak resident so far %s%s%s%s\n", be_name(be),
               ds_bytes_str(r.plan.weights, w, sizeof w), ds_bytes_str(r.plan.adapter, ad, sizeof ad),
               ds_bytes_str(r.plan.activations, ac, sizeof ac),
               !o.checkpointing ? "every layer's intermediates"
               : r.offload ? "a few layers' inputs, one layer's intermediates"
                           : "each layer's input kept, one layer's intermediates",
               !r.keep_attention ? ""
               : r.keep_projections ? (r.offload ? "; each layer's attention output offloaded too, some layers' "
                                                   "q, k, v and residual kept"
                                                 : "; each layer's attention output kept, some layers' q, k, v "
                                                   "and residual too")
               : r.offload ? "; each layer's attention output offloaded too"
                           : "; each layer's attention output kept",
               ds_bytes_str(r.plan.workspace, ws, sizeof ws), ds_bytes_str(r.host_peak, host, sizeof host),
               r.offload ? ", of which the offloaded activations " : "",
               r.offload ? ds_bytes_str(r.plan.host, off, sizeof off) : "", r.offload ? " (page-locked)" : "");
        printf("RESULT {\"shape\": \"%s\", \"loss\": \"%s\", \"seq\": %d, \"micro_batch\": %d, \"checkpointing\": %s, "
               "\"step_s\": %.4f, \"tokens_per_s\": %.1f, \"tflops\": %.2f, \"peak_share\": %.4f, \"peak_alloc_bytes\": %zu, "
               "\"in_use_bytes\": %zu, \"weights_bytes\": %zu, \"adapter_bytes\": %zu, \"activations_bytes\": %zu, "
               "\"workspace_bytes\": %zu, \"offload\": %s, \"host_offload_bytes\": %zu, \"host_peak_bytes\": %zu, "
               "\"precompute_ref\": %s, \"keep_attention\": %s, \"keep_projections\": %d}\n", o.shape,
               o.dpo ? "dpo" : "sft", o.seq, B,
               o.checkpointing ? "true" : "false", r.step_s, r.tokens_per_s, r.tflops, peak > 0 ? r.tflops / peak : 0.0,
               r.peak_alloc, r.in_use, r.plan.weights, r.plan.adapter, r.plan.activations, r.plan.workspace,
               r.offload ? "true" : "false", r.plan.host, r.host_peak, o.precompute_ref ? "true" : "false",
               r.keep_attention ? "true" : "false", r.keep_projections);
        fflush(stdout);
        if (!fits) break;
        best = B;
    }
    if (!rc && o.mem_limit_gib > 0) printf("largest micro-batch under %.1f GiB: %d\n", o.mem_limit_gib, best);
    lora_free(ad);
    model_random_free(m);
    be_close(be);
    return rc;
}
