/* Chat templates: the exact text of every template, where the trained part
 * starts and ends, and that a prompt + reply renders as the conversation
 * does. Rendered with "[...]" around trained text and "<EOS>" for the EOS id. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/dataset/chat_template.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The pieces as one string: trained runs in [ ], EOS as <EOS>. */
static char *marked(const ct_render *r)
{
    size_t n = 1;
    for (int i = 0; i < r->n; i++) n += r->p[i].len + 8;
    char *s = malloc(n), *w = s;
    bool in = false;
    for (int i = 0; i < r->n; i++) {
        if (r->p[i].train != in) {
            *w++ = in ? ']' : '[';
            in = r->p[i].train;
        }
        memcpy(w, r->p[i].text, r->p[i].len);
        w += r->p[i].len;
        if (r->p[i].eos) w += sprintf(w, "<EOS>");
    }
    if (in) *w++ = ']';
    *w = '\0';
    return s;
}

static const chat_template *tmpl(const char *name)
{
    const chat_template *t;
    cr_assert_eq(chat_template_find(name, &t), DS_OK, "%s", ds_errmsg());
    return t;
}

#define MSG(role, text) {role, text, sizeof(text) - 1, NULL, 0}

static const chat_msg convo[] = {
    MSG(CT_SYSTEM, "You are a careful physician."),
    MSG(CT_USER, "What lowers fever?"),
    MSG(CT_ASSISTANT, "Paracetamol."),
    MSG(CT_USER, "And the dose?"),
    MSG(CT_ASSISTANT, "500 mg."),
};

static void expect_chat(const char *name, const chat_msg *m, int n, const char *want, bool bos)
{
    ct_render r = {0};
    cr_assert_eq(ct_render_chat(tmpl(name), m, n, 0, &r), DS_OK, "%s", ds_errmsg());
    char *got = marked(&r);
    cr_expect_str_eq(got, want, "%s:\n got  [%s]\n want [%s]", name, got, want);
    cr_expect_eq(r.bos, bos, "%s: BOS", name);
    free(got);
    ct_render_free(&r);
}

Test(chat_template, names_and_unknown)
{
    cr_expect_str_eq(chat_template_names(), "deepseek|llama3|chatml|alpaca|plain");
    const chat_template *t;
    cr_expect_eq(chat_template_find("vicuna", &t), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "vicuna") && strstr(ds_errmsg(), "deepseek|llama3"), "%s", ds_errmsg());
    cr_expect_eq(chat_template_find(NULL, &t), DS_OK, "no template given = plain");
    cr_expect_str_eq(chat_template_name(t), "plain");
}

Test(chat_template, deepseek)
{
    expect_chat("deepseek", convo, 5,
                "You are a careful physician.\n\nUser: What lowers fever?\n\nAssistant:[ Paracetamol.<EOS>]"
                "User: And the dose?\n\nAssistant:[ 500 mg.<EOS>]",
                true);
}

Test(chat_template, llama3_trims_like_jinja)
{
    static const chat_msg m[] = {
        MSG(CT_SYSTEM, "You are a careful physician."),
        MSG(CT_USER, " \n What lowers fever?\n\u3000"),   /* Jinja's trim strips Unicode spaces too */
        MSG(CT_ASSISTANT, "Paracetamol.\n"),
    };
    expect_chat("llama3", m, 3,
                "<|start_header_id|>system<|end_header_id|>\n\nYou are a careful physician.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nWhat lowers fever?<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n[Paracetamol.<|eot_id|>]",
                true);
}

Test(chat_template, chatml)
{
    expect_chat("chatml", convo, 5,
                "<|im_start|>system\nYou are a careful physician.<|im_end|>\n"
                "<|im_start|>user\nWhat lowers fever?<|im_end|>\n"
                "<|im_start|>assistant\n[Paracetamol.<|im_end|>]\n"
                "<|im_start|>user\nAnd the dose?<|im_end|>\n"
                "<|im_start|>assistant\n[500 mg.<|im_end|>]\n",
                false);
}

Test(chat_template, alpaca_with_and_without_input)
{
    chat_msg m[2] = {MSG(CT_USER, "Name the drug class."), MSG(CT_ASSISTANT, "Beta blockers.")};
    expect_chat("alpaca", m, 2,
                "Below is an instruction that describes a task. Write a response that appropriately completes the "
                "request.\n\n### Instruction:\nName the drug class.\n\n### Response:\n[Beta blockers.<EOS>]",
                false);
    m[0].input = "Metoprolol";
    m[0].input_len = strlen("Metoprolol");
    expect_chat("alpaca", m, 2,
                "Below is an instruction that describes a task, paired with an input that provides further context. "
                "Write a response that appropriately completes the request.\n\n### Instruction:\nName the drug "
                "class.\n\n### Input:\nMetoprolol\n\n### Response:\n[Beta blockers.<EOS>]",
                false);
    /* other templates put the input after the instruction */
    expect_chat("deepseek", m, 2, "User: Name the drug class.\n\nMetoprolol\n\nAssistant:[ Beta blockers.<EOS>]", true);
    m[0].input = "";
    m[0].input_len = 0;
    expect_chat("deepseek", m, 2, "User: Name the drug class.\n\nAssistant:[ Beta blockers.<EOS>]", true);
}

Test(chat_template, alpaca_system_and_turns)
{
    expect_chat("alpaca", convo, 5,
                "You are a careful physician.\n\n### Instruction:\nWhat lowers fever?\n\n### Response:\n"
                "[Paracetamol.<EOS>]\n\n### Instruction:\nAnd the dose?\n\n### Response:\n[500 mg.<EOS>]",
                false);
}

Test(chat_template, plain)
{
    static const chat_msg m[] = {MSG(CT_USER, "2+2="), MSG(CT_ASSISTANT, "4")};
    expect_chat("plain", m, 2, "2+2=[4<EOS>]", false);
}

/* A preference pair's prompt + reply is exactly the conversation. */
Test(chat_template, prompt_plus_reply_is_the_conversation)
{
    static const char *names[] = {"deepseek", "llama3", "chatml", "alpaca", "plain"};
    for (int k = 0; k < 5; k++) {
        const chat_template *t = tmpl(names[k]);
        ct_render whole = {0}, split = {0};
        cr_assert_eq(ct_render_chat(t, convo, 5, 3, &whole), DS_OK);
        cr_assert_eq(ct_render_prompt(t, convo, 4, &split), DS_OK);
        cr_assert_eq(ct_render_reply(t, convo[4].content, convo[4].len, &split), DS_OK);
        char *a = marked(&whole), *b = marked(&split);
        cr_expect_str_eq(a, b, "%s: chat %s vs prompt+reply %s", names[k], a, b);
        /* the first reply was context (context = 3): only the last one is trained */
        cr_expect_eq(strchr(a, '['), strrchr(a, '['), "%s: %s", names[k], a);
        free(a);
        free(b);
        ct_render_free(&whole);
        ct_render_free(&split);
    }
}

Test(chat_template, generation_prompts)
{
    static const chat_msg u[] = {MSG(CT_USER, "Hi")};
    static const struct { const char *name, *want; } cases[] = {
        {"deepseek", "User: Hi\n\nAssistant:"},
        {"llama3", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
        {"chatml", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
        {"plain", "Hi"},
    };
    for (int k = 0; k < 4; k++) {
        ct_render r = {0};
        cr_assert_eq(ct_render_prompt(tmpl(cases[k].name), u, 1, &r), DS_OK);
        char *got = marked(&r);
        cr_expect_str_eq(got, cases[k].want, "%s", cases[k].name);
        free(got);
        ct_render_free(&r);
    }
}

Test(chat_template, raw_continuation_ends_like_a_reply)
{
    static const struct { const char *name, *want; } cases[] = {
        {"deepseek", "Question: q\nAnswer:[ B<EOS>]"},
        {"llama3", "Question: q\nAnswer:[ B<|eot_id|>]"},
        {"chatml", "Question: q\nAnswer:[ B<|im_end|>]"},
        {"alpaca", "Question: q\nAnswer:[ B<EOS>]"},
        {"plain", "Question: q\nAnswer:[ B<EOS>]"},
    };
    for (int k = 0; k < 5; k++) {
        ct_render r = {0};
        cr_assert_eq(ct_render_raw(tmpl(cases[k].name), "Question: q\nAnswer:", 19, " B", 2, &r), DS_OK);
        char *got = marked(&r);
        cr_expect_str_eq(got, cases[k].want, "%s", cases[k].name);
        free(got);
        ct_render_free(&r);
    }
}

/* Our strings are the ones in the models' own chat_template (tokenizer_config.json). */
static char *real_template(const char *rel)
{
    char *path = tu_shared_path(rel), *data;
    size_t len;
    cr_assert_eq(ds_read_file(path, &data, &len), DS_OK, "%s", ds_errmsg());
    json_t *j = json_loadb(data, len, JSON_DECODE_INT_AS_REAL, NULL);   /* llama3: model_max_length 1e30 */
    cr_assert(j);
    char *t = strdup(json_string_value(json_object_get(j, "chat_template")));
    json_decref(j);
    free(data);
    free(path);
    return t;
}

Test(chat_template, strings_match_the_models_templates)
{
    char *l3 = real_template("tokenizers/llama3/tokenizer_config.json");
    cr_expect(strstr(l3, "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>'"),
              "llama3: %s", l3);
    cr_expect(strstr(l3, "bos_token + content"), "llama3 writes BOS itself");
    cr_expect(strstr(l3, "'<|start_header_id|>assistant<|end_header_id|>\n\n'"));
    free(l3);
    char *q3 = real_template("tokenizers/qwen3/tokenizer_config.json");   /* ChatML */
    cr_expect(strstr(q3, "'<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n'"), "chatml");
    cr_expect(strstr(q3, "'<|im_start|>assistant\\n'"), "chatml generation prompt");
    free(q3);
}
