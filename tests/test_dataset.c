/* Datasets: every type through every template, checked twice - the rendered
 * text runs (exact strings, which part is trained, where EOS goes) and the
 * loaded ids/mask, whose expectation is built from tok_encode of those same
 * strings plus the BOS/EOS ids, with the real DeepSeek-V3, Llama-3 and
 * Qwen3 tokenizers and the tiny fixture; then truncation and the options.
 * The reader and bad input are in test_dataset_input.c. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/dataset/dataset_internal.h"
#include "data/jsonl.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

#define TINY "fixtures/tiny-llama"
#define DSV3 "tokenizers/deepseek_v3"
#define LLAMA3 "tokenizers/llama3"
#define QWEN3 "tokenizers/qwen3"

static data_options opts(const char *tmpl, int seq_len)
{
    data_options o = {tmpl, seq_len, false, false, NULL, NULL, NULL, 0};
    return o;
}

/* One template run as the loader encodes it: a string, trained or not,
 * followed by EOS or not. */
typedef struct {
    const char *text;
    int train, eos;
} run;
#define P(t) {t, 0, 0}
#define C(t) {t, 1, 0}
#define CE(t) {t, 1, 1}
#define END {NULL, 0, 0}

/* The record at `index` of a file rendered as runs (pieces joined as the
 * loader joins them before encoding) compared with `want`. */
static void expect_runs(const ct_render *r, const run *want, const char *what)
{
    int k = 0;
    for (int i = 0; i < r->n;) {
        bool train = r->p[i].train;
        char buf[4096] = "";
        int j = i;
        for (;;) {
            strncat(buf, r->p[j].text, sizeof buf - strlen(buf) - 1);
            if (r->p[j].eos || j + 1 == r->n || r->p[j + 1].train != train) break;
            j++;
        }
        cr_assert(want[k].text, "%s: extra run \"%s\"", what, buf);
        cr_expect_str_eq(buf, want[k].text, "%s: run %d\n got  \"%s\"\n want \"%s\"", what, k, buf, want[k].text);
        cr_expect_eq(train, want[k].train, "%s: run %d trained", what, k);
        cr_expect_eq(r->p[j].eos, want[k].eos, "%s: run %d EOS", what, k);
        k++;
        i = j + 1;
    }
    cr_expect_null(want[k].text, "%s: run %d \"%s\" missing", what, k, want[k].text);
}

static void render_nth(const char *file, const char *type, const char *fmt, const char *tmpl, example_kind kind,
                       int index, ds_rendered *out, int *line)
{
    char *path = tu_dataset_path(file);
    data_source src = {path, (char *)type, (char *)fmt, -1, 0, NULL, NULL};
    ds_type t;
    bool cloze;
    cr_assert_eq(ds_source_type(&src, kind, &t, &cloze), DS_OK, "%s", ds_errmsg());
    const chat_template *ct;
    cr_assert_eq(chat_template_find(tmpl, &ct), DS_OK);
    jsonl_reader *r;
    cr_assert_eq(jsonl_open(path, 0, &r), DS_OK, "%s", ds_errmsg());
    json_t *obj = NULL;
    for (int i = 0; i <= index; i++) {
        if (obj) json_decref(obj);
        cr_assert_eq(jsonl_next(r, &obj, line), DS_OK, "%s", ds_errmsg());
        cr_assert(obj, "%s has no record %d", file, index);
    }
    ds_render_ctx ctx = {t, cloze, ct, kind, path, 0};
    cr_assert_eq(ds_render_record(&ctx, obj, *line, out), DS_OK, "%s", ds_errmsg());
    json_decref(obj);
    jsonl_close(r);
    free(path);
}

/* Expected ids and mask: [BOS] + tok_encode(run) for each run [+ EOS]. */
typedef struct {
    int32_t ids[4096];
    uint8_t train[4096];
    int n;
} expect_seq;

static void build(const tokenizer *tok, bool bos, const run *runs, expect_seq *e)
{
    e->n = 0;
    if (bos) {
        e->ids[e->n] = tok_bos_id(tok);
        e->train[e->n++] = 0;
    }
    for (int k = 0; runs[k].text; k++) {
        tok_ids v = {0};
        cr_assert_eq(tok_encode(tok, runs[k].text, strlen(runs[k].text), false, &v), DS_OK, "%s", ds_errmsg());
        for (size_t i = 0; i < v.n; i++) {
            e->ids[e->n] = v.ids[i];
            e->train[e->n++] = (uint8_t)runs[k].train;
        }
        tok_ids_free(&v);
        if (runs[k].eos) {
            e->ids[e->n] = tok_eos_id(tok);
            e->train[e->n++] = (uint8_t)runs[k].train;
        }
    }
}

static void expect_ids(const int32_t *ids, const uint8_t *train, int n, const expect_seq *e, const char *what)
{
    cr_assert_eq(n, e->n, "%s: %d tokens, expected %d", what, n, e->n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(ids[i], e->ids[i], "%s: id %d is %d, expected %d", what, i, ids[i], e->ids[i]);
        if (train) cr_assert_eq(train[i], e->train[i], "%s: mask %d is %d, expected %d", what, i, train[i], e->train[i]);
    }
}

/* The whole conversation as the model's Jinja template renders it (BOS/EOS
 * written as their token strings), encoded in one go - what HF's
 * apply_chat_template(..., tokenize=True) gives - equals the loader's ids:
 * encoding the pieces separately moved no token boundary. */
static void expect_joint(const tokenizer *tok, const char *full, const int32_t *ids, int n, const char *what)
{
    tok_ids v = {0};
    cr_assert_eq(tok_encode(tok, full, strlen(full), false, &v), DS_OK, "%s", ds_errmsg());
    cr_assert_eq((int)v.n, n, "%s: the joint encoding has %zu tokens, the loader %d", what, v.n, n);
    for (int i = 0; i < n; i++) cr_assert_eq(v.ids[i], ids[i], "%s: token %d", what, i);
    tok_ids_free(&v);
}

static void load(const char *file, const char *type, const char *fmt, const tokenizer *tok, example_kind kind,
                 const data_options *o, dataset *d)
{
    char *path = tu_dataset_path(file);
    data_source src = {path, (char *)type, (char *)fmt, -1, 0, NULL, NULL};
    cr_assert_eq(dataset_load(&src, 1, kind, tok, o, d), DS_OK, "%s", ds_errmsg());
    free(path);
}

/* Render record `index` and check its runs, then load the file and check
 * example `index`'s ids and mask. */
static void golden_sft(const char *tokdir, const char *file, const char *type, const char *fmt, const char *tmpl,
                       int index, bool bos, const run *want)
{
    char what[256];
    snprintf(what, sizeof what, "%s/%s/%s #%d", file, tmpl, tokdir, index);
    ds_rendered rd;
    int line;
    render_nth(file, type, fmt, tmpl, EX_SFT, index, &rd, &line);
    expect_runs(&rd.seq, want, what);
    ds_rendered_free(&rd);
    tokenizer *tok = tu_tokenizer(tokdir);
    data_options o = opts(tmpl, 4096);
    dataset d;
    load(file, type, fmt, tok, EX_SFT, &o, &d);
    cr_assert_gt(d.n, index);
    expect_seq e;
    build(tok, bos, want, &e);
    expect_ids(d.sft[index].ids, d.sft[index].train, d.sft[index].n, &e, what);
    dataset_free(&d);
}

#define ALPACA_PRE "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
#define ALPACA_PRE_INPUT "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n"

/* ---- every type, every template ---- */

Test(golden, alpaca_with_alpaca_template)
{
    static const run r0[] = {P(ALPACA_PRE "### Instruction:\nGive the normal adult resting heart rate.\n\n### Response:\n"),
                             CE("60 to 100 beats per minute."), END};
    static const run r1[] = {P(ALPACA_PRE_INPUT "### Instruction:\nClassify the drug.\n\n### Input:\nMetoprolol\n\n### Response:\n"),
                             CE("A beta blocker."), END};
    golden_sft(TINY, "alpaca.jsonl", "alpaca", NULL, "alpaca", 0, true, r0);
    golden_sft(TINY, "alpaca.jsonl", "alpaca", NULL, "alpaca", 1, true, r1);
    golden_sft(DSV3, "alpaca.jsonl", "alpaca", NULL, "alpaca", 1, true, r1);
}

Test(golden, alpaca_with_deepseek_template)
{
    static const run r0[] = {P("User: Give the normal adult resting heart rate.\n\nAssistant:"),
                             CE(" 60 to 100 beats per minute."), END};
    static const run r1[] = {P("User: Classify the drug.\n\nMetoprolol\n\nAssistant:"), CE(" A beta blocker."), END};
    golden_sft(DSV3, "alpaca.jsonl", "alpaca", NULL, "deepseek", 0, true, r0);
    golden_sft(DSV3, "alpaca.jsonl", "alpaca", NULL, "deepseek", 1, true, r1);
}

static const run msg_deepseek[] = {
    P("You are a careful physician.\n\nUser: What lowers fever?\n\nAssistant:"), CE(" Paracetamol."),
    P("User: And the dose?\n\nAssistant:"), CE(" 500 mg every 6 hours."), END};

Test(golden, messages_deepseek)
{
    golden_sft(DSV3, "messages.jsonl", "messages", NULL, "deepseek", 0, true, msg_deepseek);
    /* the real ids: BOS <｜begin▁of▁sentence｜> = 0 first, EOS = 1 after each reply */
    tokenizer *tok = tu_tokenizer(DSV3);
    data_options o = opts("deepseek", 4096);
    dataset d;
    load("messages.jsonl", "messages", NULL, tok, EX_SFT, &o, &d);
    cr_expect_eq(d.sft[0].ids[0], 0);
    cr_expect_eq(d.sft[0].ids[d.sft[0].n - 1], 1);
    char *text;
    cr_assert_eq(tok_decode(tok, d.sft[0].ids, d.sft[0].n, false, &text), DS_OK);
    const char *hf = "<｜begin▁of▁sentence｜>You are a careful physician.\n\nUser: What lowers fever?\n\n"
                     "Assistant: Paracetamol.<｜end▁of▁sentence｜>User: And the dose?\n\n"
                     "Assistant: 500 mg every 6 hours.<｜end▁of▁sentence｜>";
    cr_expect_str_eq(text, hf, "the text HF's deepseek-llm chat_template renders");
    expect_joint(tok, hf, d.sft[0].ids, d.sft[0].n, "deepseek");
    free(text);
    dataset_free(&d);
}

Test(golden, messages_llama3)
{
    static const run want[] = {
        P("<|start_header_id|>system<|end_header_id|>\n\nYou are a careful physician.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nWhat lowers fever?<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n"),
        C("Paracetamol.<|eot_id|>"),
        P("<|start_header_id|>user<|end_header_id|>\n\nAnd the dose?<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n"),
        C("500 mg every 6 hours.<|eot_id|>"), END};
    golden_sft(LLAMA3, "messages.jsonl", "messages", NULL, "llama3", 0, true, want);
    tokenizer *tok = tu_tokenizer(LLAMA3);
    data_options o = opts("llama3", 4096);
    dataset d;
    load("messages.jsonl", "messages", NULL, tok, EX_SFT, &o, &d);
    cr_expect_eq(d.sft[0].ids[0], 128000, "<|begin_of_text|> as the template writes it");
    cr_expect_eq(d.sft[0].ids[1], 128006, "<|start_header_id|> is one special token");
    cr_expect_eq(d.sft[0].ids[d.sft[0].n - 1], 128009, "<|eot_id|> ends the reply and is trained");
    cr_expect_eq(d.sft[0].train[d.sft[0].n - 1], 1);
    expect_joint(tok,
                 "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a careful physician.<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nWhat lowers fever?<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\nParacetamol.<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nAnd the dose?<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n500 mg every 6 hours.<|eot_id|>",
                 d.sft[0].ids, d.sft[0].n, "llama3");
    dataset_free(&d);
}

Test(golden, messages_chatml)
{
    static const run want[] = {
        P("<|im_start|>system\nYou are a careful physician.<|im_end|>\n<|im_start|>user\nWhat lowers fever?<|im_end|>\n"
          "<|im_start|>assistant\n"),
        C("Paracetamol.<|im_end|>"),
        P("\n<|im_start|>user\nAnd the dose?<|im_end|>\n<|im_start|>assistant\n"),
        C("500 mg every 6 hours.<|im_end|>"), P("\n"), END};
    golden_sft(QWEN3, "messages.jsonl", "messages", NULL, "chatml", 0, false, want);
    tokenizer *tok = tu_tokenizer(QWEN3);
    data_options o = opts("chatml", 4096);
    dataset d;
    load("messages.jsonl", "messages", NULL, tok, EX_SFT, &o, &d);
    cr_expect_eq(d.sft[0].ids[0], 151644, "no BOS for Qwen: <|im_start|> first");
    cr_expect_eq(d.sft[0].ids[d.sft[0].n - 2], 151645, "<|im_end|> trained, the newline after it not");
    cr_expect_eq(d.sft[0].train[d.sft[0].n - 2], 1);
    cr_expect_eq(d.sft[0].train[d.sft[0].n - 1], 0);
    expect_joint(tok,
                 "<|im_start|>system\nYou are a careful physician.<|im_end|>\n<|im_start|>user\nWhat lowers fever?<|im_end|>\n"
                 "<|im_start|>assistant\nParacetamol.<|im_end|>\n<|im_start|>user\nAnd the dose?<|im_end|>\n"
                 "<|im_start|>assistant\n500 mg every 6 hours.<|im_end|>\n",
                 d.sft[0].ids, d.sft[0].n, "chatml");
    dataset_free(&d);
}

Test(golden, messages_alpaca_and_plain)
{
    static const run alp[] = {
        P("You are a careful physician.\n\n### Instruction:\nWhat lowers fever?\n\n### Response:\n"), CE("Paracetamol."),
        P("\n\n### Instruction:\nAnd the dose?\n\n### Response:\n"), CE("500 mg every 6 hours."), END};
    static const run plain[] = {P("You are a careful physician.What lowers fever?"), CE("Paracetamol."),
                                P("And the dose?"), CE("500 mg every 6 hours."), END};
    golden_sft(TINY, "messages.jsonl", "messages", NULL, "alpaca", 0, true, alp);
    golden_sft(TINY, "messages.jsonl", "messages", NULL, "plain", 0, true, plain);
}

Test(golden, prompt_completion)
{
    static const run plain0[] = {P("The first-line drug for type 2 diabetes is"), CE(" metformin."), END};
    static const run plain1[] = {P("Spell 'cat'."), CE("C-A-T"), END};
    static const run ds1[] = {P("User: Spell 'cat'.\n\nAssistant:"), CE(" C-A-T"), END};
    static const run ml0[] = {P("<|im_start|>user\nThe first-line drug for type 2 diabetes is<|im_end|>\n<|im_start|>assistant\n"),
                              C(" metformin.<|im_end|>"), P("\n"), END};
    golden_sft(TINY, "prompt_completion.jsonl", "prompt_completion", NULL, "plain", 0, true, plain0);
    golden_sft(TINY, "prompt_completion.jsonl", "prompt_completion", NULL, "plain", 1, true, plain1);
    golden_sft(DSV3, "prompt_completion.jsonl", "prompt_completion", NULL, "deepseek", 1, true, ds1);
    golden_sft(QWEN3, "prompt_completion.jsonl", "prompt_completion", NULL, "chatml", 0, false, ml0);
}

Test(golden, text_trains_every_token)
{
    static const run t0[] = {CE("Aspirin irreversibly inhibits cyclooxygenase."), END};
    static const run t1[] = {CE("Héparine: anticoagulant (résumé) — 肝素"), END};
    golden_sft(TINY, "text.jsonl", "text", NULL, "plain", 0, true, t0);
    golden_sft(DSV3, "text.jsonl", "text", NULL, "deepseek", 1, true, t1);
    /* a text record ignores the template's roles */
    golden_sft(QWEN3, "text.jsonl", "text", NULL, "chatml", 0, false, t0);
}

/* ---- preference ---- */

static void golden_pref(const char *tokdir, const char *tmpl, int index, bool bos, const run *prompt, const run *chosen,
                        const run *rejected)
{
    char what[128];
    snprintf(what, sizeof what, "preference/%s #%d", tmpl, index);
    ds_rendered rd;
    int line;
    render_nth("preference.jsonl", "preference", NULL, tmpl, EX_PREF, index, &rd, &line);
    expect_runs(&rd.prompt, prompt, what);
    expect_runs(&rd.chosen, chosen, what);
    expect_runs(&rd.rejected, rejected, what);
    ds_rendered_free(&rd);
    tokenizer *tok = tu_tokenizer(tokdir);
    data_options o = opts(tmpl, 4096);
    dataset d;
    load("preference.jsonl", "preference", NULL, tok, EX_PREF, &o, &d);
    cr_assert_eq(d.kind, EX_PREF);
    cr_assert_eq(d.n, 3);
    const pref_example *x = &d.pref[index];
    expect_seq e;
    build(tok, bos, prompt, &e);
    expect_ids(x->prompt, NULL, x->n_prompt, &e, what);
    build(tok, false, chosen, &e);
    expect_ids(x->chosen, NULL, x->n_chosen, &e, what);
    build(tok, false, rejected, &e);
    expect_ids(x->rejected, NULL, x->n_rejected, &e, what);
    dataset_free(&d);
}

Test(golden, preference_deepseek_all_three_forms)
{
    static const run p0[] = {P("User: Is the sky blue on a clear day?\n\nAssistant:"), END};
    static const run c0[] = {CE(" Yes."), END}, r0[] = {CE(" No, it is green."), END};
    static const run p1[] = {P("User: What is 2+2?\n\nAssistant:"), END};
    static const run c1[] = {CE(" 4"), END}, r1[] = {CE(" 5"), END};
    static const run p2[] = {P("User: Hi\n\nAssistant:"), END};   /* implicit prompt: the shared messages */
    static const run c2[] = {CE(" Hello! How can I help?"), END}, r2[] = {CE(" Go away."), END};
    golden_pref(DSV3, "deepseek", 0, true, p0, c0, r0);
    golden_pref(DSV3, "deepseek", 1, true, p1, c1, r1);
    golden_pref(DSV3, "deepseek", 2, true, p2, c2, r2);
}

Test(golden, preference_chatml_reply_ends_with_im_end)
{
    static const run p0[] = {P("<|im_start|>user\nIs the sky blue on a clear day?<|im_end|>\n<|im_start|>assistant\n"), END};
    static const run c0[] = {C("Yes.<|im_end|>"), END}, r0[] = {C("No, it is green.<|im_end|>"), END};
    golden_pref(QWEN3, "chatml", 0, false, p0, c0, r0);
}

Test(golden, preference_as_sft_trains_the_chosen_reply)
{
    static const run want[] = {P("User: Is the sky blue on a clear day?\n\nAssistant:"), CE(" Yes."), END};
    golden_sft(DSV3, "preference.jsonl", "preference", NULL, "deepseek", 0, true, want);
}

/* ---- mcq ---- */

static void golden_mcq(const char *file, const char *fmt, int index, const char *prompt, int nchoices,
                       const char *const *choices, int answer)
{
    char what[128];
    snprintf(what, sizeof what, "%s/%s #%d", file, fmt, index);
    ds_rendered rd;
    int line;
    render_nth(file, "mcq", fmt, "deepseek", EX_MCQ, index, &rd, &line);
    run pr[] = {P(prompt), END};
    expect_runs(&rd.prompt, pr, what);
    cr_assert_eq(rd.nchoices, nchoices, "%s", what);
    cr_expect_eq(rd.answer, answer, "%s", what);
    for (int i = 0; i < nchoices; i++) cr_expect_str_eq(rd.choice[i], choices[i], "%s choice %d", what, i);
    ds_rendered_free(&rd);

    tokenizer *tok = tu_tokenizer(DSV3);
    data_options o = opts("deepseek", 4096);
    dataset d;
    load(file, "mcq", fmt, tok, EX_MCQ, &o, &d);
    const mcq_example *x = &d.mcq[index];
    expect_seq e;
    build(tok, true, pr, &e);
    expect_ids(x->prompt, NULL, x->n_prompt, &e, what);
    cr_assert_eq(x->nchoices, nchoices);
    cr_expect_eq(x->answer, answer);
    for (int i = 0; i < nchoices; i++) {
        run c[] = {C(choices[i]), END};
        build(tok, false, c, &e);
        expect_ids(x->choice[i], NULL, x->n_choice[i], &e, what);
        cr_expect_str_eq(x->choice_text[i], choices[i]);
    }
    dataset_free(&d);

    /* as SFT: prompt + the right continuation + EOS */
    o = opts("deepseek", 4096);
    load(file, "mcq", fmt, tok, EX_SFT, &o, &d);
    run sft[] = {P(prompt), CE(choices[answer]), END};
    build(tok, true, sft, &e);
    expect_ids(d.sft[index].ids, d.sft[index].train, d.sft[index].n, &e, what);
    dataset_free(&d);
}

static const char *const LETTERS4[] = {" A", " B", " C", " D"};

Test(golden, mcq_generic_letters_and_cloze)
{
    golden_mcq("mcq.jsonl", "letters", 0,
               "Question: Which vitamin deficiency causes scurvy?\nA. Vitamin A\nB. Vitamin B12\nC. Vitamin C\nD. Vitamin D\nAnswer:",
               4, LETTERS4, 2);
    static const char *const cloze[] = {" Vitamin A", " Vitamin B12", " Vitamin C", " Vitamin D"};
    golden_mcq("mcq.jsonl", "cloze", 0, "Question: Which vitamin deficiency causes scurvy?\nAnswer:", 4, cloze, 2);
    static const char *const l3[] = {" A", " B", " C"};
    golden_mcq("mcq.jsonl", NULL, 1, "Question: Which organ produces insulin?\nA. Liver\nB. Pancreas\nC. Kidney\nAnswer:",
               3, l3, 1);
}

Test(golden, mcq_medmcqa_letters_and_cloze)
{
    golden_mcq("medmcqa.jsonl", "letters", 0,
               "Question: Which nerve supplies the diaphragm?\nA. Vagus\nB. Phrenic\nC. Intercostal\nD. Accessory\nAnswer:",
               4, LETTERS4, 1);
    static const char *const cloze[] = {" Adrenaline", " Atropine", " Dopamine", " Digoxin"};
    golden_mcq("medmcqa.jsonl", "cloze", 1, "Question: Drug of choice for anaphylaxis?\nAnswer:", 4, cloze, 0);
}

Test(golden, mcq_medqa_letters_and_cloze)
{
    static const char *const l5[] = {" A", " B", " C", " D", " E"};
    const char *q = "A 30-year-old has a unilateral throbbing headache with nausea and photophobia lasting a day. "
                    "Which is the most likely diagnosis?";
    char *letters = ds_strdupf("Question: %s\nA. Cluster headache\nB. Migraine\nC. Tension-type headache\nD. Sinusitis\n"
                               "E. Subarachnoid haemorrhage\nAnswer:", q);
    golden_mcq("medqa.jsonl", "letters", 0, letters, 5, l5, 1);
    static const char *const cloze[] = {" Cluster headache", " Migraine", " Tension-type headache", " Sinusitis",
                                        " Subarachnoid haemorrhage"};
    char *cl = ds_strdupf("Question: %s\nAnswer:", q);
    golden_mcq("medqa.jsonl", "cloze", 0, cl, 5, cloze, 1);
    free(letters);
    free(cl);
}

Test(golden, mcq_sft_with_llama3_ends_with_eot)
{
    static const run want[] = {
        P("Question: Which organ produces insulin?\nA. Liver\nB. Pancreas\nC. Kidney\nAnswer:"), C(" B<|eot_id|>"), END};
    golden_sft(LLAMA3, "mcq.jsonl", "mcq", NULL, "llama3", 1, true, want);
}

/* ---- options ---- */

Test(options, train_on_inputs_trains_the_prompt)
{
    tokenizer *tok = tu_tokenizer(DSV3);
    data_options o = opts("deepseek", 4096);
    o.train_on_inputs = true;
    dataset d;
    load("alpaca.jsonl", "alpaca", NULL, tok, EX_SFT, &o, &d);
    cr_expect_eq(d.sft[0].train[0], 0, "BOS predicts nothing");
    for (int i = 1; i < d.sft[0].n; i++) cr_expect_eq(d.sft[0].train[i], 1);
    dataset_free(&d);
}

Test(options, truncation_keeps_the_start_and_drops_empty)
{
    tokenizer *tok = tu_tokenizer(DSV3);
    data_options full = opts("deepseek", 4096);
    dataset a, b;
    load("alpaca.jsonl", "alpaca", NULL, tok, EX_SFT, &full, &a);
    int n0 = a.sft[0].n, p0 = 0;
    while (!a.sft[0].train[p0]) p0++;                /* the first trained token */
    data_options cut = opts("deepseek", p0 + 2);
    load("alpaca.jsonl", "alpaca", NULL, tok, EX_SFT, &cut, &b);
    cr_expect_eq(b.truncated, 2);
    cr_assert_geq(b.n, 1);
    cr_expect_eq(b.sft[0].n, p0 + 2);
    cr_expect(memcmp(b.sft[0].ids, a.sft[0].ids, (size_t)(p0 + 2) * 4) == 0, "the start is kept");
    cr_expect_lt(p0 + 2, n0);
    dataset_free(&b);

    /* nothing trained left: dropped and counted; all dropped = a clear error */
    int p1 = 0;
    while (!a.sft[1].train[p1]) p1++;
    data_options one = opts("deepseek", p0 > p1 ? p0 : p1);   /* the example with the longer prompt loses all */
    load("alpaca.jsonl", "alpaca", NULL, tok, EX_SFT, &one, &b);
    cr_expect_eq(b.n, 1);
    cr_expect_eq(b.dropped, 1);
    dataset_free(&b);
    data_options tiny = opts("deepseek", p0 < p1 ? p0 : p1);
    char *path = tu_dataset_path("alpaca.jsonl");
    data_source src = {path, "alpaca", NULL, -1, 0, NULL, NULL};
    cr_expect_eq(dataset_load(&src, 1, EX_SFT, tok, &tiny, &b), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "no completion tokens left after truncation to sequence_len"), "%s", ds_errmsg());
    free(path);
    dataset_free(&a);
}

Test(options, preference_prompt_cut_from_the_left)
{
    tokenizer *tok = tu_tokenizer(DSV3);
    data_options full = opts("deepseek", 4096);
    dataset a, b;
    load("preference.jsonl", "preference", NULL, tok, EX_PREF, &full, &a);
    const pref_example *x = &a.pref[0];
    int longer = x->n_chosen > x->n_rejected ? x->n_chosen : x->n_rejected;
    data_options cut = opts("deepseek", longer + 4);
    load("preference.jsonl", "preference", NULL, tok, EX_PREF, &cut, &b);
    const pref_example *y = &b.pref[0];
    cr_expect_geq(b.truncated, 1);
    cr_assert_eq(y->n_prompt, 4);
    cr_expect_eq(y->prompt[0], 0, "BOS kept");
    cr_expect(memcmp(y->prompt + 1, x->prompt + x->n_prompt - 3, 3 * 4) == 0, "the end of the prompt kept");
    cr_expect_eq(y->n_chosen, x->n_chosen);
    cr_expect_eq(y->n_rejected, x->n_rejected);
    dataset_free(&a);
    dataset_free(&b);
}

Test(options, mcq_prompt_cut_from_the_left)
{
    tokenizer *tok = tu_tokenizer(DSV3);
    data_options full = opts("deepseek", 4096);
    dataset a, b;
    load("medqa.jsonl", "mcq", "cloze", tok, EX_MCQ, &full, &a);
    data_options cut = opts("deepseek", 16);
    load("medqa.jsonl", "mcq", "cloze", tok, EX_MCQ, &cut, &b);
    const mcq_example *x = &a.mcq[0], *y = &b.mcq[0];
    int longest = 0;
    for (int i = 0; i < y->nchoices; i++) longest = y->n_choice[i] > longest ? y->n_choice[i] : longest;
    cr_expect_eq(b.truncated, 1);
    cr_expect_eq(y->n_prompt + longest, 16);
    cr_expect_eq(y->prompt[0], 0);
    cr_expect_eq(y->prompt[y->n_prompt - 1], x->prompt[x->n_prompt - 1], "ends with \"Answer:\" still");
    dataset_free(&a);
    dataset_free(&b);
}

Test(options, limit_and_several_sources)
{
    tokenizer *tok = tu_tokenizer(TINY);
    char *p1 = tu_dataset_path("alpaca.jsonl"), *p2 = tu_dataset_path("messages.jsonl"), *p3 = tu_dataset_path("mcq.jsonl");
    data_source src[] = {{p1, "alpaca", NULL, 1, 0, NULL, NULL}, {p2, "messages", NULL, -1, 0, NULL, NULL}, {p3, "mcq", "cloze", -1, 0, NULL, NULL}};
    data_options o = opts("plain", 512);
    dataset d;
    cr_assert_eq(dataset_load(src, 3, EX_SFT, tok, &o, &d), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(d.n, 1 + 1 + 2);
    dataset_free(&d);
    free(p1); free(p2); free(p3);
}

Test(options, kind_and_type_must_agree)
{
    tokenizer *tok = tu_tokenizer(TINY);
    char *p = tu_dataset_path("alpaca.jsonl");
    data_source src = {p, "alpaca", NULL, -1, 0, NULL, NULL};
    data_options o = opts("plain", 512);
    dataset d;
    cr_expect_eq(dataset_load(&src, 1, EX_PREF, tok, &o, &d), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "preference"), "%s", ds_errmsg());
    cr_expect_eq(dataset_load(&src, 1, EX_MCQ, tok, &o, &d), DS_ECONFIG);
    src.type = "sharegpt";
    cr_expect_eq(dataset_load(&src, 1, EX_SFT, tok, &o, &d), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "sharegpt"), "%s", ds_errmsg());
    src.type = "alpaca";
    o.chat_template = "vicuna";
    cr_expect_eq(dataset_load(&src, 1, EX_SFT, tok, &o, &d), DS_ECONFIG);
    /* an entry of a recipe is named by the recipe's file:line */
    o.chat_template = "plain";
    src.recipe = "train.yaml";
    src.line = 12;
    cr_expect_eq(dataset_load(&src, 1, EX_PREF, tok, &o, &d), DS_ECONFIG);
    char *want = ds_strdupf("train.yaml:12: dataset %s: type 'alpaca' has no preference pairs", p);
    cr_expect(strstr(ds_errmsg(), want), "%s", ds_errmsg());
    free(want);
    src.type = "sharegpt";
    cr_expect_eq(dataset_load(&src, 1, EX_SFT, tok, &o, &d), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "train.yaml:12: dataset ") && strstr(ds_errmsg(), "unknown type 'sharegpt' ("
                                                                           DATASET_TYPE_NAMES ")"),
              "%s", ds_errmsg());
    src.line = 0;   /* from the command line: no line to name */
    cr_expect_eq(dataset_load(&src, 1, EX_SFT, tok, &o, &d), DS_ECONFIG);
    cr_expect(!strstr(ds_errmsg(), "train.yaml"), "%s", ds_errmsg());
    free(p);
}
