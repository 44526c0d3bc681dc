/* DeepseekV2/V3 config.json: MLA and MoE keys of the tiny fixtures (both key
 * styles), the softmax scale with yarn's mscale, the rope on the rope part,
 * and every refusal naming its key. */
#include "testutil.h"

#include "core/status.h"
#include "data/model_config.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static model_config load_fixture(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "tests/data/fixtures/%s", name);
    char *dir = tu_source_path(rel);
    model_config c;
    cr_assert_eq(model_config_load(dir, &c), DS_OK, "%s", ds_errmsg());
    free(dir);
    return c;
}

Test(model_config_deepseek, v2_old_style)
{
    model_config c = load_fixture("tiny-deepseek-v2");
    cr_expect_eq(c.family, FAMILY_DEEPSEEK_V2);
    cr_expect(model_config_is_deepseek(&c));
    cr_expect_eq(c.ds.q_lora_rank, 0);
    cr_expect_eq(c.ds.kv_lora_rank, 32);
    cr_expect_eq(c.ds.qk_nope_dim, 16);
    cr_expect_eq(c.ds.qk_rope_dim, 8);
    cr_expect_eq(c.ds.v_head_dim, 16);
    cr_expect_eq(c.head_dim, 24);
    cr_expect_eq(c.num_kv_heads, 4);
    cr_expect_eq(c.ds.first_k_dense, 1);
    cr_expect_eq(c.ds.n_routed, 8);
    cr_expect_eq(c.ds.n_shared, 2);
    cr_expect_eq(c.ds.top_k, 2);
    cr_expect_eq(c.ds.moe_intermediate, 32);
    cr_expect_eq(c.ds.topk_method, TOPK_GREEDY);
    cr_expect(!c.ds.sigmoid);
    cr_expect(c.ds.rope_interleave);
    cr_expect_eq(c.ds.routed_scaling_factor, 1.0);
    cr_expect_eq(c.ds.aux_loss_alpha, 0.001);
    cr_expect_eq(c.rope.type, ROPE_YARN);
    /* transformers: qk_head_dim^-0.5 * mscale(4, 0.707)^2 (reference.json attention.softmax_scale_per_layer) */
    cr_expect(fabs(c.ds.softmax_scale - 0.24609782191507454) < 1e-7, "%.9f", c.ds.softmax_scale);
    float inv[8], scale;
    model_rope_freqs(&c, inv, &scale);
    const float want[4] = {1.0f, 0.02500000037252903f, 0.0024999999441206455f, 0.0002500000118743628f};
    for (int i = 0; i < 4; i++) cr_expect_eq(inv[i], want[i], "inv_freq[%d] %.9g", i, inv[i]);
    cr_expect_eq(scale, 1.0f);
}

Test(model_config_deepseek, v2_grouped_and_v3_new_style)
{
    model_config g = load_fixture("tiny-deepseek-v2-grouped");
    cr_expect_eq(g.ds.q_lora_rank, 24);
    cr_expect_eq(g.ds.topk_method, TOPK_GROUP_LIMITED_GREEDY);
    cr_expect_eq(g.ds.n_group, 4);
    cr_expect_eq(g.ds.topk_group, 2);
    cr_expect(!g.ds.norm_topk_prob, "transformers' DeepseekV2Moe does not normalise");
    cr_expect_eq(g.ds.routed_scaling_factor, 2.0);

    model_config c = load_fixture("tiny-deepseek-v3");
    cr_expect_eq(c.family, FAMILY_DEEPSEEK_V3);
    cr_expect_eq(c.head_dim, 24, "head_dim 8 in the file is the rope part");
    cr_expect_eq(c.ds.topk_method, TOPK_NOAUX_TC);
    cr_expect(c.ds.sigmoid);
    cr_expect(c.ds.norm_topk_prob);
    cr_expect_eq(c.ds.n_shared, 1);
    cr_expect_eq(c.ds.routed_scaling_factor, 2.5);
    cr_expect(fabs(c.ds.softmax_scale - 0.25191097422871067) < 1e-7, "%.9f", c.ds.softmax_scale);
    float inv[8], scale;
    model_rope_freqs(&c, inv, &scale);
    cr_expect(fabs(scale - 1.0249579607969668) < 1e-6, "%.9f", scale);

    model_config q = load_fixture("tiny-deepseek-v3-bnb-4bit");
    cr_expect(q.quantized);
    cr_expect(q.ds.on);
}

#define V2 "\"architectures\": [\"DeepseekV2ForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 160, " \
           "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 1024, \"kv_lora_rank\": 32, " \
           "\"qk_nope_head_dim\": 16, \"qk_rope_head_dim\": 8, \"v_head_dim\": 16, \"n_routed_experts\": 8, " \
           "\"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32"

static void expect_refused(const char *arch, const char *extra, const char *needle)
{
    char text[2048];
    snprintf(text, sizeof text, "{" V2 "%s%s}", *extra ? ", " : "", extra);
    if (arch) {
        char *p = strstr(text, "DeepseekV2");
        memcpy(p, arch, strlen(arch));
    }
    model_config c;
    int rc = model_config_parse(text, strlen(text), "config.json", &c);
    cr_expect_eq(rc, DS_EDATA, "%s: expected DS_EDATA, got %d", extra, rc);
    cr_expect(strstr(ds_errmsg(), needle) != NULL, "message '%s' lacks '%s'", ds_errmsg(), needle);
    cr_expect(strstr(ds_errmsg(), "config.json") != NULL, "message '%s' does not name the file", ds_errmsg());
}

Test(model_config_deepseek, minimal_parses)
{
    char text[2048];
    snprintf(text, sizeof text, "{" V2 "}");
    model_config c;
    cr_assert_eq(model_config_parse(text, strlen(text), "config.json", &c), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(c.ds.n_shared, 0);
    cr_expect_eq(c.ds.first_k_dense, 0);
    cr_expect_eq(c.rope.type, ROPE_DEFAULT);
    cr_expect(fabs(c.ds.softmax_scale - 1 / sqrt(24.0)) < 1e-7);
    cr_expect_eq(model_config_refuse_deepseek(&c, "merging an adapter"), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "merging an adapter is not yet supported") != NULL, "%s", ds_errmsg());
}

Test(model_config_deepseek, refusals)
{
    expect_refused(NULL, "\"topk_method\": \"noaux_tc\"", "topk_method");
    expect_refused("DeepseekV3", "\"topk_method\": \"greedy\"", "topk_method");
    expect_refused(NULL, "\"scoring_func\": \"sigmoid\"", "scoring_func");
    expect_refused("DeepseekV3", "\"scoring_func\": \"softmax\"", "scoring_func");
    expect_refused(NULL, "\"moe_layer_freq\": 2", "moe_layer_freq");
    expect_refused(NULL, "\"ep_size\": 2", "ep_size");
    expect_refused(NULL, "\"num_key_value_heads\": 2", "num_key_value_heads");
    expect_refused(NULL, "\"attention_bias\": true", "attention_bias");
    expect_refused(NULL, "\"qk_rope_head_dim\": 7", "qk_rope_head_dim");
    expect_refused(NULL, "\"num_experts_per_tok\": 9", "num_experts_per_tok");
    expect_refused(NULL, "\"topk_method\": \"group_limited_greedy\", \"n_group\": 3", "n_group");
    expect_refused(NULL, "\"topk_method\": \"group_limited_greedy\", \"n_group\": 4, \"topk_group\": 5", "topk_group");
    expect_refused(NULL, "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}", "rope type");
    expect_refused(NULL, "\"routed_scaling_factor\": 0", "routed_scaling_factor");
    expect_refused(NULL, "\"qk_head_dim\": 20", "qk_head_dim");
}

Test(model_config_deepseek, missing_mla_key)
{
    char text[2048];
    snprintf(text, sizeof text, "{\"architectures\": [\"DeepseekV2ForCausalLM\"], \"hidden_size\": 64, "
                                "\"intermediate_size\": 160, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                                "\"vocab_size\": 1024}");
    model_config c;
    cr_expect_eq(model_config_parse(text, strlen(text), "config.json", &c), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "kv_lora_rank") != NULL, "%s", ds_errmsg());
}

/* DeepSeek-V2-Lite's config.json (its numbers): MLA with q_proj, 64 experts top-6 + 2 shared, yarn factor 40. */
Test(model_config_deepseek, v2_lite_shapes)
{
    const char *text =
        "{\"architectures\": [\"DeepseekV2ForCausalLM\"], \"model_type\": \"deepseek_v2\", \"hidden_size\": 2048, "
        "\"intermediate_size\": 10944, \"num_hidden_layers\": 27, \"num_attention_heads\": 16, "
        "\"num_key_value_heads\": 16, \"vocab_size\": 102400, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0, "
        "\"max_position_embeddings\": 163840, \"tie_word_embeddings\": false, \"q_lora_rank\": null, "
        "\"kv_lora_rank\": 512, \"qk_nope_head_dim\": 128, \"qk_rope_head_dim\": 64, \"v_head_dim\": 128, "
        "\"n_routed_experts\": 64, \"num_experts_per_tok\": 6, \"n_shared_experts\": 2, \"moe_intermediate_size\": "
        "1408, \"first_k_dense_replace\": 1, \"moe_layer_freq\": 1, \"norm_topk_prob\": false, \"routed_scaling_factor\": "
        "1.0, \"topk_method\": \"greedy\", \"n_group\": 1, \"topk_group\": 1, \"scoring_func\": \"softmax\", "
        "\"aux_loss_alpha\": 0.001, \"seq_aux\": true, \"ep_size\": 1, \"rope_scaling\": {\"type\": \"yarn\", "
        "\"factor\": 40, \"beta_fast\": 32, \"beta_slow\": 1, \"mscale\": 0.707, \"mscale_all_dim\": 0.707, "
        "\"original_max_position_embeddings\": 4096}}";
    model_config c;
    cr_assert_eq(model_config_parse(text, strlen(text), "config.json", &c), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(c.head_dim, 192);
    double m = 0.1 * 0.707 * log(40.0) + 1.0;
    cr_expect(fabs(c.ds.softmax_scale - pow(192.0, -0.5) * m * m) < 1e-7, "%.9f", c.ds.softmax_scale);
    int out, in;
    cr_expect(deepseek_linear(&c, 1, DSL_KVB, NULL, 0, NULL, &out, &in) && out == 16 * 256 && in == 512);
    cr_expect(deepseek_linear(&c, 1, DSL_SH_DOWN, NULL, 0, NULL, &out, &in) && out == 2048 && in == 2816);
    cr_expect(!deepseek_linear(&c, 0, DSL_SH_DOWN, NULL, 0, NULL, &out, &in), "layer 0 is dense");
    char path[96];
    cr_expect(deepseek_linear(&c, 5, DSL_EXPERTS + 3 * 63 + 1, path, sizeof path, NULL, &out, &in));
    cr_expect_str_eq(path, "mlp.experts.63.up_proj");
    /* 15.7B parameters (Hugging Face's count for DeepSeek-V2-Lite: 15,706,484,224) */
    long long p = model_config_params(&c);
    cr_expect(p == 15706484224LL, "%lld parameters", p);
}
