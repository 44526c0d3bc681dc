/* tools/make_tiny_moe.c - a small random DeepSeek-V2 model (multi-head latent
 * attention, one dense layer, then mixture-of-experts layers) for the CPU
 * tests and recipes/tiny-moe.yaml:
 *
 *   make_tiny_moe OUT_DIR TOKENIZER_DIR [LAYERS]
 *
 * Hidden 128, 4 heads of 32 (+16 rope) wide queries and keys, kv_lora_rank 64,
 * values 32; layer 0 a dense SwiGLU MLP (352), layers 1.. 8 routed experts
 * (top 2, softmax, greedy, 64 wide) and 1 shared expert; config.json as the
 * DeepSeek-V2-Lite checkpoints write it (no yarn: 512 positions), weights in
 * bf16 drawn from a fixed seed, the tokenizer files and generation_config.json
 * of TOKENIZER_DIR. */
#include "core/files.h"
#include "core/numeric.h"
#include "core/rng.h"
#include "core/status.h"
#include "data/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SEED = 20261205, MAX_TENSORS = 4096, C = 128, H = 4, NOPE = 32, ROPE = 16, VD = 32, KVR = 64, I = 352,
       E = 8, MI = 64, V = 1024 };

typedef struct {
    st_writer *w;
    ds_rng r;
    uint16_t *keep[MAX_TENSORS];
    int n, rc;
} model;

/* name ~ mean + std * N(0, 1), bf16; cols 0 for a vector */
static void add(model *m, const char *name, int64_t rows, int64_t cols, float mean, float std)
{
    int64_t n = rows * (cols ? cols : 1), shape[2] = {rows, cols};
    uint16_t *d = malloc(sizeof *d * (size_t)n);
    if (!d || m->n == MAX_TENSORS) {
        free(d);
        m->rc = ds_fail(DS_EINTERNAL, "make_tiny_moe: out of memory");
        return;
    }
    for (int64_t i = 0; i < n; i++) d[i] = ds_f32_to_bf16(mean + std * ds_rng_normal(&m->r));
    m->keep[m->n++] = d;
    if (!m->rc) m->rc = st_writer_add(m->w, name, ST_BF16, cols ? 2 : 1, shape, d);
}

static void linear(model *m, int l, const char *path, int out, int in)
{
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, path);
    add(m, name, out, in, 0, 1.0f / sqrtf((float)in));
}

static void mlp(model *m, int l, const char *prefix, int width)
{
    char path[128];
    snprintf(path, sizeof path, "%s.gate_proj", prefix);
    linear(m, l, path, width, C);
    snprintf(path, sizeof path, "%s.up_proj", prefix);
    linear(m, l, path, width, C);
    snprintf(path, sizeof path, "%s.down_proj", prefix);
    linear(m, l, path, C, width);
}

static int write_config(const char *dir, int layers)
{
    char *text = ds_strdupf(
        "{\n  \"architectures\": [\"DeepseekV2ForCausalLM\"],\n  \"model_type\": \"deepseek_v2\",\n"
        "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
        "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"q_lora_rank\": null,\n"
        "  \"kv_lora_rank\": %d,\n  \"qk_nope_head_dim\": %d,\n  \"qk_rope_head_dim\": %d,\n  \"v_head_dim\": %d,\n"
        "  \"first_k_dense_replace\": 1,\n  \"moe_layer_freq\": 1,\n  \"n_routed_experts\": %d,\n"
        "  \"n_shared_experts\": 1,\n  \"num_experts_per_tok\": 2,\n  \"moe_intermediate_size\": %d,\n"
        "  \"topk_method\": \"greedy\",\n  \"n_group\": 1,\n  \"topk_group\": 1,\n  \"norm_topk_prob\": false,\n"
        "  \"routed_scaling_factor\": 1.0,\n  \"scoring_func\": \"softmax\",\n  \"aux_loss_alpha\": 0.001,\n"
        "  \"seq_aux\": true,\n  \"vocab_size\": %d,\n  \"max_position_embeddings\": 512,\n  \"rms_norm_eps\": 1e-06,\n"
        "  \"rope_theta\": 10000.0,\n  \"rope_scaling\": null,\n  \"hidden_act\": \"silu\",\n"
        "  \"attention_bias\": false,\n  \"tie_word_embeddings\": false,\n  \"bos_token_id\": 0,\n"
        "  \"eos_token_id\": 1,\n  \"pad_token_id\": 1,\n  \"torch_dtype\": \"bfloat16\"\n}\n",
        C, I, layers, H, H, KVR, NOPE, ROPE, VD, E, MI, V);
    char *path = ds_path_join(dir, "config.json");
    int rc = text && path ? ds_write_file(path, text, strlen(text)) : DS_ENOMEM;
    free(path);
    free(text);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: make_tiny_moe OUT_DIR TOKENIZER_DIR [LAYERS]\n");
        return DS_EUSAGE;
    }
    const char *dir = argv[1], *tok = argv[2];
    int L = argc > 3 ? atoi(argv[3]) : 2;
    if (L < 2 || L > 64) {
        fprintf(stderr, "make_tiny_moe: LAYERS must be 2..64\n");
        return DS_EUSAGE;
    }
    model m = {.w = st_writer_new(), .r = ds_rng_make(SEED, 0)};
    m.rc = m.w ? ds_mkdirs(dir) : DS_ENOMEM;
    if (!m.rc) m.rc = write_config(dir, L);
    static const char *const FILES[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};
    for (int i = 0; i < 3 && !m.rc; i++) {
        char *from = ds_path_join(tok, FILES[i]), *to = ds_path_join(dir, FILES[i]);
        m.rc = ds_copy_file(from, to);
        free(from);
        free(to);
    }
    if (!m.rc) st_writer_meta(m.w, "format", "pt");
    add(&m, "model.embed_tokens.weight", V, C, 0, 1);
    char name[160];
    for (int l = 0; l < L && !m.rc; l++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        add(&m, name, C, 0, 1, 0.1f);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        add(&m, name, C, 0, 1, 0.1f);
        linear(&m, l, "self_attn.q_proj", H * (NOPE + ROPE), C);
        linear(&m, l, "self_attn.kv_a_proj_with_mqa", KVR + ROPE, C);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
        add(&m, name, KVR, 0, 1, 0.1f);
        linear(&m, l, "self_attn.kv_b_proj", H * (NOPE + VD), KVR);
        linear(&m, l, "self_attn.o_proj", C, H * VD);
        if (l == 0) {
            mlp(&m, l, "mlp", I);
            continue;
        }
        snprintf(name, sizeof name, "model.layers.%d.mlp.gate.weight", l);
        add(&m, name, E, C, 0, 1.0f / sqrtf((float)C));
        mlp(&m, l, "mlp.shared_experts", MI);
        for (int e = 0; e < E; e++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "mlp.experts.%d", e);
            mlp(&m, l, prefix, MI);
        }
    }
    add(&m, "model.norm.weight", C, 0, 1, 0.1f);
    add(&m, "lm_head.weight", V, C, 0, 1.0f / sqrtf((float)C));
    char *path = ds_path_join(dir, "model.safetensors");
    if (!m.rc) m.rc = path ? st_writer_write(m.w, path) : DS_ENOMEM;
    free(path);
    st_writer_free(m.w);
    for (int i = 0; i < m.n; i++) free(m.keep[i]);
    if (m.rc) fprintf(stderr, "make_tiny_moe: %s\n", ds_errmsg());
    return m.rc;
}
