/* config.json: both key styles, defaults, and every refusal names its key. */
#include "testutil.h"

#include "core/status.h"
#include "data/model_config.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define BASE "\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 160, " \
             "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 1024"

static int parse(const char *extra, model_config *c)
{
    char text[2048];
    snprintf(text, sizeof text, "{" BASE "%s%s}", *extra ? ", " : "", extra);
    return model_config_parse(text, strlen(text), "config.json", c);
}

static void expect_refused(const char *extra, const char *needle)
{
    model_config c;
    int rc = parse(extra, &c);
    cr_expect_eq(rc, DS_EDATA, "%s: expected DS_EDATA, got %d", extra, rc);
    cr_expect(strstr(ds_errmsg(), needle) != NULL, "message '%s' lacks '%s'", ds_errmsg(), needle);
    cr_expect(strstr(ds_errmsg(), "config.json") != NULL, "message '%s' does not name the file", ds_errmsg());
}

Test(model_config, fixture_new_key_style)
{
    char *dir = tu_shared_path("fixtures/tiny-llama");
    model_config c;
    cr_assert_eq(model_config_load(dir, &c), 0, "%s", ds_errmsg());
    cr_expect_eq(c.hidden_size, 64);
    cr_expect_eq(c.num_kv_heads, 2);
    cr_expect_eq(c.head_dim, 16);
    cr_expect_eq(c.rope_theta, 10000.0);
    cr_expect_eq(c.rope_factor, 1.0);
    cr_expect_eq(c.bos_id, 0);
    cr_expect_eq(c.eos_id, 1);
    cr_expect(!c.tie_word_embeddings);
    cr_expect(fabsf(c.rms_norm_eps - 1e-6f) < 1e-12f);
    free(dir);
}

Test(model_config, defaults_for_absent_keys)
{
    model_config c;
    cr_assert_eq(parse("", &c), 0, "%s", ds_errmsg());
    cr_expect_eq(c.num_kv_heads, 4, "num_key_value_heads defaults to the heads");
    cr_expect_eq(c.head_dim, 16, "head_dim defaults to hidden / heads");
    cr_expect_eq(c.rope_theta, 10000.0);
}

Test(model_config, old_key_style_with_linear_scaling)
{
    model_config c;
    cr_assert_eq(parse("\"rope_theta\": 100000.0, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}, "
                       "\"torch_dtype\": \"bfloat16\", \"tie_word_embeddings\": true", &c), 0, "%s", ds_errmsg());
    cr_expect_eq(c.rope_theta, 100000.0);
    cr_expect_eq(c.rope_factor, 4.0);
    cr_expect(c.tie_word_embeddings);
    cr_expect_str_eq(c.dtype, "bfloat16");
}

Test(model_config, rope_parameters_linear)
{
    model_config c;
    cr_assert_eq(parse("\"rope_parameters\": {\"rope_theta\": 5e5, \"rope_type\": \"linear\", \"factor\": 2}", &c), 0,
                 "%s", ds_errmsg());
    cr_expect_eq(c.rope_theta, 5e5);
    cr_expect_eq(c.rope_factor, 2.0);
}

Test(model_config, rope_scaling_null_is_none)
{
    model_config c;
    cr_assert_eq(parse("\"rope_scaling\": null", &c), 0, "%s", ds_errmsg());
    cr_expect_eq(c.rope_factor, 1.0);
}

Test(model_config, unsupported_architecture) { expect_refused("\"architectures\": [\"Qwen2ForCausalLM\"]", "Qwen2ForCausalLM"); }
Test(model_config, unsupported_rope_type)
{
    expect_refused("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}", "llama3");
    expect_refused("\"rope_parameters\": {\"rope_theta\": 1e4, \"rope_type\": \"yarn\"}", "yarn");
}
Test(model_config, sliding_window) { expect_refused("\"sliding_window\": 4096", "sliding_window"); }
Test(model_config, attention_bias) { expect_refused("\"attention_bias\": true", "attention_bias"); }
Test(model_config, wrong_type) { expect_refused("\"num_key_value_heads\": \"two\"", "num_key_value_heads"); }
Test(model_config, heads_not_divisible) { expect_refused("\"num_key_value_heads\": 3", "num_key_value_heads"); }
Test(model_config, hidden_act) { expect_refused("\"hidden_act\": \"gelu\"", "hidden_act"); }

Test(model_config, missing_key)
{
    model_config c;
    const char *text = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64}";
    cr_expect_eq(model_config_parse(text, strlen(text), "config.json", &c), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "intermediate_size"), "%s", ds_errmsg());
}

Test(model_config, malformed_json)
{
    model_config c;
    const char *text = "{\"architectures\": [\"LlamaForCausalLM\",\n \"hidden_size\": }";
    cr_expect_eq(model_config_parse(text, strlen(text), "config.json", &c), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "config.json:2"), "line number missing: %s", ds_errmsg());
}

Test(model_config, missing_folder) { model_config c; cr_expect_eq(model_config_load("/nonexistent", &c), DS_ENOINPUT); }
