/* tools/make_tiny_family.c - small random models of each family the GGUF
 * export writes, and a random adapter, for its tests.
 *
 *   make_tiny_family llama|qwen2|qwen3 OUT_DIR TOKENIZER_DIR [HIDDEN INTERMEDIATE LAYERS HEADS KV_HEADS [OPTION]]
 *   make_tiny_family adapter OUT_DIR MODEL_DIR
 *   make_tiny_family dequantize FILE.gguf OUT_DIR MODEL_DIR
 *
 * A model folder gets config.json as transformers writes it for the family,
 * model.safetensors (bf16, weights drawn from a seed) and the tokenizer files
 * of TOKENIZER_DIR. The defaults (256, 512, 8, 4, 2) give rows of 256 values,
 * so that the K-quants are used rather than their fallbacks, and 8 layers, so
 * that q4_k_m's choice of layers that keep more bits shows. qwen2 adds q/k/v
 * biases, qwen3 q_norm/k_norm and an explicit head_dim. The weights every
 * family shares are the same for the same dims (the extras come from another
 * random stream), so that a qwen2 model with OPTION zero-bias computes what
 * the llama model computes. OPTION tied: no lm_head (tied embeddings).
 *
 * An adapter is a PEFT folder for the Llama model at MODEL_DIR: r 4, alpha 8,
 * every linear layer, A drawn as PEFT draws it and B ~ N(0, 0.1), so that it
 * changes what the model says.
 *
 * dequantize turns a llama GGUF that ds-ft wrote for MODEL_DIR back into a
 * model folder: every tensor dequantized to f32, the Q/K rows put back in
 * transformers' order, MODEL_DIR's config and tokenizer files. ds-ft's engine
 * then computes with exactly the weights llama.cpp reads from the file. */
#include "core/files.h"
#include "core/numeric.h"
#include "core/rng.h"
#include "core/status.h"
#include "adapters/lora.h"
#include "data/gguf/gguf.h"
#include "finetune/export/export_internal.h"
#include "quant/ggml_quant.h"
#include "data/model_config.h"
#include "data/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SEED = 20261201, MAX_TENSORS = 1024 };

typedef struct {
    st_writer *w;
    ds_rng r, extra;   /* the weights every family has; the family's own */
    uint16_t *keep[MAX_TENSORS];
    int n, rc;
} model;

/* name ~ mean + std * N(0, 1) drawn from r, bf16; cols 0 for a vector */
static void add_from(model *m, ds_rng *r, const char *name, int64_t rows, int64_t cols, float mean, float std)
{
    int64_t n = rows * (cols ? cols : 1), shape[2] = {rows, cols};
    uint16_t *d = malloc(sizeof *d * (size_t)n);
    if (!d || m->n == MAX_TENSORS) {
        free(d);
        m->rc = ds_fail(DS_EINTERNAL, "make_tiny_family: out of memory");
        return;
    }
    for (int64_t i = 0; i < n; i++) d[i] = ds_f32_to_bf16(mean + std * ds_rng_normal(r));
    m->keep[m->n++] = d;
    if (!m->rc) m->rc = st_writer_add(m->w, name, ST_BF16, cols ? 2 : 1, shape, d);
}

static void add(model *m, const char *name, int64_t rows, int64_t cols, float mean, float std)
{
    add_from(m, &m->r, name, rows, cols, mean, std);
}

static int make_adapter(const char *out, const char *model_dir)
{
    model_config c;
    lora_adapter *a = NULL;
    lora_config lc = {.r = 4, .alpha = 8, .targets = (1u << LIN_COUNT) - 1};
    int rc = model_config_load(model_dir, &c);
    if (!rc) rc = lora_create(&c, &lc, model_dir, &a);
    if (!rc) {
        lora_init(a, SEED);
        ds_rng r = ds_rng_make(SEED, 2);
        for (int l = 0; l < a->nlayers; l++)
            for (int t = 0; t < LIN_COUNT; t++) {
                float *B = lora_B(a, l, (llama_linear)t);
                for (size_t i = 0; i < (size_t)a->out[t] * (size_t)lc.r; i++) B[i] = 0.1f * ds_rng_normal(&r);
            }
        rc = lora_save_peft(a, out);
    }
    lora_free(a);
    if (rc) fprintf(stderr, "make_tiny_family: %s\n", ds_errmsg());
    return rc;
}

static int write_config(const char *dir, const char *family, const int dims[5], bool tied)
{
    const char *arch = !strcmp(family, "qwen2") ? "Qwen2ForCausalLM" : !strcmp(family, "qwen3") ? "Qwen3ForCausalLM"
                                                                                                : "LlamaForCausalLM";
    char head_dim[64] = "", extra[160] = "";
    if (strcmp(family, "qwen2")) snprintf(head_dim, sizeof head_dim, "  \"head_dim\": %d,\n", dims[0] / dims[3]);
    if (!strcmp(family, "qwen2")) snprintf(extra, sizeof extra, "  \"sliding_window\": 4096,\n  \"use_sliding_window\": false,\n");
    else snprintf(extra, sizeof extra, "  \"attention_bias\": false,\n");
    char *text = ds_strdupf("{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n  \"hidden_size\": %d,\n"
                            "  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
                            "  \"num_key_value_heads\": %d,\n%s  \"vocab_size\": 1024,\n"
                            "  \"max_position_embeddings\": 512,\n  \"rms_norm_eps\": 1e-06,\n  \"rope_theta\": 10000.0,\n"
                            "  \"rope_scaling\": null,\n  \"hidden_act\": \"silu\",\n%s  \"tie_word_embeddings\": %s,\n"
                            "  \"bos_token_id\": 0,\n  \"eos_token_id\": 1,\n  \"torch_dtype\": \"bfloat16\"\n}\n",
                            arch, family, dims[0], dims[1], dims[2], dims[3], dims[4], head_dim, extra,
                            tied ? "true" : "false");
    char *path = ds_path_join(dir, "config.json");
    int rc = ds_write_file(path, text, strlen(text));
    free(path);
    free(text);
    return rc;
}

/* The checkpoint name of a GGUF tensor of the llama architecture. */
static bool hf_name(const char *gguf, char *out, size_t n)
{
    static const char *const TOP[][2] = {{"token_embd.weight", "model.embed_tokens.weight"},
                                         {"output_norm.weight", "model.norm.weight"},
                                         {"output.weight", "lm_head.weight"}};
    static const char *const LAYER[] = {"input_layernorm",  "self_attn.q_proj", "self_attn.k_proj",
                                        "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
                                        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(gguf, TOP[i][0])) return snprintf(out, n, "%s", TOP[i][1]) > 0;
    int l, k;
    char part[64];
    if (sscanf(gguf, "blk.%d.%63[a-z_].weight%n", &l, part, &k) != 2 || gguf[k]) return false;
    for (int i = 0; i < 9; i++)
        if (!strcmp(export_layer_tensor(LAYER[i]), part))
            return snprintf(out, n, "model.layers.%d.%s.weight", l, LAYER[i]) > 0;
    return false;
}

static int dequantize_gguf(const char *file, const char *out, const char *model_dir)
{
    gguf_file *f;
    model_config c;
    int rc = gguf_open(file, &f);
    if (!rc) rc = model_config_load(model_dir, &c);
    if (!rc) rc = ds_mkdirs(out);
    st_writer *w = st_writer_new();
    for (int i = 0; !rc && i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[160];
        if (!hf_name(t->name, name, sizeof name)) {
            rc = ds_fail(DS_EDATA, "%s: tensor '%s' is not a llama tensor", file, t->name);
            break;
        }
        int64_t rows = t->nelem / t->ne[0], shape[2] = {t->ndim == 1 ? t->ne[0] : rows, t->ne[0]};
        float *x = malloc(sizeof(float) * (size_t)t->nelem), *y = malloc(sizeof(float) * (size_t)t->nelem);
        rc = x && y ? ggml_dequantize(t->type, t->data, x, rows, t->ne[0]) : ds_fail(DS_EINTERNAL, "out of memory");
        int heads = strstr(t->name, "attn_q.") ? c.num_heads : strstr(t->name, "attn_k.") ? c.num_kv_heads : 0;
        int64_t D = heads ? rows / heads : 0;
        for (int64_t r = 0; !rc && r < rows; r++) {   /* row h*D + 2b + a goes back to h*D + a*D/2 + b */
            int64_t h = heads ? r / D : 0, j = heads ? r % D : 0, to = heads ? h * D + (j % 2) * (D / 2) + j / 2 : r;
            memcpy(y + to * t->ne[0], x + r * t->ne[0], sizeof(float) * (size_t)t->ne[0]);
        }
        if (!rc) rc = st_writer_add_copy(w, name, ST_F32, t->ndim, shape, y);
        free(x);
        free(y);
    }
    char *path = ds_path_join(out, "model.safetensors");
    if (!rc) rc = st_writer_write(w, path);
    free(path);
    static const char *const FILES[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; !rc && i < 4; i++) {
        char *from = ds_path_join(model_dir, FILES[i]), *to = ds_path_join(out, FILES[i]);
        if (ds_exists(from)) rc = ds_copy_file(from, to);
        free(from);
        free(to);
    }
    st_writer_free(w);
    gguf_close(f);
    if (rc) fprintf(stderr, "make_tiny_family: %s\n", ds_errmsg());
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "llama") && strcmp(argv[1], "qwen2") && strcmp(argv[1], "qwen3") &&
                     strcmp(argv[1], "adapter") && strcmp(argv[1], "dequantize")) ||
        (!strcmp(argv[1], "dequantize") && argc != 5)) {
        fprintf(stderr, "usage: make_tiny_family llama|qwen2|qwen3 OUT_DIR TOKENIZER_DIR "
                        "[HIDDEN INTERMEDIATE LAYERS HEADS KV_HEADS [tied|zero-bias]]\n"
                        "       make_tiny_family adapter OUT_DIR MODEL_DIR\n"
                        "       make_tiny_family dequantize FILE.gguf OUT_DIR MODEL_DIR\n");
        return DS_EUSAGE;
    }
    if (!strcmp(argv[1], "adapter")) return make_adapter(argv[2], argv[3]);
    if (!strcmp(argv[1], "dequantize")) return dequantize_gguf(argv[2], argv[3], argv[4]);
    const char *family = argv[1], *dir = argv[2], *tok = argv[3];
    int dims[5] = {256, 512, 8, 4, 2};
    for (int i = 0; i < 5 && 4 + i < argc; i++) dims[i] = atoi(argv[4 + i]);
    bool tied = argc > 9 && !strcmp(argv[9], "tied"), zero_bias = argc > 9 && !strcmp(argv[9], "zero-bias");
    int C = dims[0], I = dims[1], L = dims[2], H = dims[3], KV = dims[4], D = C / H, V = 1024;
    model m = {.w = st_writer_new(), .r = ds_rng_make(SEED, 0), .extra = ds_rng_make(SEED, 1)};
    m.rc = ds_mkdirs(dir);
    if (!m.rc) m.rc = write_config(dir, family, dims, tied);
    static const char *const FILES[] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 2 && !m.rc; i++) {
        char *from = ds_path_join(tok, FILES[i]), *to = ds_path_join(dir, FILES[i]);
        m.rc = ds_copy_file(from, to);
        free(from);
        free(to);
    }
    st_writer_meta(m.w, "format", "pt");
    add(&m, "model.embed_tokens.weight", V, C, 0, 1);
    char name[128];
    for (int l = 0; l < L; l++) {
        static const char *const LIN[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                          "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
        int out[7] = {H * D, KV * D, KV * D, C, I, I, C}, in[7] = {C, C, C, H * D, C, C, I};
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        add(&m, name, C, 0, 1, 0.1f);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        add(&m, name, C, 0, 1, 0.1f);
        for (int t = 0; t < 7; t++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, LIN[t]);
            add(&m, name, out[t], in[t], 0, 1.0f / sqrtf((float)in[t]));
            if (!strcmp(family, "qwen2") && t < 3) {
                snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, LIN[t]);
                add_from(&m, &m.extra, name, out[t], 0, 0, zero_bias ? 0.0f : 0.5f);
            }
        }
        for (int k = 0; k < 2 && !strcmp(family, "qwen3"); k++) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s_norm.weight", l, k ? "k" : "q");
            add_from(&m, &m.extra, name, D, 0, 1, 0.1f);
        }
    }
    add(&m, "model.norm.weight", C, 0, 1, 0.1f);
    if (!tied) add(&m, "lm_head.weight", V, C, 0, 1.0f / sqrtf((float)C));
    char *path = ds_path_join(dir, "model.safetensors");
    if (!m.rc) m.rc = st_writer_write(m.w, path);
    free(path);
    st_writer_free(m.w);
    for (int i = 0; i < m.n; i++) free(m.keep[i]);
    if (m.rc) fprintf(stderr, "make_tiny_family: %s\n", ds_errmsg());
    return m.rc;
}
