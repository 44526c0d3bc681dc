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
/* "deepseek|llama3|chatml|alpaca|plain" (the recipe's data.chat_template choices) */
#define CHAT_TEMPLATE_NAMES CHAT_TEMPLATES(CHAT_TEMPLATE_NAME_STR, "|")

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
    int n, cap;
    bool bos;              /* the template starts the sequence with BOS */
} ct_render;

/* A template by name; an unknown name is DS_ECONFIG listing the names. */
int chat_template_find(const char *name, const chat_template **out);
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
 * then any masked trailer). Appends to out. */
int ct_render_reply(const chat_template *t, const char *content, size_t len, ct_render *out);
/* Raw text with no roles (multiple-choice questions): the prompt masked,
 * the continuation trained, then the template's end of a reply (EOS, or
 * <|eot_id|> / <|im_end|>). Appends to out. */
int ct_render_raw(const chat_template *t, const char *prompt, size_t plen, const char *cont, size_t clen,
                  ct_render *out);

/* Append one piece (text copied). */
int ct_push(ct_render *r, const char *text, size_t len, bool train, bool eos);
void ct_render_free(ct_render *r);
/* All pieces concatenated (malloc'd); EOS written as `eos_text` (may be ""). */
char *ct_render_text(const ct_render *r, const char *eos_text);

#endif
