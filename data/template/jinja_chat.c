/* data/template/jinja_chat.c - a model's chat template, loaded and rendered
 * as transformers does: the template from chat_template.jinja or
 * tokenizer_config.json, rendered with messages, add_generation_prompt,
 * tools=None, documents=None and the tokenizer's special tokens as strings.
 */
#include "jinja.h"

#include "data/json_util.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NTOKENS 4
static const char *const TOKEN_KEYS[NTOKENS] = {"bos_token", "eos_token", "unk_token", "pad_token"};

struct jinja_chat {
    jinja_template *t;
    char *name;
    char *token[NTOKENS];      /* NULL: not set, not passed to the template */
    char digest[65];
};

void jinja_chat_free(jinja_chat *c)
{
    if (!c) return;
    jinja_free(c->t);
    free(c->name);
    for (int i = 0; i < NTOKENS; i++) free(c->token[i]);
    free(c);
}

const char *jinja_chat_name(const jinja_chat *c) { return c->name; }
const char *jinja_chat_digest(const jinja_chat *c) { return c->digest; }

static int finish(jinja_chat *c, const char *text, size_t n, jinja_chat **out)
{
    int rc = jinja_compile(text, n, c->name, &c->t);
    if (rc) {
        jinja_chat_free(c);
        return rc;
    }
    ds_sha256 h;
    ds_sha256_init(&h);
    char head[64];
    snprintf(head, sizeof head, "template %zu\n", n);
    ds_sha256_update(&h, head, strlen(head));
    ds_sha256_update(&h, text, n);
    for (int i = 0; i < NTOKENS; i++) {
        const char *tok = c->token[i];
        snprintf(head, sizeof head, "%s %zd\n", TOKEN_KEYS[i], tok ? (ssize_t)strlen(tok) : (ssize_t)-1);
        ds_sha256_update(&h, head, strlen(head));
        if (tok) ds_sha256_update(&h, tok, strlen(tok));
    }
    uint8_t d[32];
    ds_sha256_final(&h, d);
    ds_hex(d, 32, c->digest);
    *out = c;
    return DS_OK;
}

int jinja_chat_new(const char *text, size_t n, const char *name, const char *bos, const char *eos, jinja_chat **out)
{
    *out = NULL;
    jinja_chat *c = ds_calloc(1, sizeof *c, "a chat template");
    if (!c || !(c->name = ds_strdup(name ? name : "chat_template")) || (bos && !(c->token[0] = ds_strdup(bos))) ||
        (eos && !(c->token[1] = ds_strdup(eos)))) {
        jinja_chat_free(c);
        return DS_ENOMEM;
    }
    return finish(c, text, n, out);
}

/* A special token of tokenizer_config.json: "<s>", {"content": "<s>", ...} or null. */
static int config_token(const json_t *cfg, const char *path, int i, char **out)
{
    const json_t *v = json_object_get(cfg, TOKEN_KEYS[i]);
    *out = NULL;
    if (!v || json_is_null(v)) return DS_OK;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return ds_fail(DS_EDATA, "%s: \"%s\" must be a string or an object with \"content\"", path, TOKEN_KEYS[i]);
    *out = ds_strdup(json_string_value(v));
    return *out ? DS_OK : DS_ENOMEM;
}

/* tokenizer_config.json's chat_template: a string, or a list of
 * {"name", "template"} (transformers takes "default"). */
static int config_template(const json_t *cfg, const char *path, const char **text)
{
    const json_t *v = json_object_get(cfg, "chat_template");
    *text = NULL;
    if (!v || json_is_null(v)) return DS_OK;
    if (json_is_string(v)) {
        *text = json_string_value(v);
        return DS_OK;
    }
    if (!json_is_array(v)) return ds_fail(DS_EDATA, "%s: \"chat_template\" must be a string or a list", path);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i), *name = json_object_get(e, "name"), *t = json_object_get(e, "template");
        if (!json_is_string(name) || !json_is_string(t))
            return ds_fail(DS_EDATA, "%s: \"chat_template\"[%zu] must be {\"name\": ..., \"template\": ...}", path, i);
        if (strcmp(json_string_value(name), "default") == 0) *text = json_string_value(t);
    }
    if (!*text)
        return ds_fail(DS_EDATA, "%s: \"chat_template\" is a list of named templates without one named \"default\"",
                       path);
    return DS_OK;
}

int jinja_chat_load(const char *dir, jinja_chat **out)
{
    *out = NULL;
    char *cpath = ds_path_join(dir, "tokenizer_config.json"), *jpath = ds_path_join(dir, "chat_template.jinja");
    char *ctext = NULL, *jtext = NULL;
    size_t clen = 0, jlen = 0;
    json_t *cfg = NULL;
    jinja_chat *c = NULL;
    int rc = cpath && jpath ? DS_OK : DS_ENOMEM;
    if (!rc && ds_exists(cpath)) {
        rc = ds_read_file(cpath, &ctext, &clen);
        if (!rc) rc = json_text_load(ctext, clen, cpath, JSON_DECODE_INT_AS_REAL, &cfg);
        if (!rc && !json_is_object(cfg)) rc = ds_fail(DS_EDATA, "%s: not a JSON object", cpath);
    }
    if (!rc && ds_exists(jpath)) rc = ds_read_file(jpath, &jtext, &jlen);
    const char *text = jtext;
    if (!rc && !text && cfg) rc = config_template(cfg, cpath, &text);
    if (!rc && text) {
        c = ds_calloc(1, sizeof *c, "a chat template");
        if (!c || !(c->name = ds_strdup(jtext ? jpath : cpath))) rc = DS_ENOMEM;
        for (int i = 0; !rc && cfg && i < NTOKENS; i++) rc = config_token(cfg, cpath, i, &c->token[i]);
        if (!rc) rc = finish(c, text, jtext ? jlen : strlen(text), out);
        else jinja_chat_free(c);
    }
    json_decref(cfg);
    free(ctext);
    free(jtext);
    free(cpath);
    free(jpath);
    return rc;
}

int jinja_chat_render(const jinja_chat *c, const json_t *messages, bool add_generation_prompt, char **out,
                      size_t *out_len)
{
    json_t *vars = json_object();   /* jansson's failed allocations set the message */
    int rc = vars ? DS_OK : DS_ENOMEM;
    if (!rc && (json_object_set(vars, "messages", (json_t *)messages) ||
                json_object_set_new(vars, "tools", json_null()) || json_object_set_new(vars, "documents", json_null()) ||
                json_object_set_new(vars, "add_generation_prompt", json_boolean(add_generation_prompt))))
        rc = DS_ENOMEM;
    for (int i = 0; !rc && i < NTOKENS; i++)
        if (c->token[i] && json_object_set_new(vars, TOKEN_KEYS[i], json_string(c->token[i]))) rc = DS_ENOMEM;
    if (!rc) rc = jinja_render(c->t, vars, NULL, out, out_len);
    json_decref(vars);
    return rc;
}

/* The cut for templates that rewrite a reply when they render a conversation
 * (DeepSeek-R1 and its distills drop the reasoning before </think>, so the
 * prompt's rendering is not the start of the whole): the reply is trained as
 * written, followed by what the template writes after a reply. Found by
 * rendering the conversation with a sentinel in place of the last reply: the
 * text before it must be where the prompt's rendering starts (the rest of the
 * prompt is the generation prompt, e.g. "<think>\n", which a reply that opens
 * the same way does not repeat); the text after it ends the turn. */
static const char SENTINEL[] = "\x01ds-ft reply\x01";

static int reply_as_written(const jinja_chat *c, const json_t *messages, const char *p, size_t pn, char **completion,
                            size_t *completion_len)
{
    size_t n = json_array_size(messages);
    const json_t *last = json_array_get(messages, n - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    const char *content = json_string_value(json_object_get(last, "content"));
    if (!role || strcmp(role, "assistant") || !content) return DS_EDATA;
    json_t *probe = json_deep_copy(messages), *msg = probe ? json_array_get(probe, n - 1) : NULL;
    if (!msg || json_object_set_new(msg, "content", json_string(SENTINEL))) {   /* only a failed allocation */
        json_decref(probe);
        return DS_ENOMEM;
    }
    char *full = NULL;
    size_t fn = 0;
    int rc = jinja_chat_render(c, probe, false, &full, &fn);
    json_decref(probe);
    if (rc) return rc;
    const char *at = strstr(full, SENTINEL);
    size_t before = at ? (size_t)(at - full) : 0;
    if (!at || strstr(at + 1, SENTINEL) || before > pn || memcmp(full, p, before) != 0) {
        free(full);
        return DS_EDATA;
    }
    /* the generation prompt's own text past the turn's start, e.g. "<think>\n" */
    const char *gen = p + before;
    size_t gn = pn - before, cn = strlen(content);
    if (cn >= gn && memcmp(content, gen, gn) == 0) content += gn, cn -= gn;
    const char *tail = at + sizeof SENTINEL - 1;
    size_t tn = fn - (size_t)(tail - full);
    *completion = ds_malloc(cn + tn + 1, "a chat template's completion");
    if (!*completion) rc = DS_ENOMEM;
    else {
        memcpy(*completion, content, cn);
        memcpy(*completion + cn, tail, tn);
        (*completion)[cn + tn] = '\0';
        *completion_len = cn + tn;
    }
    free(full);
    return rc;
}

int jinja_chat_split(const jinja_chat *c, const json_t *messages, size_t n_prompt, char **prompt, size_t *prompt_len,
                     char **completion, size_t *completion_len)
{
    *prompt = *completion = NULL;
    json_t *head = json_array();   /* jansson's failed allocations set the message */
    int rc = head ? DS_OK : DS_ENOMEM;
    for (size_t i = 0; !rc && i < n_prompt && i < json_array_size(messages); i++)
        if (json_array_append(head, json_array_get(messages, i))) rc = DS_ENOMEM;
    char *p = NULL, *full = NULL;
    size_t pn = 0, fn = 0;
    if (!rc) rc = jinja_chat_render(c, head, true, &p, &pn);
    if (!rc) rc = jinja_chat_render(c, messages, false, &full, &fn);
    json_decref(head);
    bool prefix = !rc && pn <= fn && memcmp(p, full, pn) == 0;
    if (!rc && !prefix) {
        size_t at = 0;
        while (at < pn && at < fn && p[at] == full[at]) at++;
        int r2 = n_prompt + 1 == json_array_size(messages)
                     ? reply_as_written(c, messages, p, pn, completion, completion_len)
                     : DS_EDATA;
        if (r2 == DS_OK) {
            free(full);
            *prompt = p;
            *prompt_len = pn;
            return DS_OK;
        }
        rc = r2 != DS_EDATA ? r2
                            : ds_fail(DS_EDATA,
                                      "%s: the chat template's rendering of the prompt (%zu messages, "
                                      "add_generation_prompt=true) is not the start of the conversation's rendering "
                                      "(they differ at byte %zu), so the prompt cannot be masked exactly; use a "
                                      "built-in data.chat_template",
                                      c->name, n_prompt, at);
    }
    if (!rc && !(*completion = ds_malloc(fn - pn + 1, "a chat template's completion"))) rc = DS_ENOMEM;
    if (rc) {
        free(p);
        free(full);
        return rc;
    }
    memcpy(*completion, full + pn, fn - pn);
    (*completion)[fn - pn] = '\0';
    *completion_len = fn - pn;
    *prompt = p;
    *prompt_len = pn;
    free(full);
    return DS_OK;
}
