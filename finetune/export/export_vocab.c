/* finetune/export/export_vocab.c - the tokenizer as llama.cpp's "gpt2"
 * (byte-level BPE) vocabulary: tokens in id order (ids the tokenizer lacks
 * as "[PADn]"), their types, the merges in rank order, the pre-tokenizer's
 * name in llama.cpp, the special ids, add_bos/add_eos as ds-ft's tokenizer
 * decided them, and the chat template. */
#include "export_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/json_util.h"
#include "data/model_config.h"
#include "data/tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* gguf-py's TokenType */
enum { TOKEN_NORMAL = 1, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4, TOKEN_UNUSED = 5 };

/* Added tokens that are control tokens even where tokenizer.json does not
 * mark them special (as the converter's does_token_look_special). */
static bool looks_special(const char *s)
{
    size_t n = strlen(s);
    static const char *const NAMED[] = {"<pad>", "<mask>", "<2mass>", "[@BOS@]"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, NAMED[i])) return true;
    bool ascii_bars = n >= 4 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>");
    bool wide_bars = n >= 8 && !strncmp(s, "<\xef\xbd\x9c", 4) && !strcmp(s + n - 4, "\xef\xbd\x9c>");   /* <｜ ... ｜> */
    bool unused = n >= 8 && !strncmp(s, "<unused", 7) && s[n - 1] == '>';
    return ascii_bars || wide_bars || unused;
}

/* A user-defined token's "▁" (U+2581) becomes a space, as the converter writes it. */
static char *user_defined(const char *s)
{
    size_t n = strlen(s);
    char *out = ds_malloc(n + 1, "a token"), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        if (!strncmp(s + i, "\xe2\x96\x81", 3)) {
            *o++ = ' ';
            i += 3;
        } else {
            *o++ = s[i++];
        }
    }
    *o = '\0';
    return out;
}

/* A merge part with each space written as U+0120, as gguf-py keeps spaces
 * inside merge parts apart from the separating one. */
static void put_part(char *dst, size_t *k, const char *s)
{
    for (; *s; s++) {
        if (*s == ' ') {
            dst[(*k)++] = '\xc4';
            dst[(*k)++] = '\xa0';
        } else {
            dst[(*k)++] = *s;
        }
    }
}

static int add_tokens(gguf_writer *w, const tokenizer *t, int V)
{
    char **tokens = ds_calloc((size_t)V, sizeof *tokens, "the vocabulary");
    int32_t *types = tokens ? ds_calloc((size_t)V, sizeof *types, "the vocabulary") : NULL;
    int rc = types ? DS_OK : DS_ENOMEM;
    for (int id = 0; !rc && id < V; id++) {
        const char *s = tok_token_str(t, id);
        if (!s) {
            tokens[id] = ds_strdupf("[PAD%d]", id);
            types[id] = TOKEN_UNUSED;
        } else if (tok_is_added(t, id) && (tok_is_special(t, id) || looks_special(s))) {
            tokens[id] = ds_strdup(s);
            types[id] = TOKEN_CONTROL;
        } else if (tok_is_added(t, id)) {
            tokens[id] = user_defined(s);
            types[id] = TOKEN_USER_DEFINED;
        } else {
            tokens[id] = ds_strdup(s);
            types[id] = TOKEN_NORMAL;
        }
        if (!tokens[id]) rc = DS_ENOMEM;   /* the message is set */
    }
    if (!rc) rc = gguf_add_string_array(w, "tokenizer.ggml.tokens", (const char *const *)tokens, (size_t)V);
    if (!rc) rc = gguf_add_array(w, "tokenizer.ggml.token_type", GGUF_I32, types, (size_t)V);
    for (int id = 0; tokens && id < V; id++) free(tokens[id]);
    free(tokens);
    free(types);
    return rc;
}

static int add_merges(gguf_writer *w, const tokenizer *t)
{
    int n = tok_merge_count(t), rc = DS_OK;
    char **merges = ds_calloc((size_t)n + 1, sizeof *merges, "the merges");
    if (!merges) return DS_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        const char *l, *r;
        if (!tok_merge_at(t, i, &l, &r)) {
            rc = ds_fail(DS_EINTERNAL, "GGUF export: merge %d has no parts", i);
            break;
        }
        size_t k = 0;
        if (!(merges[i] = ds_malloc(2 * (strlen(l) + strlen(r)) + 2, "a merge"))) {
            rc = DS_ENOMEM;
            break;
        }
        put_part(merges[i], &k, l);
        merges[i][k++] = ' ';
        put_part(merges[i], &k, r);
        merges[i][k] = '\0';
    }
    if (!rc) rc = gguf_add_string_array(w, "tokenizer.ggml.merges", (const char *const *)merges, (size_t)n);
    for (int i = 0; i < n; i++) free(merges[i]);
    free(merges);
    return rc;
}

/* tokenizer_config.json's "chat_template" (a string, or a list of {name,
 * template}: "default" is the template, the others tokenizer.chat_template.NAME),
 * else chat_template.jinja beside it. */
static int add_chat_template(gguf_writer *w, const char *dir)
{
    char *path = ds_path_join(dir, "tokenizer_config.json");
    char *jinja = path ? ds_path_join(dir, "chat_template.jinja") : NULL;
    json_t *cfg = NULL;
    int rc = !jinja ? DS_ENOMEM : ds_exists(path) ? json_file_load(path, 0, &cfg) : DS_OK;
    const json_t *ct = cfg ? json_object_get(cfg, "chat_template") : NULL;
    if (rc || (ct && json_is_null(ct))) ct = NULL;
    if (ct && json_is_string(ct)) {
        rc = gguf_add_string(w, "tokenizer.chat_template", json_string_value(ct));
    } else if (ct && json_is_array(ct)) {
        size_t i;
        const json_t *e;
        json_array_foreach(ct, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            const char *tmpl = json_string_value(json_object_get(e, "template"));
            if (!name || !tmpl) {
                rc = ds_fail(DS_EDATA, "%s: chat_template[%zu] needs a \"name\" and a \"template\" string", path, i);
                break;
            }
            char key[160];
            if (!strcmp(name, "default")) snprintf(key, sizeof key, "tokenizer.chat_template");
            else snprintf(key, sizeof key, "tokenizer.chat_template.%.100s", name);
            if ((rc = gguf_add_string(w, key, tmpl))) break;
        }
    } else if (ct) {
        rc = ds_fail(DS_EDATA, "%s: \"chat_template\" must be a string or a list", path);
    } else if (!rc && ds_exists(jinja)) {
        char *text = NULL;
        size_t len;
        rc = ds_read_file(jinja, &text, &len);
        if (!rc) rc = gguf_add_string(w, "tokenizer.chat_template", text);
        free(text);
    }
    json_decref(cfg);
    free(path);
    free(jinja);
    return rc;
}

static int add_ids(gguf_writer *w, const tokenizer *t)
{
    static const char *const KEYS[3] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                        "tokenizer.ggml.padding_token_id"};
    int ids[3] = {tok_bos_id(t), tok_eos_id(t), tok_pad_id(t)}, rc = DS_OK;
    for (int i = 0; !rc && i < 3; i++)
        if (ids[i] >= 0) rc = gguf_add_u32(w, KEYS[i], (uint32_t)ids[i]);
    if (!rc) rc = gguf_add_bool(w, "tokenizer.ggml.add_bos_token", tok_adds_bos(t));
    if (!rc) rc = gguf_add_bool(w, "tokenizer.ggml.add_eos_token", tok_adds_eos(t));
    return rc;
}

/* The pre-tokenizer of tokenizer.json, recognised, or as the caller names
 * it; a tokenizer that is not byte-level is refused either way. */
static int pre_name(const char *dir, const char *pre, char *out, size_t n)
{
    char *path = ds_path_join(dir, "tokenizer.json");
    json_t *root = NULL;
    export_pre_info info;
    int rc = path ? json_file_load(path, 0, &root) : DS_ENOMEM;
    if (!rc) rc = export_recognise_pre(json_object_get(root, "pre_tokenizer"), &info);
    if (!rc && !info.byte_level)
        rc = ds_fail(DS_EDATA, "%s: the pre-tokenizer (%s) is not byte-level: only byte-level BPE tokenizers are "
                               "exported to GGUF (llama.cpp's \"gpt2\" vocabulary)", path, info.desc);
    else if (!rc && pre && !export_pre_accepted(pre))
        rc = ds_fail(DS_EUSAGE, "--pre %s: not a pre-tokenizer llama.cpp knows (e.g. deepseek-llm, deepseek-coder, "
                                "deepseek-v3, llama-bpe, qwen2, gpt-2)", pre);
    else if (!rc && !pre && !info.name)
        rc = ds_fail(DS_EDATA, "%s: the pre-tokenizer (%s) is not one llama.cpp knows by name here; if you know its "
                               "name in llama.cpp, pass --pre NAME", path, info.desc);
    if (!rc) snprintf(out, n, "%s", pre ? pre : info.name);
    json_decref(root);
    free(path);
    return rc;
}

int export_vocab(gguf_writer *w, const char *dir, const export_model *m, const char *pre, char *pre_out, size_t n)
{
    int rc = pre_name(dir, pre, pre_out, n);
    tokenizer *t = NULL;
    if (!rc) rc = tok_load(dir, &t);
    if (rc) return rc;
    /* the ids the tokenizer does not name come from the model, as `ds-ft tokenize` takes them */
    model_config mc;
    rc = model_config_load(dir, &mc);
    if (rc == DS_OK) {
        tok_set_default_ids(t, mc.bos_id, mc.eos_id, mc.pad_id);
    } else if (rc != DS_ENOMEM) {   /* no usable config.json: the tokenizer's own ids */
        ds_clear_error();
        rc = DS_OK;
    }
    int V = m->cfg.vocab_size;
    if (!rc && tok_vocab_size(t) > V)
        rc = ds_fail(DS_EDATA, "%s: the tokenizer has %d tokens, more than the model's vocab_size %d", dir,
                     tok_vocab_size(t), V);
    if (!rc) rc = gguf_add_string(w, "tokenizer.ggml.model", "gpt2");
    if (!rc) rc = gguf_add_string(w, "tokenizer.ggml.pre", pre_out);
    if (!rc) rc = add_tokens(w, t, V);
    if (!rc) rc = add_merges(w, t);
    if (!rc) rc = add_ids(w, t);
    if (!rc) rc = add_chat_template(w, dir);
    tok_free(t);
    return rc;
}
