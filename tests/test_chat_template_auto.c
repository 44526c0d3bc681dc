/* tests/test_chat_template_auto.c - data.chat_template "auto": the model's
 * own template found in its folder (chat_template.jinja, tokenizer_config.json
 * as a string or as named templates), the fallback to the built-in plain,
 * exact prompt/completion masking, the refusal of templates whose prompt
 * rendering is not a prefix of the conversation's, and a dataset loaded
 * through the real DeepSeek-V3 tokenizer folder (BOS written once, by the
 * template).
 */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/dataset/dataset_internal.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *template_text(const char *name)
{
    char rel[256], *data;
    size_t n;
    snprintf(rel, sizeof rel, "tests/data/chat_templates/%s.jinja", name);
    char *path = tu_source_path(rel);
    cr_assert_eq(ds_read_file(path, &data, &n), DS_OK, "%s", ds_errmsg());
    free(path);
    return data;
}

/* A model folder whose tokenizer_config.json holds `chat_template` (a JSON
 * value) and the special tokens; with `jinja` also a chat_template.jinja. */
static char *model_dir(json_t *chat_template, const char *bos, const char *eos, const char *jinja)
{
    char *dir = tu_tmpdir();
    json_t *cfg = json_pack("{s:s}", "tokenizer_class", "PreTrainedTokenizerFast");
    if (chat_template) json_object_set_new(cfg, "chat_template", chat_template);
    if (bos) json_object_set_new(cfg, "bos_token", json_pack("{s:s, s:b}", "content", bos, "special", 1));
    if (eos) json_object_set_new(cfg, "eos_token", json_string(eos));
    char *path = ds_path_join(dir, "tokenizer_config.json");
    cr_assert_eq(json_dump_file(cfg, path, 0), 0);
    free(path);
    json_decref(cfg);
    if (jinja) {
        path = ds_path_join(dir, "chat_template.jinja");
        cr_assert_eq(ds_write_file(path, jinja, strlen(jinja)), DS_OK, "%s", ds_errmsg());
        free(path);
    }
    return dir;
}

/* chat_template_open("auto") on a folder holding tests/data/chat_templates/NAME.jinja
 * as tokenizer_config.json's chat_template. */
static const chat_template *open_model(const char *name, const char *bos, const char *eos, char **dir)
{
    char *text = template_text(name);
    *dir = model_dir(json_string(text), bos, eos, NULL);
    free(text);
    const chat_template *t;
    cr_assert_eq(chat_template_open("auto", *dir, &t), DS_OK, "%s", ds_errmsg());
    return t;
}

static const chat_msg CONVO[] = {
    {CT_SYSTEM, "S", 1, NULL, 0}, {CT_USER, "U1", 2, NULL, 0}, {CT_ASSISTANT, "A1", 2, NULL, 0},
    {CT_USER, "U2", 2, NULL, 0}, {CT_ASSISTANT, "A2", 2, NULL, 0}};

static void expect_pieces(const ct_render *r, const char *prompt, const char *completion)
{
    cr_assert_eq(r->n, 2, "%d pieces", r->n);
    cr_expect_str_eq(r->p[0].text, prompt);
    cr_expect_not(r->p[0].train);
    cr_expect_str_eq(r->p[1].text, completion);
    cr_expect(r->p[1].train);
    cr_expect_not(r->p[1].eos, "the template writes its end of turn itself");
    cr_expect(r->own_bos);
}

Test(chat_template_auto, tokenizer_config_template_masks_up_to_the_last_user_turn)
{
    char *text = template_text("qwen2_5");
    char *dir = model_dir(json_string(text), NULL, "<|im_end|>", NULL);
    const chat_template *t;
    cr_assert_eq(chat_template_open("auto", dir, &t), DS_OK, "%s", ds_errmsg());
    cr_expect(strstr(chat_template_about(t), "tokenizer_config.json") != NULL, "%s", chat_template_about(t));
    ct_render r = {0};
    cr_assert_eq(ct_render_chat(t, CONVO, 5, 0, &r), DS_OK, "%s", ds_errmsg());
    expect_pieces(&r,
                  "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                  "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n",
                  "A2<|im_end|>\n");
    ct_render_free(&r);
    /* a given prompt (prompt_completion): the first 3 messages are context even past a user turn */
    chat_msg pc[] = {CONVO[1], CONVO[2]};
    cr_assert_eq(ct_render_chat(t, pc, 2, 1, &r), DS_OK, "%s", ds_errmsg());
    expect_pieces(&r, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                      "<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n", "A1<|im_end|>\n");
    ct_render_free(&r);
    /* DPO: the prompt, then each reply as the template renders it after that prompt */
    cr_assert_eq(ct_render_prompt(t, CONVO, 4, &r), DS_OK);
    cr_expect(r.n == 1 && !r.p[0].train);
    ct_render_free(&r);
    cr_assert_eq(ct_render_answer(t, CONVO, 4, "A2", 2, &r), DS_OK, "%s", ds_errmsg());
    cr_expect(r.n == 1 && r.p[0].train);
    cr_expect_str_eq(r.p[0].text, "A2<|im_end|>\n");
    ct_render_free(&r);
    chat_template_close(t);
    free(text);
    free(dir);
}

Test(chat_template_auto, chat_template_jinja_wins_and_named_templates_take_default)
{
    json_t *named = json_pack("[{s:s, s:s}, {s:s, s:s}]", "name", "tool_use", "template", "TOOLS",
                              "name", "default", "template", "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}");
    char *dir = model_dir(named, "<s>", "</s>", NULL);
    const chat_template *t;
    cr_assert_eq(chat_template_open("auto", dir, &t), DS_OK, "%s", ds_errmsg());
    ct_render r = {0};
    cr_assert_eq(ct_render_prompt(t, CONVO + 1, 1, &r), DS_OK, "%s", ds_errmsg());
    cr_expect_str_eq(r.p[0].text, "<s>[U1]");
    ct_render_free(&r);
    chat_template_close(t);
    free(dir);
    dir = model_dir(json_string("config"), NULL, NULL, "file {{ messages | length }}\n");
    cr_assert_eq(chat_template_open("auto", dir, &t), DS_OK, "%s", ds_errmsg());
    cr_expect(strstr(chat_template_about(t), "chat_template.jinja") != NULL, "%s", chat_template_about(t));
    cr_assert_eq(ct_render_prompt(t, CONVO, 2, &r), DS_OK, "%s", ds_errmsg());
    cr_expect_str_eq(r.p[0].text, "file 2");
    ct_render_free(&r);
    chat_template_close(t);
    free(dir);
}

Test(chat_template_auto, no_template_falls_back_to_plain_and_says_so)
{
    char *dir = model_dir(NULL, NULL, NULL, NULL);
    const chat_template *t;
    cr_assert_eq(chat_template_open("auto", dir, &t), DS_OK, "%s", ds_errmsg());
    cr_expect(strstr(chat_template_about(t), "built-in plain") && strstr(chat_template_about(t), "has no chat template"),
              "%s", chat_template_about(t));
    cr_expect_str_eq(chat_template_key(t), "plain", "the same token cache as plain");
    chat_template_close(t);
    cr_assert_eq(chat_template_open("chatml", dir, &t), DS_OK);
    cr_expect_str_eq(chat_template_about(t), "built-in chatml");
    chat_template_close(t);
    cr_expect_eq(chat_template_open("vicuna", dir, &t), DS_ECONFIG);
    free(dir);
}

Test(chat_template_auto, malformed_templates_are_refused_naming_the_file)
{
    char *dir = model_dir(json_string("{% for m in messages %}"), NULL, NULL, NULL);
    const chat_template *t;
    cr_expect_eq(chat_template_open("auto", dir, &t), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "tokenizer_config.json:1:") && strstr(ds_errmsg(), "endfor"), "%s", ds_errmsg());
    free(dir);
    dir = model_dir(json_pack("[{s:s, s:s}]", "name", "rag", "template", "x"), NULL, NULL, NULL);
    cr_expect_eq(chat_template_open("auto", dir, &t), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "\"default\"") != NULL, "%s", ds_errmsg());
    free(dir);
}

/* Templates whose prompt (add_generation_prompt=true) is not where the
 * conversation's rendering continues cannot be masked exactly: refused. */
Test(chat_template_auto, prefix_violations_are_refused_naming_the_template)
{
    /* Mistral v0.3 puts the system prompt into the last user turn only */
    char *dir;
    const chat_template *t = open_model("mistral_v0_3", "<s>", "</s>", &dir);
    ct_render r = {0};
    cr_expect_eq(ct_render_chat(t, CONVO + 1, 4, 0, &r), DS_OK, "without a system prompt it is a prefix: %s", ds_errmsg());
    cr_expect_str_eq(r.p[1].text, " A2</s>");
    ct_render_free(&r);
    cr_expect_eq(ct_render_chat(t, CONVO, 5, 0, &r), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "tokenizer_config.json") && strstr(ds_errmsg(), "not the start"), "%s", ds_errmsg());
    ct_render_free(&r);
    chat_template_close(t);
    free(dir);
}

/* DeepSeek-R1's generation prompt opens "<think>\n" and its rendering of a reply
 * drops the reasoning: the reply is trained as written (its "<think>\n" not
 * repeated), then the template's end of turn; earlier turns still need the prefix. */
Test(chat_template_auto, reasoning_templates_train_the_reply_as_written)
{
    char *dir;
    const chat_template *t = open_model("deepseek_r1_distill_qwen", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                                        &dir);
    static const char reply[] = "<think>\nThe dose is 5 mg.\n</think>\n\nFive milligrams.";
    chat_msg convo[] = {{.role = CT_USER, .content = "What dose?", .len = 10},
                        {.role = CT_ASSISTANT, .content = reply, .len = sizeof reply - 1}};
    ct_render r = {0};
    cr_assert_eq(ct_render_chat(t, convo, 2, 0, &r), DS_OK, "%s", ds_errmsg());
    cr_expect(!r.p[0].train && r.p[1].train);
    cr_expect_str_eq(r.p[0].text, "<｜begin▁of▁sentence｜><｜User｜>What dose?<｜Assistant｜><think>\n");
    cr_expect_str_eq(r.p[1].text, "The dose is 5 mg.\n</think>\n\nFive milligrams.<｜end▁of▁sentence｜>");
    ct_render_free(&r);
    chat_template_close(t);
    free(dir);
}

Test(chat_template_auto, raise_exception_is_a_data_error)
{
    char *dir;
    const chat_template *t = open_model("mistral_v0_3", "<s>", "</s>", &dir);
    chat_msg two_users[] = {CONVO[1], CONVO[3], CONVO[4]};
    ct_render r = {0};
    cr_expect_eq(ct_render_chat(t, two_users, 3, 0, &r), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "conversation roles must alternate") != NULL, "%s", ds_errmsg());
    ct_render_free(&r);
    chat_template_close(t);
    free(dir);
}

/* The real DeepSeek-V3 tokenizer folder: its template writes
 * <｜begin▁of▁sentence｜> itself, so the loader adds no second BOS, and the
 * ids are the joint encoding of the template's text. */
Test(chat_template_auto, dataset_through_the_real_deepseek_v3_folder)
{
    char *tokdir = tu_shared_path("tokenizers/deepseek_v3");
    tokenizer *tok = tu_tokenizer("tokenizers/deepseek_v3");
    char *path = tu_dataset_path("messages.jsonl");
    data_source src = {path, "messages", NULL, -1, 0, NULL, NULL};
    data_options o = {.chat_template = "auto", .sequence_len = 4096, .template_dir = tokdir};
    dataset d;
    cr_assert_eq(dataset_load(&src, 1, EX_SFT, tok, &o, &d), DS_OK, "%s", ds_errmsg());
    const sft_example *x = &d.sft[0];
    cr_expect_eq(x->ids[0], tok_bos_id(tok));
    cr_expect_neq(x->ids[1], tok_bos_id(tok), "BOS once");
    const char *full = "<｜begin▁of▁sentence｜>You are a careful physician.<｜User｜>What lowers fever?<｜Assistant｜>"
                       "Paracetamol.<｜end▁of▁sentence｜><｜User｜>And the dose?<｜Assistant｜>500 mg every 6 hours."
                       "<｜end▁of▁sentence｜>";
    tok_ids joint = {0};
    cr_assert_eq(tok_encode(tok, full, strlen(full), false, &joint), DS_OK);
    cr_assert_eq((int)joint.n, x->n, "the joint encoding has %zu tokens, the loader %d", joint.n, x->n);
    int first_trained = -1;
    for (int i = 0; i < x->n; i++) {
        cr_expect_eq(x->ids[i], joint.ids[i], "token %d", i);
        if (x->train[i] && first_trained < 0) first_trained = i;
        if (first_trained >= 0) cr_expect(x->train[i], "the completion is one trained run");
    }
    char *completion;
    cr_assert_eq(tok_decode(tok, x->ids + first_trained, (size_t)(x->n - first_trained), false, &completion), DS_OK);
    cr_expect_str_eq(completion, "500 mg every 6 hours.<｜end▁of▁sentence｜>");
    /* the cache key follows the template: auto differs from the built-in deepseek */
    char k_auto[65], k_builtin[65];
    cr_assert_eq(dataset_cache_key(&src, 1, EX_SFT, tok, &o, k_auto), DS_OK, "%s", ds_errmsg());
    o.chat_template = "deepseek";
    cr_assert_eq(dataset_cache_key(&src, 1, EX_SFT, tok, &o, k_builtin), DS_OK);
    cr_expect_str_neq(k_auto, k_builtin);
    free(completion);
    tok_ids_free(&joint);
    dataset_free(&d);
    free(path);
    free(tokdir);
}
