/* The GGUF export (finetune/export/): the keys, vocabulary and tensors it
 * writes for each family, read back with the GGUF reader and compared with
 * the checkpoint (the Q/K rows reordered as llama.cpp's converter does), with
 * PEFT's merged weights and bitsandbytes' 4-bit weights from the shared
 * fixtures, the type mix llama-quantize chooses, and what it refuses. */
#include "testutil.h"

#include "core/files.h"
#include "core/numeric.h"
#include "core/status.h"
#include "data/gguf/gguf.h"
#include "data/json_util.h"
#include "data/safetensors.h"
#include "data/tokenizer/tokenizer.h"
#include "finetune/export/export_internal.h"
#include "finetune/export/gguf_export.h"
#include "finetune/run/run.h"
#include "quant/ggml_quant.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Export `model` with these options into DIR/NAME and open the file. */
static gguf_file *export_open(const char *model, gguf_export_opts o, const char *dir, const char *name)
{
    char *path = ds_path_join(dir, name);
    gguf_export_report r;
    cr_assert_eq(gguf_export_model(model, &o, path, &r), 0, "%s", ds_errmsg());
    gguf_file *f;
    cr_assert_eq(gguf_open(path, &f), 0, "%s", ds_errmsg());
    free(path);
    return f;
}

static uint64_t u32_key(const gguf_file *f, const char *key)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    cr_assert(kv, "missing key %s", key);
    cr_assert_eq(kv->type, GGUF_U32, "%s is %s", key, gguf_vtype_name(kv->type));
    return kv->v.u;
}

/* A tensor of the file as fp32 (rows, cols). */
static float *values(const gguf_file *f, const char *name, int64_t rows, int64_t cols)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    cr_assert(t, "missing tensor %s", name);
    cr_assert(t->ne[0] == cols && t->ne[1] == rows, "%s is {%lld, %lld}", name, (long long)t->ne[0], (long long)t->ne[1]);
    float *x = malloc(sizeof(float) * (size_t)(rows * cols));
    cr_assert_eq(ggml_dequantize(t->type, t->data, x, rows, cols), 0);
    return x;
}

/* A checkpoint weight as fp32, optionally with its head rows reordered. */
static float *source(const char *dir, const char *name, int64_t rows, int64_t cols, int heads)
{
    st_set *s;
    cr_assert_eq(st_set_open(dir, &s), 0, "%s", ds_errmsg());
    float *x = malloc(sizeof(float) * (size_t)(rows * cols));
    cr_assert_eq(st_to_f32(st_set_find(s, name), x), 0);
    if (heads) cr_assert_eq(export_permute_rows(x, (int)rows, (int)cols, heads), 0);
    st_set_close(s);
    return x;
}

static void expect_f16_of(const float *got, const float *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], ds_f16_to_f32(ds_f32_to_f16(want[i])), "%s[%zu]: %g, expected %g", what, i, got[i], want[i]);
}

Test(gguf_export, tiny_llama_f16_keys_vocabulary_and_tensors)
{
    char *dir = tu_tmpdir(), *model = tu_source_path("models/tiny");
    gguf_file *f = export_open(model, (gguf_export_opts){.type = GGUF_EXPORT_F16}, dir, "t.gguf");
    cr_expect_str_eq(gguf_find_kv(f, "general.architecture")->str, "llama");
    cr_expect_str_eq(gguf_find_kv(f, "general.type")->str, "model");
    cr_expect_eq(u32_key(f, "general.file_type"), 1);
    cr_expect_eq(u32_key(f, "llama.block_count"), 2);
    cr_expect_eq(u32_key(f, "llama.embedding_length"), 128);
    cr_expect_eq(u32_key(f, "llama.feed_forward_length"), 352);
    cr_expect_eq(u32_key(f, "llama.attention.head_count"), 4);
    cr_expect_eq(u32_key(f, "llama.attention.head_count_kv"), 2);
    cr_expect_eq(u32_key(f, "llama.attention.key_length"), 32);
    cr_expect_eq(u32_key(f, "llama.rope.dimension_count"), 32);
    cr_expect_eq(u32_key(f, "llama.vocab_size"), 1024);
    cr_expect_eq(u32_key(f, "llama.context_length"), 512);
    cr_expect_eq(gguf_find_kv(f, "llama.rope.freq_base")->v.f, 10000.0);
    cr_expect_eq((float)gguf_find_kv(f, "llama.attention.layer_norm_rms_epsilon")->v.f, 1e-6f);
    cr_expect_str_eq(gguf_find_kv(f, "tokenizer.ggml.model")->str, "gpt2");
    cr_expect_str_eq(gguf_find_kv(f, "tokenizer.ggml.pre")->str, "deepseek-v3");
    cr_expect_eq(u32_key(f, "tokenizer.ggml.bos_token_id"), 0);
    cr_expect_eq(u32_key(f, "tokenizer.ggml.eos_token_id"), 1);
    cr_expect_eq(u32_key(f, "tokenizer.ggml.padding_token_id"), 1);
    cr_expect(gguf_find_kv(f, "tokenizer.ggml.add_bos_token")->v.b);
    cr_expect_not(gguf_find_kv(f, "tokenizer.ggml.add_eos_token")->v.b);
    tokenizer *tok;
    cr_assert_eq(tok_load(model, &tok), 0);
    const gguf_kv *tokens = gguf_find_kv(f, "tokenizer.ggml.tokens"), *types = gguf_find_kv(f, "tokenizer.ggml.token_type");
    cr_assert(tokens && types && tokens->n == 1024 && types->n == 1024 && types->elem == GGUF_I32);
    for (int i = 0; i < 1024; i++) {
        cr_assert_str_eq(tokens->strs[i], tok_token_str(tok, i), "token %d", i);
        int32_t ty;
        memcpy(&ty, (const char *)types->data + 4 * i, 4);
        cr_assert_eq(ty, i < 2 ? 3 : 1, "token %d has type %d", i, ty);   /* the two special tokens are control tokens */
    }
    const gguf_kv *merges = gguf_find_kv(f, "tokenizer.ggml.merges");
    cr_assert_eq((int)merges->n, tok_merge_count(tok));
    cr_expect_str_eq(merges->strs[0], "Ġ Ġ");   /* tokenizer.json's first merge ["Ġ", "Ġ"] */
    tok_free(tok);
    /* tensors: Q and K rows reordered per head, the others as they are */
    cr_expect_eq(gguf_tensor_count(f), 21);
    float *q = values(f, "blk.1.attn_q.weight", 128, 128), *k = values(f, "blk.0.attn_k.weight", 64, 128);
    float *v = values(f, "blk.0.attn_v.weight", 64, 128), *e = values(f, "token_embd.weight", 1024, 128);
    float *sq = source(model, "model.layers.1.self_attn.q_proj.weight", 128, 128, 4);
    float *sk = source(model, "model.layers.0.self_attn.k_proj.weight", 64, 128, 2);
    float *sv = source(model, "model.layers.0.self_attn.v_proj.weight", 64, 128, 0);
    float *se = source(model, "model.embed_tokens.weight", 1024, 128, 0);
    expect_f16_of(q, sq, 128 * 128, "attn_q");
    expect_f16_of(k, sk, 64 * 128, "attn_k");
    expect_f16_of(v, sv, 64 * 128, "attn_v");
    expect_f16_of(e, se, 1024 * 128, "token_embd");
    cr_expect_eq(gguf_find_tensor(f, "output_norm.weight")->type, GGML_F32);
    cr_expect_eq(gguf_find_tensor(f, "blk.0.ffn_down.weight")->ne[0], 352);
    free(q), free(k), free(v), free(e), free(sq), free(sk), free(sv), free(se);
    gguf_close(f);
    free(model);
    free(dir);
}

/* The reordering: row h*D + 2b + a of a head comes from row h*D + a*D/2 + b. */
Test(gguf_export, permutation_interleaves_the_halves_of_each_head)
{
    float w[2 * 4 * 1];   /* 2 heads of 4 rows, 1 column */
    for (int i = 0; i < 8; i++) w[i] = (float)i;
    cr_assert_eq(export_permute_rows(w, 8, 1, 2), 0);
    float want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int i = 0; i < 8; i++) cr_expect_eq(w[i], want[i], "row %d", i);
}

/* q4_k_m on 8 layers of rows of 256: the layers that keep more bits, and the
 * types llama-quantize (libllama of node-llama-cpp 3.21.1) chose for this
 * model when given its bf16 GGUF. */
Test(gguf_export, q4_k_m_mix_is_llama_quantizes)
{
    char *dir = tu_tmpdir(), *model = ds_path_join(dir, "llama"), *tok = tu_source_path("models/tiny");
    char *cmd = ds_strdupf("'%s' llama '%s' '%s'", tu_binary_path("make_tiny_family"), model, tok);
    cr_assert_eq(tu_run(cmd, NULL), 0);
    gguf_file *f = export_open(model, (gguf_export_opts){.type = GGUF_EXPORT_Q4_K_M}, dir, "q.gguf");
    cr_expect_eq(u32_key(f, "general.file_type"), 15);
    for (int l = 0; l < 8; l++) {
        bool more = l == 0 || l == 3 || l == 6 || l == 7;
        char name[64];
        static const char *const LIN[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
        for (int t = 0; t < 7; t++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, LIN[t]);
            int want = more && (t == 2 || t == 6) ? GGML_Q6_K : GGML_Q4_K;
            cr_expect_eq(gguf_find_tensor(f, name)->type, want, "%s is %s", name,
                         ggml_type_get(gguf_find_tensor(f, name)->type)->name);
        }
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        cr_expect_eq(gguf_find_tensor(f, name)->type, GGML_F32);
    }
    cr_expect_eq(gguf_find_tensor(f, "output.weight")->type, GGML_Q6_K);
    cr_expect_eq(gguf_find_tensor(f, "token_embd.weight")->type, GGML_Q4_K);
    gguf_close(f);
    /* q4_0: the output keeps q6_K as well; everything else q4_0 */
    f = export_open(model, (gguf_export_opts){.type = GGUF_EXPORT_Q4_0}, dir, "q40.gguf");
    cr_expect_eq(gguf_find_tensor(f, "output.weight")->type, GGML_Q6_K);
    cr_expect_eq(gguf_find_tensor(f, "blk.3.attn_v.weight")->type, GGML_Q4_0);
    gguf_close(f);
    free(cmd);
    free(tok);
    free(model);
    free(dir);
}

/* Rows of 128 are not whole q4_K blocks: llama.cpp falls back to q5_0, and
 * from q6_K (the output, the layers with more bits) to q8_0. */
Test(gguf_export, tiny_q4_k_m_takes_llama_cpps_fallbacks)
{
    char *dir = tu_tmpdir(), *model = tu_source_path("models/tiny"), *path = ds_path_join(dir, "q.gguf");
    gguf_export_report r;
    gguf_export_opts o = {.type = GGUF_EXPORT_Q4_K_M};
    cr_assert_eq(gguf_export_model(model, &o, path, &r), 0, "%s", ds_errmsg());
    cr_expect_eq(r.fallbacks, 15);
    cr_expect_eq(r.per_type[GGML_Q5_0], 13);
    cr_expect_eq(r.per_type[GGML_Q8_0], 3);
    gguf_file *f;
    cr_assert_eq(gguf_open(path, &f), 0);
    cr_expect_eq(gguf_find_tensor(f, "blk.1.attn_v.weight")->type, GGML_Q8_0);
    cr_expect_eq(gguf_find_tensor(f, "blk.0.attn_v.weight")->type, GGML_Q5_0);
    cr_expect_eq(gguf_find_tensor(f, "output.weight")->type, GGML_Q8_0);
    gguf_close(f);
    free(path);
    free(model);
    free(dir);
}

Test(gguf_export, qwen2_and_qwen3_as_llama_cpp_names_them)
{
    char *dir = tu_tmpdir(), *tok = tu_source_path("models/tiny");
    for (int fam = 0; fam < 2; fam++) {
        const char *name = fam ? "qwen3" : "qwen2";
        char *model = ds_path_join(dir, name);
        char *cmd = ds_strdupf("'%s' %s '%s' '%s' 128 256 2 4 2 %s", tu_binary_path("make_tiny_family"), name, model, tok,
                               fam ? "" : "tied");
        cr_assert_eq(tu_run(cmd, NULL), 0);
        gguf_file *f = export_open(model, (gguf_export_opts){.type = GGUF_EXPORT_F16}, dir, fam ? "q3.gguf" : "q2.gguf");
        cr_expect_str_eq(gguf_find_kv(f, "general.architecture")->str, name);
        cr_expect_null(gguf_find_kv(f, fam ? "qwen3.vocab_size" : "qwen2.vocab_size"));   /* only the llama converter writes it */
        cr_expect((gguf_find_kv(f, "qwen3.attention.key_length") != NULL) == (fam == 1));   /* head_dim in config.json */
        /* no reordering: llama.cpp's qwen graphs rotate halves as transformers does */
        float *q = values(f, "blk.0.attn_q.weight", 128, 128);
        float *sq = source(model, "model.layers.0.self_attn.q_proj.weight", 128, 128, 0);
        expect_f16_of(q, sq, 128 * 128, "attn_q");
        if (fam == 0) {
            cr_expect_eq(gguf_find_tensor(f, "blk.1.attn_k.bias")->type, GGML_F32);
            cr_expect_null(gguf_find_tensor(f, "output.weight"));   /* tied embeddings */
        } else {
            cr_expect_eq(gguf_find_tensor(f, "blk.1.attn_k_norm.weight")->ne[0], 32);
            cr_expect(gguf_find_tensor(f, "output.weight"));
        }
        free(q), free(sq);
        gguf_close(f);
        free(cmd);
        free(model);
    }
    free(tok);
    free(dir);
}

/* The adapter merged into the 16-bit weights equals PEFT's merge_and_unload
 * (fixtures/tiny-llama/reference.safetensors) to the last fp16 bit. */
Test(gguf_export, merged_adapter_is_pefts_merge)
{
    char *dir = tu_tmpdir(), *model = tu_shared_path("fixtures/tiny-llama");
    char *adapter = tu_shared_path("fixtures/tiny-llama/adapter"), *ref = tu_shared_path("fixtures/tiny-llama/reference.safetensors");
    gguf_export_opts o = {.type = GGUF_EXPORT_F16, .adapter_dir = adapter, .merge_original = true};
    gguf_file *f = export_open(model, o, dir, "m.gguf");
    st_file *r;
    cr_assert_eq(st_file_open(ref, &r), 0);
    for (int l = 0; l < 2; l++) {
        char name[96];
        snprintf(name, sizeof name, "merged.model.layers.%d.self_attn.q_proj.weight", l);
        float *want = malloc(sizeof(float) * 64 * 64);
        cr_assert_eq(st_to_f32(st_file_find(r, name), want), 0);
        cr_assert_eq(export_permute_rows(want, 64, 64, 4), 0);
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
        float *got = values(f, name, 64, 64);
        for (int i = 0; i < 64 * 64; i++) {   /* one fp16 ulp: the sums of s·B·A run in another order than torch's */
            float ulp = ldexpf(1.0f, ilogbf(fmaxf(fabsf(want[i]), 6.1e-5f)) - 10);
            cr_assert_leq(fabsf(got[i] - want[i]), ulp, "%s[%d]: %g vs PEFT %g", name, i, got[i], want[i]);
        }
        free(got);
        free(want);
    }
    st_file_close(r);
    gguf_close(f);
    free(ref), free(adapter), free(model), free(dir);
}

/* A bitsandbytes 4-bit checkpoint: the weights are its NF4 dequantized, as
 * ds-ft's own engine dequantizes them. */
Test(gguf_export, bitsandbytes_checkpoint_is_dequantized)
{
    char *dir = tu_tmpdir(), *src = tu_shared_path("fixtures/tiny-llama-bnb-4bit"), *model = ds_path_join(dir, "bnb");
    char *tok = tu_shared_path("fixtures/tiny-llama");
    cr_assert_eq(ds_mkdirs(model), 0);
    static const char *const FILES[][2] = {{"", "config.json"}, {"", "model.safetensors"}, {"t", "tokenizer.json"},
                                           {"t", "tokenizer_config.json"}};
    for (int i = 0; i < 4; i++) {
        char *from = ds_path_join(*FILES[i][0] ? tok : src, FILES[i][1]), *to = ds_path_join(model, FILES[i][1]);
        cr_assert_eq(ds_copy_file(from, to), 0);
        free(from), free(to);
    }
    gguf_file *f = export_open(model, (gguf_export_opts){.type = GGUF_EXPORT_F16}, dir, "b.gguf");
    llama_model *m;
    backend *cpu;
    cr_assert_eq(model_load(model, NULL, &m), 0, "%s", ds_errmsg());
    cr_assert_eq(be_open(BE_CPU, &cpu), 0);
    float *want = malloc(sizeof(float) * 160 * 64);
    cr_assert_eq(merge_linear(cpu, m, NULL, MERGE_DEQUANTIZED, 1, LIN_DOWN, want), 0);
    float *got = values(f, "blk.1.ffn_down.weight", 64, 160);
    expect_f16_of(got, want, 64 * 160, "ffn_down");
    free(got);
    cr_assert_eq(merge_linear(cpu, m, NULL, MERGE_DEQUANTIZED, 0, LIN_K, want), 0);
    cr_assert_eq(export_permute_rows(want, 32, 64, 2), 0);
    got = values(f, "blk.0.attn_k.weight", 32, 64);
    expect_f16_of(got, want, 32 * 64, "attn_k");
    free(got), free(want);
    be_close(cpu);
    model_free(m);
    gguf_close(f);
    free(tok), free(model), free(src), free(dir);
}

Test(gguf_export, lora_file_as_convert_lora_to_gguf_writes_it)
{
    char *dir = tu_tmpdir(), *model = tu_shared_path("fixtures/tiny-llama"), *adapter = tu_shared_path("fixtures/tiny-llama/adapter");
    char *path = ds_path_join(dir, "lora.gguf");
    cr_assert_eq(gguf_export_lora(model, adapter, path, NULL), 0, "%s", ds_errmsg());
    gguf_file *f;
    cr_assert_eq(gguf_open(path, &f), 0);
    cr_expect_str_eq(gguf_find_kv(f, "general.type")->str, "adapter");
    cr_expect_str_eq(gguf_find_kv(f, "adapter.type")->str, "lora");
    cr_expect_str_eq(gguf_find_kv(f, "general.architecture")->str, "llama");
    cr_expect_eq(gguf_find_kv(f, "adapter.lora.alpha")->v.f, 8.0);
    cr_expect_eq(gguf_tensor_count(f), 8);   /* q_proj and v_proj of 2 layers, A and B */
    const gguf_tensor *a = gguf_find_tensor(f, "blk.1.attn_q.weight.lora_a"), *b = gguf_find_tensor(f, "blk.1.attn_q.weight.lora_b");
    cr_assert(a && b && a->type == GGML_F32);
    cr_expect(a->ne[0] == 64 && a->ne[1] == 4 && b->ne[0] == 4 && b->ne[1] == 64);
    char *st = ds_path_join(adapter, "adapter_model.safetensors");
    st_file *s;
    cr_assert_eq(st_file_open(st, &s), 0);
    float A[4 * 64], B[64 * 4], V[32 * 4];
    cr_assert_eq(st_to_f32(st_file_find(s, "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"), A), 0);
    cr_assert_eq(st_to_f32(st_file_find(s, "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"), B), 0);
    cr_assert_eq(st_to_f32(st_file_find(s, "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"), V), 0);
    cr_expect_eq(memcmp(a->data, A, sizeof A), 0, "lora_a is A as it is");
    cr_assert_eq(export_permute_rows(B, 64, 4, 4), 0);
    cr_expect_eq(memcmp(b->data, B, sizeof B), 0, "lora_b is B with the Q rows reordered");
    cr_expect_eq(memcmp(gguf_find_tensor(f, "blk.1.attn_v.weight.lora_b")->data, V, sizeof V), 0, "v's B as it is");
    st_file_close(s);
    gguf_close(f);
    free(st), free(path), free(adapter), free(model), free(dir);
}

Test(gguf_export, pre_tokenizers_of_real_tokenizers_are_named)
{
    static const char *const CASES[][2] = {{"tokenizers/deepseek_v3", "deepseek-v3"}, {"tokenizers/llama3", "llama-bpe"},
                                           {"tokenizers/qwen3", "qwen2"}};
    for (int i = 0; i < 3; i++) {
        char *dir = tu_shared_path(CASES[i][0]), *path = ds_path_join(dir, "tokenizer.json");
        json_t *root;
        cr_assert_eq(json_file_load(path, 0, &root), 0);
        export_pre_info info;
        cr_assert_eq(export_recognise_pre(json_object_get(root, "pre_tokenizer"), &info), 0);
        cr_expect(info.byte_level);
        cr_expect(info.name && !strcmp(info.name, CASES[i][1]), "%s: %s", CASES[i][0], info.name ? info.name : "(none)");
        json_decref(root);
        free(path), free(dir);
    }
    json_t *metaspace = json_pack("{s:s, s:s}", "type", "Metaspace", "replacement", "▁");
    export_pre_info info;
    cr_assert_eq(export_recognise_pre(metaspace, &info), 0);
    cr_expect_not(info.byte_level);
    json_decref(metaspace);
    cr_expect(export_pre_accepted("deepseek-llm"));
    cr_expect_not(export_pre_accepted("deepseek"));
}

/* ------------------------------------------------------------ refusals */

/* A copy of models/tiny in DIR/NAME; `from` in FILE replaced by `to` when given. */
static char *tiny_copy(const char *dir, const char *name, const char *file, const char *from, const char *to)
{
    static const char *const FILES[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                        "model.safetensors"};
    char *src = tu_source_path("models/tiny"), *out = ds_path_join(dir, name);
    cr_assert_eq(ds_mkdirs(out), 0);
    for (int i = 0; i < 5; i++) {
        char *a = ds_path_join(src, FILES[i]), *b = ds_path_join(out, FILES[i]);
        if (file && !strcmp(file, FILES[i])) {
            char *text;
            size_t len;
            cr_assert_eq(ds_read_file(a, &text, &len), 0);
            char *at = strstr(text, from);
            cr_assert(at, "'%s' not in %s", from, file);
            char *edited = ds_strdupf("%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
            cr_assert_eq(ds_write_file(b, edited, strlen(edited)), 0);
            free(edited);
            free(text);
        } else {
            cr_assert_eq(ds_copy_file(a, b), 0);
        }
        free(a), free(b);
    }
    free(src);
    return out;
}

static void expect_refused(const char *model, gguf_export_opts o, const char *dir, int code, const char *want)
{
    char *path = ds_path_join(dir, "refused.gguf");
    cr_expect_eq(gguf_export_model(model, &o, path, NULL), code, "%s", ds_errmsg());
    cr_expect(strstr(ds_errmsg(), want), "message '%s' lacks '%s'", ds_errmsg(), want);
    cr_expect_not(ds_exists(path), "a refused export left %s", path);
    free(path);
}

Test(gguf_export, what_it_cannot_write_is_refused_by_name)
{
    char *dir = tu_tmpdir();
    gguf_export_opts q = {.type = GGUF_EXPORT_Q4_K_M};
    char *m = tiny_copy(dir, "arch", "config.json", "LlamaForCausalLM", "GPT2LMHeadModel");
    expect_refused(m, q, dir, DS_EDATA, "architecture \"GPT2LMHeadModel\"");
    free(m);
    m = tiny_copy(dir, "yarn", "config.json", "\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}");
    expect_refused(m, q, dir, DS_EDATA, "rope type \"yarn\"");
    free(m);
    m = tiny_copy(dir, "act", "config.json", "\"silu\"", "\"gelu\"");
    expect_refused(m, q, dir, DS_EDATA, "hidden_act");
    free(m);
    /* a pre-tokenizer llama.cpp does not know: refused, unless named */
    m = tiny_copy(dir, "pre", "tokenizer.json", "\\\\p{N}{1,3}", "\\\\p{N}{1,4}");
    expect_refused(m, q, dir, DS_EDATA, "--pre NAME");
    expect_refused(m, (gguf_export_opts){.type = GGUF_EXPORT_F16, .pre = "no-such-pre"}, dir, DS_EUSAGE, "no-such-pre");
    char *path = ds_path_join(dir, "named.gguf");
    gguf_export_opts named = {.type = GGUF_EXPORT_F16, .pre = "deepseek-v3"};
    cr_expect_eq(gguf_export_model(m, &named, path, NULL), 0, "%s", ds_errmsg());
    free(path);
    free(m);
    m = tiny_copy(dir, "spm", "tokenizer.json", "\"type\": \"ByteLevel\"", "\"type\": \"Metaspace\"");   /* the pre-tokenizer's */
    expect_refused(m, named, dir, DS_EDATA, "not byte-level");
    free(m);
    free(dir);
}

/* Every checkpoint tensor is either written or named in an error; a NaN
 * weight stops the export and leaves no file. */
Test(gguf_export, unknown_tensors_and_nan_weights_are_refused)
{
    char *dir = tu_tmpdir(), *m = tiny_copy(dir, "extra", NULL, NULL, NULL), *st = ds_path_join(m, "model.safetensors");
    st_file *f;
    cr_assert_eq(st_file_open(st, &f), 0);
    st_writer *w = st_writer_new();
    for (int i = 0; i < st_file_count(f); i++) {
        const st_tensor *t = st_file_at(f, i);
        cr_assert_eq(st_writer_add_copy(w, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
    }
    float extra[4] = {0}, nan_norm[128];
    for (int i = 0; i < 128; i++) nan_norm[i] = i == 77 ? NAN : 1.0f;
    int64_t four[1] = {4};
    cr_assert_eq(st_writer_add(w, "model.layers.0.self_attn.rotary_emb.extra", ST_F32, 1, four, extra), 0);
    char *other = ds_path_join(dir, "x.safetensors");
    cr_assert_eq(st_writer_write(w, other), 0);
    st_writer_free(w);
    cr_assert_eq(ds_copy_file(other, st), 0);
    expect_refused(m, (gguf_export_opts){.type = GGUF_EXPORT_F16}, dir, DS_EDATA, "'model.layers.0.self_attn.rotary_emb.extra'");
    /* the same model with a NaN in a norm */
    w = st_writer_new();
    for (int i = 0; i < st_file_count(f); i++) {
        const st_tensor *t = st_file_at(f, i);
        if (!strcmp(t->name, "model.layers.1.input_layernorm.weight"))
            cr_assert_eq(st_writer_add(w, t->name, ST_F32, 1, t->shape, nan_norm), 0);
        else
            cr_assert_eq(st_writer_add_copy(w, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
    }
    cr_assert_eq(st_writer_write(w, other), 0);
    st_writer_free(w);
    st_file_close(f);
    cr_assert_eq(ds_copy_file(other, st), 0);
    expect_refused(m, (gguf_export_opts){.type = GGUF_EXPORT_Q8_0}, dir, DS_EDATA, "holds NaN");
    free(other), free(st), free(m), free(dir);
}
