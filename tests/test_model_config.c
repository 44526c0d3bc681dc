/* config.json: both key styles, defaults, token ids (lists too), every
 * refusal naming its key; and the config.json and side files of a model
 * folder derived from another, as transformers writes them. */
#include "testutil.h"

#include "core/files.h"
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

Test(model_config, unsupported_architecture)
{
    expect_refused("\"architectures\": [\"GPTNeoXForCausalLM\"]", "GPTNeoXForCausalLM");
}
Test(model_config, unsupported_rope_type)
{
    expect_refused("\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}", "dynamic");
    expect_refused("\"rope_scaling\": {\"rope_type\": \"longrope\", \"factor\": 2.0}", "longrope");
    /* incomplete llama3 / yarn sections are refused naming what is missing */
    expect_refused("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}", "low_freq_factor");
    expect_refused("\"rope_parameters\": {\"rope_theta\": 1e4, \"rope_type\": \"yarn\"}", "factor");
    /* a key the rope type does not read */
    expect_refused("\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0, \"beta_fast\": 32}", "beta_fast");
}
/* Llama attends to every earlier token: a window there is a config it cannot honour. */
Test(model_config, sliding_window_on_llama) { expect_refused("\"sliding_window\": 4096", "sliding_window"); }

Test(model_config, attention_and_mlp_bias_on_llama)
{
    model_config c;
    cr_assert_eq(parse("\"attention_bias\": true", &c), 0, "%s", ds_errmsg());
    cr_expect(c.bias[LIN_Q] && c.bias[LIN_K] && c.bias[LIN_V] && c.bias[LIN_O]);
    cr_expect(!c.bias[LIN_GATE] && !c.bias[LIN_UP] && !c.bias[LIN_DOWN]);
    cr_assert_eq(parse("\"mlp_bias\": true", &c), 0, "%s", ds_errmsg());
    cr_expect(!c.bias[LIN_Q] && c.bias[LIN_GATE] && c.bias[LIN_UP] && c.bias[LIN_DOWN]);
}

static int parse_arch(const char *arch, const char *extra, model_config *c)
{
    char text[2048];
    snprintf(text, sizeof text, "{\"architectures\": [\"%s\"], \"hidden_size\": 64, \"intermediate_size\": 160, "
             "\"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"vocab_size\": 1024%s%s}", arch,
             *extra ? ", " : "", extra);
    return model_config_parse(text, strlen(text), "config.json", c);
}

Test(model_config, families)
{
    model_config c;
    cr_assert_eq(parse_arch("Qwen2ForCausalLM", "\"use_sliding_window\": false, \"sliding_window\": 4096", &c), 0,
                 "%s", ds_errmsg());
    cr_expect_eq(c.family, FAMILY_QWEN2);
    cr_expect(c.bias[LIN_Q] && c.bias[LIN_K] && c.bias[LIN_V] && !c.bias[LIN_O] && !c.bias[LIN_DOWN]);
    cr_expect(!c.qk_norm);
    cr_expect_eq(c.sliding_window, 0, "use_sliding_window false: no window");

    cr_assert_eq(parse_arch("Qwen3ForCausalLM", "\"head_dim\": 32", &c), 0, "%s", ds_errmsg());
    cr_expect_eq(c.family, FAMILY_QWEN3);
    cr_expect(c.qk_norm);
    cr_expect_eq(c.head_dim, 32);
    cr_expect(!c.bias[LIN_Q]);

    cr_assert_eq(parse_arch("MistralForCausalLM", "\"sliding_window\": 8", &c), 0, "%s", ds_errmsg());
    cr_expect_eq(c.sliding_window, 8);
    for (int l = 0; l < 4; l++) cr_expect_eq(model_layer_window(&c, l), 8);
    cr_assert_eq(parse_arch("MistralForCausalLM", "\"sliding_window\": null", &c), 0, "%s", ds_errmsg());
    cr_expect_eq(model_layer_window(&c, 0), 0);

    /* Qwen's window applies from max_window_layers on, and an explicit layer_types list must agree */
    cr_assert_eq(parse_arch("Qwen2ForCausalLM", "\"use_sliding_window\": true, \"sliding_window\": 16, "
                            "\"max_window_layers\": 2", &c), 0, "%s", ds_errmsg());
    cr_expect(model_layer_window(&c, 1) == 0 && model_layer_window(&c, 2) == 16 && model_layer_window(&c, 3) == 16);
    cr_assert_eq(parse_arch("Qwen2ForCausalLM", "\"use_sliding_window\": true, \"sliding_window\": 16, "
                            "\"layer_types\": [\"full_attention\", \"full_attention\", \"full_attention\", "
                            "\"sliding_attention\"]", &c), 0, "%s", ds_errmsg());
    cr_expect(model_layer_window(&c, 2) == 0 && model_layer_window(&c, 3) == 16);
    cr_expect_eq(parse_arch("Qwen2ForCausalLM", "\"use_sliding_window\": true, \"sliding_window\": 16, "
                            "\"layer_types\": [\"sliding_attention\", \"full_attention\", \"full_attention\", "
                            "\"full_attention\"]", &c), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "layer_types"), "%s", ds_errmsg());
}

/* Llama-3.1's llama3 scaling (the three wavelength regimes) and DeepSeek-V2's yarn, by hand. */
Test(model_config, rope_frequencies)
{
    model_config c;
    cr_assert_eq(parse("\"head_dim\": 16, \"rope_theta\": 500000.0, \"rope_scaling\": {\"rope_type\": \"llama3\", "
                       "\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                       "\"original_max_position_embeddings\": 64}", &c), 0, "%s", ds_errmsg());
    float f[8], scale;
    model_rope_freqs(&c, f, &scale);
    cr_expect_eq(scale, 1.0f);
    for (int i = 0; i < 8; i++) {
        double base = 1.0 / pow(500000.0, 2.0 * i / 16), wavelen = 2 * M_PI / base, want;
        if (wavelen < 64 / 4.0) want = base;                 /* short: kept */
        else if (wavelen > 64 / 1.0) want = base / 8;        /* long: divided by factor */
        else {                                               /* between: blended */
            double smooth = (64 / wavelen - 1.0) / (4.0 - 1.0);
            want = (1 - smooth) * base / 8 + smooth * base;
        }
        cr_expect(fabs(f[i] - want) <= 1e-6 * want, "llama3 inv_freq[%d] = %g, want %g", i, f[i], want);
    }
    cr_assert_eq(parse("\"head_dim\": 16, \"max_position_embeddings\": 4096, \"rope_scaling\": {\"type\": \"yarn\", "
                       "\"factor\": 40, \"original_max_position_embeddings\": 4096, \"beta_fast\": 32, "
                       "\"beta_slow\": 1, \"mscale\": 0.707, \"mscale_all_dim\": 0.707}", &c), 0, "%s", ds_errmsg());
    model_rope_freqs(&c, f, &scale);
    cr_expect(fabsf(scale - 1.0f) < 1e-6f, "mscale == mscale_all_dim: attention factor 1, got %g", scale);
    /* low = floor(dim(32)), high = ceil(dim(1)); below low the frequency is kept, above high divided by 40 */
    double lo = floor(16 * log(4096 / (32 * 2 * M_PI)) / (2 * log(10000.0)));
    double hi = ceil(16 * log(4096 / (1 * 2 * M_PI)) / (2 * log(10000.0)));
    for (int i = 0; i < 8; i++) {
        double base = 1.0 / pow(10000.0, 2.0 * i / 16);
        double ramp = (i - lo) / (hi - lo), keep = 1 - (ramp < 0 ? 0 : ramp > 1 ? 1 : ramp);
        double want = base / 40 * (1 - keep) + base * keep;
        cr_expect(fabs(f[i] - want) <= 1e-6 * want, "yarn inv_freq[%d] = %g, want %g", i, f[i], want);
    }
}
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

/* ---- token ids ---- */

Test(model_config, eos_token_id_list_gives_its_first)
{
    model_config c;
    cr_assert_eq(parse("\"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009]", &c), 0, "%s",
                 ds_errmsg());
    cr_expect_eq(c.bos_id, 128000);
    cr_expect_eq(c.eos_id, 128001, "Llama-3.1 lists its EOS ids: the first is the EOS");
    cr_expect_eq(c.pad_id, -1);
    cr_assert_eq(parse("\"eos_token_id\": [7]", &c), 0, "%s", ds_errmsg());
    cr_expect_eq(c.eos_id, 7);
    expect_refused("\"eos_token_id\": \"</s>\"", "eos_token_id");
    expect_refused("\"eos_token_id\": []", "eos_token_id");
    expect_refused("\"eos_token_id\": [\"</s>\"]", "eos_token_id");
    expect_refused("\"bos_token_id\": -2", "bos_token_id");
}

/* A folder with config.json (BASE plus `extra`) and generation_config.json `gen`. */
static char *model_dir(const char *extra, const char *gen)
{
    char *dir = tu_tmpdir(), *cfg = ds_path_join(dir, "config.json"), *gp = ds_path_join(dir, "generation_config.json");
    char *text = ds_strdupf("{" BASE "%s%s}", *extra ? ", " : "", extra);
    cr_assert_eq(ds_write_file(cfg, text, strlen(text)), DS_OK);
    if (gen) cr_assert_eq(ds_write_file(gp, gen, strlen(gen)), DS_OK);
    free(text);
    free(cfg);
    free(gp);
    return dir;
}

Test(model_config, generation_config_ids_win_and_lists_give_their_first)
{
    char *dir = model_dir("\"bos_token_id\": 1, \"eos_token_id\": [2, 3], \"pad_token_id\": 4",
                          "{\"bos_token_id\": 5000, \"eos_token_id\": [9, 2], \"pad_token_id\": null}");
    model_config c;
    cr_assert_eq(model_config_load(dir, &c), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(c.bos_id, 1, "an id outside the vocabulary (1024) is ignored");
    cr_expect_eq(c.eos_id, 9, "generation_config.json wins, its list gives its first id");
    cr_expect_eq(c.pad_id, 4);
    ds_remove_tree(dir);
    free(dir);
    /* generation_config.json is advice: a malformed one changes nothing */
    dir = model_dir("\"eos_token_id\": [2, 3]", "{\"eos_token_id\": ");
    cr_assert_eq(model_config_load(dir, &c), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(c.eos_id, 2);
    ds_remove_tree(dir);
    free(dir);
}

Test(model_config, load_json_hands_back_the_parsed_file)
{
    char *dir = tu_shared_path("fixtures/tiny-llama-bnb-4bit");
    model_config c;
    json_t *root;
    cr_assert_eq(model_config_load_json(dir, &c, &root), DS_OK, "%s", ds_errmsg());
    cr_expect(c.quantized);
    cr_expect(json_is_object(json_object_get(root, "quantization_config")));
    json_decref(root);
    free(dir);
    cr_expect_eq(model_config_load_json("/nonexistent", &c, &root), DS_ENOINPUT);
    cr_expect_null(root);
}

/* ---- derived folders ---- */

static char *read_text(const char *dir, const char *file)
{
    char *p = ds_path_join(dir, file), *text;
    cr_assert_eq(ds_read_file(p, &text, NULL), DS_OK, "%s", p);
    free(p);
    return text;
}

Test(model_config, rewrite_without_quantization_is_the_16bit_config)
{
    /* the 4-bit checkpoint's config.json, its quantization_config removed:
     * what transformers wrote for the 16-bit model, byte for byte */
    char *src = tu_shared_path("fixtures/tiny-llama-bnb-4bit"), *ref = tu_shared_path("fixtures/tiny-llama");
    char *out = tu_tmpdir();
    cr_assert_eq(model_config_rewrite(src, out, NULL), DS_OK, "%s", ds_errmsg());
    char *a = read_text(out, "config.json"), *b = read_text(ref, "config.json");
    cr_expect_str_eq(a, b);
    cr_expect(strstr(a, "\"rms_norm_eps\": 1e-06,"), "floats as Python writes them");
    free(a);
    free(b);
    ds_remove_tree(out);
    free(out);
    free(src);
    free(ref);
}

Test(model_config, rewrite_sets_the_dtype_and_places_quantization_config)
{
    char *src = model_dir("\"torch_dtype\": \"float16\", \"rms_norm_eps\": 1e-05, \"quantization_config\": {\"a\": 1}", NULL);
    char *out = tu_tmpdir();
    cr_assert_eq(model_config_rewrite(src, out, NULL), DS_OK, "%s", ds_errmsg());
    char *a = read_text(out, "config.json");
    cr_expect(strstr(a, "\"torch_dtype\": \"bfloat16\""), "%s", a);
    cr_expect(!strstr(a, "\"dtype\""), "no second dtype key: %s", a);
    cr_expect(!strstr(a, "quantization_config"), "%s", a);
    cr_expect(strstr(a, "\"rms_norm_eps\": 1e-05\n}\n"), "%s", a);
    free(a);
    /* a replacement takes the old object's place */
    json_t *q = json_pack("{sb}", "load_in_4bit", 1);
    cr_assert_eq(model_config_rewrite(src, out, q), DS_OK, "%s", ds_errmsg());
    a = read_text(out, "config.json");
    cr_expect(strstr(a, "\"rms_norm_eps\": 1e-05,\n  \"quantization_config\": {\n    \"load_in_4bit\": true\n  }\n}\n"),
              "%s", a);
    cr_expect(strstr(a, "\"torch_dtype\": \"float16\""), "the dtype stays with a quantization_config: %s", a);
    free(a);
    ds_remove_tree(src);
    free(src);
    /* a source without one, keys unsorted: it goes last */
    src = model_dir("\"dtype\": \"float32\"", NULL);
    cr_assert_eq(model_config_rewrite(src, out, q), DS_OK, "%s", ds_errmsg());
    a = read_text(out, "config.json");
    cr_expect(strstr(a, "\"dtype\": \"float32\",\n  \"quantization_config\": {"), "%s", a);
    free(a);
    cr_assert_eq(model_config_rewrite(src, out, NULL), DS_OK, "%s", ds_errmsg());
    a = read_text(out, "config.json");
    cr_expect(strstr(a, "\"dtype\": \"bfloat16\"\n}"), "%s", a);
    free(a);
    json_decref(q);
    ds_remove_tree(src);
    ds_remove_tree(out);
    free(src);
    free(out);
}

Test(model_config, rewrite_refuses_a_missing_or_malformed_config)
{
    char *out = tu_tmpdir();
    cr_expect_eq(model_config_rewrite("/nonexistent", out, NULL), DS_ENOINPUT);
    char *src = tu_tmpdir(), *cfg = ds_path_join(src, "config.json");
    const char *bad = "{\n \"a\": }";
    cr_assert_eq(ds_write_file(cfg, bad, strlen(bad)), DS_OK);
    cr_expect_eq(model_config_rewrite(src, out, NULL), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "config.json:2:") && strstr(ds_errmsg(), "invalid JSON"), "%s", ds_errmsg());
    ds_remove_tree(src);
    ds_remove_tree(out);
    free(cfg);
    free(src);
    free(out);
}

Test(model_config, side_files_are_copied_when_present)
{
    static const char *const side[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                       "tokenizer.model", "added_tokens.json", "chat_template.jinja",
                                       "generation_config.json"};
    char *src = tu_tmpdir(), *dst = tu_tmpdir();
    for (int i = 0; i < 7; i++) {
        if (i == 3) continue;   /* tokenizer.model absent: skipped */
        char *p = ds_path_join(src, side[i]);
        cr_assert_eq(ds_write_file(p, side[i], strlen(side[i])), DS_OK);
        free(p);
    }
    char *other = ds_path_join(src, "model.safetensors");
    cr_assert_eq(ds_write_file(other, "x", 1), DS_OK);
    cr_assert_eq(model_copy_side_files(src, dst), DS_OK, "%s", ds_errmsg());
    for (int i = 0; i < 7; i++) {
        char *p = ds_path_join(dst, side[i]);
        cr_expect_eq(ds_exists(p), i != 3, "%s", side[i]);
        if (i != 3) {
            char *text = read_text(dst, side[i]);
            cr_expect_str_eq(text, side[i]);
            free(text);
        }
        free(p);
    }
    char *not_copied = ds_path_join(dst, "model.safetensors");
    cr_expect(!ds_exists(not_copied), "only the side files");
    ds_remove_tree(src);
    ds_remove_tree(dst);
    free(other);
    free(not_copied);
    free(src);
    free(dst);
}
