/* data/template/jinja.h - a small Jinja interpreter for chat templates, and
 * the chat template of a model folder rendered as transformers does.
 *
 * The language is Jinja2 as transformers' apply_chat_template configures
 * it: an immutable sandbox with trim_blocks and lstrip_blocks, the
 * loopcontrols extension ({% break %}, {% continue %}), {% generation %}
 * blocks, a tojson filter that is json.dumps(ensure_ascii=False, indent=...,
 * sort_keys=False), and the globals raise_exception(msg) and
 * strftime_now(fmt). Values are Python's: none, bool, int, float, str,
 * list, dict, with Python's str(), comparisons, slicing and string methods.
 * Covered: {{ }}, {% %}, {# #}, '-' and '+' whitespace markers, for (loop.*,
 * else, filters, unpacking), if/elif/else, set (names, namespace
 * attributes, blocks), macro, raw, the filters, tests and methods listed in
 * README "Chat templates". Anything else (extends, include, call, filter
 * blocks, an unknown filter, test or method) is refused with an error that
 * names it; nothing is skipped. Errors read "NAME:LINE:COL: message" (DS_EDATA).
 * Renders are bounded in output, memory, steps and nesting.
 */
#ifndef DS_DATA_TEMPLATE_JINJA_H
#define DS_DATA_TEMPLATE_JINJA_H

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct jinja_template jinja_template;

typedef struct {
    size_t max_output;     /* bytes of output; 0 = 64 MiB */
    size_t max_memory;     /* bytes of values one render may build; 0 = 512 MiB */
    long max_steps;        /* expression and statement evaluations; 0 = 100 million */
    int max_depth;         /* nesting of expressions, statements and macro calls; 0 = 200 */
    int64_t now;           /* strftime_now's clock in Unix seconds (local time); 0 = the real clock */
} jinja_limits;

/* jinja_compile() : parse a template; `name` (copied) names it in errors.
 * @return DS_OK, DS_EDATA "name:line:col: ..." for a syntax error or a
 * construct this interpreter does not implement, DS_ENOMEM out of memory. */
int jinja_compile(const char *src, size_t n, const char *name, jinja_template **out);
void jinja_free(jinja_template *t);
const char *jinja_name(const jinja_template *t);

/* jinja_render() : render with the variables of `vars` (a JSON object; may
 * be NULL). *out is malloc'd and NUL-terminated (its length in *out_len).
 * @return DS_OK, DS_EDATA for an error while rendering (raise_exception's
 * message, an undefined value called, a limit passed), DS_ENOMEM out of memory. */
int jinja_render(const jinja_template *t, const json_t *vars, const jinja_limits *lim, char **out, size_t *out_len);

/* ---- the chat template of a model ---- */
typedef struct jinja_chat jinja_chat;

/* jinja_chat_load() : the chat template of a model folder, as transformers
 * loads it: DIR/chat_template.jinja, else tokenizer_config.json's
 * "chat_template" (a string, or a list of {"name", "template"} of which
 * "default" is taken), with the special tokens (bos_token, eos_token,
 * unk_token, pad_token) of tokenizer_config.json.
 * @return DS_OK with *out NULL when the folder has no chat template;
 * DS_EDATA naming the file for a malformed one. */
int jinja_chat_load(const char *dir, jinja_chat **out);
/* jinja_chat_new() : a chat template from text; bos/eos may be NULL (not passed). */
int jinja_chat_new(const char *text, size_t n, const char *name, const char *bos, const char *eos, jinja_chat **out);
void jinja_chat_free(jinja_chat *c);
/* Where the template came from ("DIR/tokenizer_config.json"). */
const char *jinja_chat_name(const jinja_chat *c);
/* SHA-256 (hex) of the template text and the special tokens: two chats with
 * the same digest render alike. */
const char *jinja_chat_digest(const jinja_chat *c);

/* jinja_chat_render() : apply_chat_template(messages, tokenize=False,
 * add_generation_prompt=agp): the template rendered with messages (a JSON
 * list), add_generation_prompt, tools=None, documents=None and the special
 * tokens. *out malloc'd. @return as jinja_render. */
int jinja_chat_render(const jinja_chat *c, const json_t *messages, bool add_generation_prompt, char **out,
                      size_t *out_len);

/* jinja_chat_split() : a conversation cut for training with exact masking:
 * prompt = the rendering of messages[0..n_prompt) with
 * add_generation_prompt=true, completion = the rest of the rendering of all
 * messages with add_generation_prompt=false. Both malloc'd. A template that
 * rewrites the last reply when it renders it (DeepSeek-R1's drop the
 * reasoning) makes the prompt's rendering not a prefix of the whole; then,
 * when the completion is that one reply, it is the reply as written (minus a
 * start the generation prompt already wrote, e.g. "<think>\n") followed by
 * the template's end of the turn.
 * @return DS_EDATA naming the template when neither cut applies (the template
 * renders earlier turns differently once a reply follows), else as
 * jinja_render. */
int jinja_chat_split(const jinja_chat *c, const json_t *messages, size_t n_prompt, char **prompt, size_t *prompt_len,
                     char **completion, size_t *completion_len);

#endif
