/* data/dataset/chat_template.h - the built-in chat templates, rendered as text
 * pieces that carry their training mask.
 *
 * A template turns a conversation (system / user / assistant messages) into
 * a list of pieces: text the model only reads (train = 0: system and user
 * turns, role headers) and text it learns to write (train = 1: each
 * assistant reply and the marker that ends it). A piece with eos = true is
 * followed by the tokenizer's EOS id, added by id rather than written as
 * text, as the models' own Jinja templates do with eos_token. The strings
 * are those of the models' chat_template (tokenizer_config.json):
 *
 *   deepseek  DeepSeek LLM chat: "{system}\n\n", "User: {u}\n\n",
 *             "Assistant:" | " {a}" EOS
 *   llama3    "<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>";
 *             assistant: header | "{a}<|eot_id|>"
 *   chatml    "<|im_start|>{role}\n{content}<|im_end|>\n";
 *             assistant: "<|im_start|>assistant\n" | "{a}<|im_end|>" "\n"
 *   alpaca    the Stanford Alpaca prompt (with or without "### Input:"),
 *             "### Response:\n" | "{a}" EOS
 *   plain     the text as is | "{a}" EOS
 *
 * ("|" marks where the masked prompt ends and the trained completion starts.)
 * BOS is not part of the pieces: ct_render.bos says the sequence starts with
 * one when the template writes bos_token itself (deepseek, llama3); the
 * loader adds it also when the tokenizer adds it (tok_adds_bos).
 */
#ifndef DS_DATA_CHAT_TEMPLATE_H
#define DS_DATA_CHAT_TEMPLATE_H

#include "core/xlist.h"

#include <stdbool.h>
#include <stddef.h>

/* The built-in templates, in one list: X(name, kind, writes_bos) (core/xlist.h;
 * `kind` is chat_template.c's). */
#define CHAT_TEMPLATES(X, SEP)                                                                  \
    X(deepseek, T_DEEPSEEK, true) SEP X(llama3, T_LLAMA3, true) SEP X(chatml, T_CHATML, false) SEP \
    X(alpaca, T_ALPACA, false) SEP X(plain, T_PLAIN, false)
#define CHAT_TEMPLATE_NAME_STR(name, kind, bos) #name
/* "deepseek|llama3|chatml|alpaca|plain" */
#define CHAT_TEMPLATE_NAMES CHAT_TEMPLATES(CHAT_TEMPLATE_NAME_STR, "|")
/* The recipe's data.chat_template choices: "auto" (the model's own template,
 * data/template/jinja.h) or a built-in. */
#define CHAT_TEMPLATE_CHOICES "auto|" CHAT_TEMPLATE_NAMES

typedef struct chat_template chat_template;

typedef enum { CT_SYSTEM, CT_USER, CT_ASSISTANT } ct_role;

typedef struct {
    ct_role role;
    const char *content; size_t len;
    /* user turns of alpaca records: the optional "input" (NULL or empty =
     * none). The alpaca template gives it its own section; the others
     * append it to the content after a blank line. */
    const char *input; size_t input_len;
} chat_msg;

typedef struct {
    char *text; size_t len;
    bool train;            /* 1: the model learns to write this text */
    bool eos;              /* the tokenizer's EOS id follows */
} ct_piece;

typedef struct {
    ct_piece *p;
    int n;
    size_t cap;            /* room in p */
    bool bos;              /* the template starts the sequence with BOS */
    bool own_bos;          /* a model template's rendering: it writes BOS itself where the model has one, so
                              none is added (apply_chat_template encodes without special tokens) */
} ct_render;

/* A template by name; an unknown name is DS_ECONFIG listing the names. */
int chat_template_find(const char *name, const chat_template **out);
/* chat_template_open() : like chat_template_find, and "auto": the model's
 * own template (DIR/chat_template.jinja or DIR/tokenizer_config.json's
 * "chat_template", rendered as transformers' apply_chat_template does), or
 * the built-in "plain" when DIR has none (chat_template_about says so).
 * Close it with chat_template_close. With a model's template, a
 * conversation's prompt (the messages up to the last user turn, rendered
 * with add_generation_prompt=true) is masked and the rest of its rendering
 * trained; a template whose prompt rendering is not a prefix of the
 * conversation's is refused (DS_EDATA naming it). @return DS_OK, DS_ECONFIG
 * for an unknown name, DS_EDATA for a malformed template. */
int chat_template_open(const char *name, const char *dir, const chat_template **out);
void chat_template_close(const chat_template *t);
/* What was taken: "built-in chatml", "the model's chat template
 * (DIR/tokenizer_config.json)", "built-in plain (DIR has no chat template)". */
const char *chat_template_about(const chat_template *t);
/* A string that changes whenever the rendering may (the name, or the
 * digest of a model's template and its special tokens): for the token cache. */
const char *chat_template_key(const chat_template *t);
const char *chat_template_name(const chat_template *t);
/* Whether the model's template writes bos_token at the start (deepseek, llama3). */
bool chat_template_wants_bos(const chat_template *t);
/* CHAT_TEMPLATE_NAMES: "deepseek|llama3|chatml|alpaca|plain" */
const char *chat_template_names(void);

/* A whole conversation: every assistant turn from message `context` on is
 * trained (with the marker or EOS that ends it), everything else masked
 * (the first `context` messages are a given prompt, replies included).
 * Appends to out. */
int ct_render_chat(const chat_template *t, const chat_msg *m, int n, int context, ct_render *out);
/* The prompt for the next assistant reply: the messages, then the
 * assistant header (the generation prompt). Appends to out. */
int ct_render_prompt(const chat_template *t, const chat_msg *m, int n, ct_render *out);
/* One assistant reply as it follows ct_render_prompt (trained pieces,
 * then any masked trailer). Appends to out. Built-in templates only. */
int ct_render_reply(const chat_template *t, const char *content, size_t len, ct_render *out);
/* The reply that follows ct_render_prompt(t, prompt, np): ct_render_reply
 * for a built-in; for a model's template, what its rendering of the
 * conversation adds after the prompt (trained). */
int ct_render_answer(const chat_template *t, const chat_msg *prompt, int np, const char *content, size_t len,
                     ct_render *out);
/* Raw text with no roles (multiple-choice questions): the prompt masked,
 * the continuation trained, then the template's end of a reply (EOS, or
 * <|eot_id|> / <|im_end|>). Appends to out. */
int ct_render_raw(const chat_template *t, const char *prompt, size_t plen, const char *cont, size_t clen,
                  ct_render *out);

/* Append one piece (text copied). */
int ct_push(ct_render *r, const char *text, size_t len, bool train, bool eos);
void ct_render_free(ct_render *r);
/* All pieces concatenated (malloc'd); EOS written as `eos_text` (may be "").
 * NULL: out of memory (message set, status DS_ENOMEM). */
char *ct_render_text(const ct_render *r, const char *eos_text);

#endif
