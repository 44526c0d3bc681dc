/* tools/make_tiny_model.c - writes the tiny Llama model that recipes/tiny.yaml
 * trains on: config.json, generation_config.json and model.safetensors (bf16)
 * with weights drawn deterministically from a seed. The tokenizer files in
 * models/tiny/ are the byte-level BPE of the project's reference fixtures.
 *
 *   make_tiny_model OUT_DIR            (the shipped model: models/tiny)
 *
 * Initialisation keeps activations at unit scale through the random,
 * untrained network: embeddings ~ N(0, 1), every linear layer ~ N(0, 1/fan_in),
 * norms 1. The base model knows nothing; the adapter has everything to learn. */
#include "core/files.h"
#include "core/numeric.h"
#include "core/rng.h"
#include "core/status.h"
#include "data/model_config.h"
#include "data/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HIDDEN = 128, INTERMEDIATE = 352, LAYERS = 2, HEADS = 4, KV_HEADS = 2, VOCAB = 1024, SEED = 20261122 };

static const char CONFIG[] =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"model_type\": \"llama\",\n"
    "  \"hidden_size\": %d,\n"
    "  \"intermediate_size\": %d,\n"
    "  \"num_hidden_layers\": %d,\n"
    "  \"num_attention_heads\": %d,\n"
    "  \"num_key_value_heads\": %d,\n"
    "  \"head_dim\": %d,\n"
    "  \"vocab_size\": %d,\n"
    "  \"max_position_embeddings\": 512,\n"
    "  \"rms_norm_eps\": 1e-06,\n"
    "  \"rope_theta\": 10000.0,\n"
    "  \"rope_scaling\": null,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"attention_bias\": false,\n"
    "  \"mlp_bias\": false,\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"bos_token_id\": 0,\n"
    "  \"eos_token_id\": 1,\n"
    "  \"pad_token_id\": 1,\n"
    "  \"torch_dtype\": \"bfloat16\"\n"
    "}\n";

static const char GENERATION_CONFIG[] = "{\n  \"bos_token_id\": 0,\n  \"eos_token_id\": 1,\n  \"pad_token_id\": 1\n}\n";

typedef struct {
    uint16_t *data;
    int64_t shape[2];
    int ndim;
} tensor;

static tensor normal(ds_rng *r, int64_t rows, int64_t cols, float std)
{
    tensor t = {malloc(sizeof(uint16_t) * (size_t)(rows * cols)), {rows, cols}, cols ? 2 : 1};
    for (int64_t i = 0; i < rows * (cols ? cols : 1); i++) t.data[i] = ds_f32_to_bf16(ds_rng_normal(r) * std);
    if (!cols) t.shape[0] = rows;
    return t;
}

static tensor ones(int64_t n)
{
    tensor t = {malloc(sizeof(uint16_t) * (size_t)n), {n, 0}, 1};
    for (int64_t i = 0; i < n; i++) t.data[i] = ds_f32_to_bf16(1.0f);
    return t;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_tiny_model OUT_DIR\n");
        return DS_EUSAGE;
    }
    const char *dir = argv[1];
    int rc = ds_mkdirs(dir);
    char text[2048];
    snprintf(text, sizeof text, CONFIG, HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, HIDDEN / HEADS, VOCAB);
    char *path = ds_path_join(dir, "config.json");
    if (!rc) rc = ds_write_file(path, text, strlen(text));
    free(path);
    path = ds_path_join(dir, "generation_config.json");
    if (!rc) rc = ds_write_file(path, GENERATION_CONFIG, strlen(GENERATION_CONFIG));
    free(path);

    model_config cfg;
    if (!rc) rc = model_config_load(dir, &cfg);
    ds_rng r = ds_rng_make(SEED, 0);
    st_writer *w = st_writer_new();
    st_writer_meta(w, "format", "pt");
    tensor keep[64];
    int nkeep = 0;
#define ADD(name_, t_)                                                                        \
    do {                                                                                      \
        keep[nkeep] = (t_);                                                                   \
        if (!rc) rc = st_writer_add(w, name_, ST_BF16, keep[nkeep].ndim, keep[nkeep].shape, keep[nkeep].data); \
        nkeep++;                                                                              \
    } while (0)
    ADD("model.embed_tokens.weight", normal(&r, VOCAB, HIDDEN, 1.0f));
    for (int l = 0; l < LAYERS && !rc; l++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        ADD(name, ones(HIDDEN));
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(name, ones(HIDDEN));
        for (int t = 0; t < LIN_COUNT; t++) {
            int out, in;
            llama_linear_shape(&cfg, (llama_linear)t, &out, &in);
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, llama_linear_path((llama_linear)t));
            ADD(name, normal(&r, out, in, 1.0f / sqrtf((float)in)));
        }
    }
    ADD("model.norm.weight", ones(HIDDEN));
    ADD("lm_head.weight", normal(&r, VOCAB, HIDDEN, 1.0f / sqrtf((float)HIDDEN)));
#undef ADD
    path = ds_path_join(dir, "model.safetensors");
    if (!rc) rc = st_writer_write(w, path);
    free(path);
    st_writer_free(w);
    for (int i = 0; i < nkeep; i++) free(keep[i].data);
    if (rc) fprintf(stderr, "make_tiny_model: %s\n", ds_errmsg());
    return rc;
}
