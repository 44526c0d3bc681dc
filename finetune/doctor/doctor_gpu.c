/* finetune/doctor/doctor_gpu.c - the GPUs ds-ft knows, whether a build has code
 * for a GPU, and the training speed to expect on one. */
#include "doctor.h"

#include "core/status.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Datasheet figures: memory, and the dense bf16 tensor-core peak with fp32
 * accumulation (what ds-ft's GEMMs use; GeForce cards run it at half their
 * fp16-accumulate rate). */
static const doctor_gpu GPUS[] = {
    {"h100", "H100", "NVIDIA H100 80GB HBM3 (SXM)", 9, 0, 79.6, 989.4},
    {"h200", "H200", "NVIDIA H200 (SXM)", 9, 0, 140.4, 989.4},
    {"a100", "A100", "NVIDIA A100 80GB", 8, 0, 79.2, 312.0},
    {"l40s", "L40S", "NVIDIA L40S", 8, 9, 44.5, 362.1},
    {"4090", "RTX 4090", "NVIDIA GeForce RTX 4090", 8, 9, 24.0, 165.2},
    {"4080", "RTX 4080", "NVIDIA GeForce RTX 4080", 8, 9, 16.0, 97.5},
    {"3090", "RTX 3090", "NVIDIA GeForce RTX 3090", 8, 6, 24.0, 71.0},
};
#define NGPUS (int)(sizeof GPUS / sizeof *GPUS)

const doctor_gpu *doctor_gpu_at(int i) { return i >= 0 && i < NGPUS ? &GPUS[i] : NULL; }

const char *doctor_gpu_keys(void) { return "h100|h200|a100|l40s|4090|4080|3090"; }

const doctor_gpu *doctor_gpu_find(const char *s)
{
    for (int i = 0; i < NGPUS; i++)
        if (!strcasecmp(s, GPUS[i].key)) return &GPUS[i];
    for (int i = 0; i < NGPUS; i++)
        if (strstr(s, GPUS[i].match)) return &GPUS[i];
    return NULL;
}

/* ---- the build's GPU code ---- */

/* One code= target: "sm_90a" or "compute_89" -> its capability, kind and suffix. */
typedef struct {
    bool ptx;
    int major, minor;
    bool arch_specific;   /* sm_90a / compute_90a: that capability only */
    char text[24];
} gpu_target;

static bool parse_target(const char *s, size_t n, gpu_target *t)
{
    memset(t, 0, sizeof *t);
    if (n >= sizeof t->text) return false;
    memcpy(t->text, s, n);
    const char *digits;
    if (!strncmp(t->text, "sm_", 3)) digits = t->text + 3;
    else if (!strncmp(t->text, "compute_", 8)) digits = t->text + 8, t->ptx = true;
    else return false;
    char *end;
    long v = strtol(digits, &end, 10);
    if (end == digits || v < 10) return false;
    t->major = (int)(v / 10);
    t->minor = (int)(v % 10);
    t->arch_specific = *end == 'a';
    return true;
}

static bool target_runs(const gpu_target *t, int major, int minor)
{
    if (t->arch_specific) return t->major == major && t->minor == minor;
    if (t->ptx) return major > t->major || (major == t->major && minor >= t->minor);
    return major == t->major && minor >= t->minor;
}

bool doctor_build_covers(const char *gencode, int major, int minor, char *how, size_t n)
{
    char all[512] = "";
    const gpu_target *ptx_hit = NULL;
    gpu_target targets[32];
    int nt = 0;
    for (const char *p = gencode ? strstr(gencode, "code=") : NULL; p && nt < 32; p = strstr(p, "code=")) {
        p += 5;
        while (nt < 32 && *p && !isspace((unsigned char)*p)) {   /* code=sm_80 or code=[sm_80,compute_80] */
            while (*p == '[' || *p == '"' || *p == ',' || *p == ']') p++;
            size_t len = strcspn(p, ",]\" \t");
            if (len && parse_target(p, len, &targets[nt])) {
                size_t k = strlen(all);
                snprintf(all + k, sizeof all - k, "%s%s", k ? ", " : "", targets[nt].text);
                nt++;
            }
            p += len;
            if (!len) break;
        }
    }
    for (int i = 0; i < nt; i++)
        if (!targets[i].ptx && target_runs(&targets[i], major, minor)) {
            snprintf(how, n, "native code (%s)", targets[i].text);
            return true;
        }
    for (int i = 0; i < nt && !ptx_hit; i++)
        if (targets[i].ptx && target_runs(&targets[i], major, minor)) ptx_hit = &targets[i];
    if (ptx_hit) {
        snprintf(how, n, "PTX %s, which the driver compiles for this GPU at the first start (a few minutes, then "
                         "cached)", ptx_hit->text);
        return true;
    }
    snprintf(how, n, "no code for compute capability %d.%d: this build has %s; rebuild with "
                     "-DDSFT_CUDA_GENCODE=\"-gencode arch=compute_%d%d,code=sm_%d%d\"", major, minor,
             nt ? all : "none", major, minor, major, minor);
    return false;
}

/* ---- training speed ---- */

/* `ds-ft bench train` on one H100 80GB (README, "On the GPU"): deepseek-llm-7b,
 * QLoRA r=16 on q_proj/v_proj, SFT, sequence 2048, gradient checkpointing. */
static const struct {
    int rows;
    double tokens_per_s;
} H100_7B[] = {{1, 9977}, {4, 11477}, {12, 11797}};
#define H100_7B_N (int)(sizeof H100_7B / sizeof *H100_7B)
/* DPO, 2 pairs at sequence 1024, against SFT at 4 rows: the reference pass and the pairs' bookkeeping. */
#define H100_DPO_RATIO (9308.0 / 11477.0)

/* Work per token: the products with the linear weights and the lm_head. */
static double work_per_token(const model_config *c)
{
    double w = 0;
    for (int t = 0; t < LIN_COUNT; t++) {
        int out, in;
        llama_linear_shape(c, (llama_linear)t, &out, &in);
        w += (double)out * in;
    }
    return w * c->num_layers + (double)c->vocab_size * c->hidden_size;
}

static double h100_7b_at(int rows)
{
    if (rows <= H100_7B[0].rows) return H100_7B[0].tokens_per_s;
    for (int i = 1; i < H100_7B_N; i++)
        if (rows <= H100_7B[i].rows) {
            double f = (double)(rows - H100_7B[i - 1].rows) / (H100_7B[i].rows - H100_7B[i - 1].rows);
            return H100_7B[i - 1].tokens_per_s + f * (H100_7B[i].tokens_per_s - H100_7B[i - 1].tokens_per_s);
        }
    return H100_7B[H100_7B_N - 1].tokens_per_s;
}

doctor_speed doctor_speed_for(const doctor_gpu *gpu, const model_config *cfg, int rows, bool paired)
{
    doctor_speed s = {0};
    model_config ref;
    double model_scale = 1;
    if (model_shape("deepseek-llm-7b", &ref) == DS_OK) model_scale = work_per_token(&ref) / work_per_token(cfg);
    const doctor_gpu *h100 = doctor_gpu_find("h100");
    double gpu_scale = gpu->bf16_tflops / h100->bf16_tflops;
    s.tokens_per_s = h100_7b_at(rows) * gpu_scale * model_scale * (paired ? H100_DPO_RATIO : 1.0);
    bool exact_rows = false;
    for (int i = 0; i < H100_7B_N; i++) exact_rows |= H100_7B[i].rows == rows;
    s.measured = gpu == h100 && model_scale > 0.999 && model_scale < 1.001 && exact_rows && !paired;
    int k = snprintf(s.basis, sizeof s.basis, "%s: `ds-ft bench train` on an H100 (deepseek-llm-7b, %d rows, "
                     "sequence 2048): %.0f tokens/s", s.measured ? "measured" : "estimated", rows, h100_7b_at(rows));
    if (gpu != h100 && k > 0 && (size_t)k < sizeof s.basis)
        k += snprintf(s.basis + k, sizeof s.basis - k, " x the %s's bf16 peak over the H100's (%.0f/%.0f TFLOP/s)",
                      gpu->key, gpu->bf16_tflops, h100->bf16_tflops);
    if (!(model_scale > 0.999 && model_scale < 1.001) && k > 0 && (size_t)k < sizeof s.basis)
        k += snprintf(s.basis + k, sizeof s.basis - k, " x the 7B's work per token over this model's (%.2f)", model_scale);
    if (paired && k > 0 && (size_t)k < sizeof s.basis)
        snprintf(s.basis + k, sizeof s.basis - k, " x the measured DPO/SFT ratio (%.2f)", H100_DPO_RATIO);
    return s;
}
