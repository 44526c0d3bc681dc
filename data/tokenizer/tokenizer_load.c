/* data/tokenizer/tokenizer_load.c - reading the components of a tokenizer.json.
 *
 * Every component names its "type"; a type this reader does not implement
 * is an error naming it and where it sits (e.g. "pre_tokenizer.pretokenizers[1]:
 * type 'Metaspace' is not supported"), so a tokenizer is never run with a
 * step silently missing. Sequences are flattened into the step arrays.
 */
#include "tokenizer_internal.h"
#include "data/json_util.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- JSON helpers */

static int bad(const tokenizer *t, const char *where, const char *msg)
{
    return ds_fail(DS_EDATA, "%s: %s: %s", t->what, where, msg);
}

static int need_type(const tokenizer *t, json_t *j, const char *where, const char **type)
{
    if (!json_is_object(j)) return bad(t, where, "not a JSON object");
    *type = json_string_value(json_object_get(j, "type"));
    if (!*type) return bad(t, where, "no \"type\" string");
    return DS_OK;
}

static int unsupported(const tokenizer *t, const char *where, const char *kind, const char *type)
{
    return ds_fail(DS_EDATA, "%s: %s: %s type '%s' is not supported", t->what, where, kind, type);
}

/* "tokenizer.json: where", the label of a component's members in messages. */
static char *label(const tokenizer *t, const char *where) { return ds_strdupf("%s: %s", t->what, where); }

/* Optional boolean member (absent or null: dflt). */
static int get_bool(const tokenizer *t, json_t *j, const char *key, bool dflt, const char *where, bool *out)
{
    char *at = label(t, where);
    int rc = at ? json_get_bool(j, key, dflt, at, out) : DS_ENOMEM;
    free(at);
    return rc;
}

/* Required string member (pointer into the JSON). */
static int get_str(const tokenizer *t, json_t *j, const char *key, const char *where, const char **s, size_t *n)
{
    char *at = label(t, where);
    int rc = at ? json_get_str(j, key, NULL, at, s) : DS_ENOMEM;
    if (!rc && !*s) rc = ds_fail(DS_EDATA, "%s: \"%s\" is missing", at, key);
    free(at);
    *n = rc ? 0 : json_string_length(json_object_get(j, key));
    return rc;
}

/* A copy of s[0..n) into *out (NUL-terminated), its length into *len. */
static int dup_n(const char *s, size_t n, char **out, size_t *len)
{
    if (!(*out = ds_malloc(n + 1, "a tokenizer string"))) return DS_ENOMEM;
    memcpy(*out, s, n);
    (*out)[n] = '\0';
    *len = n;
    return DS_OK;
}

static int get_size(const tokenizer *t, json_t *j, const char *key, const char *where, size_t *out)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return ds_fail(DS_EDATA, "%s: %s: \"%s\" is missing or not a non-negative integer", t->what, where, key);
    *out = (size_t)json_integer_value(v);
    return DS_OK;
}

/* {"String": s} or {"Regex": r}, compiled. */
static int get_pattern(const tokenizer *t, json_t *j, const char *where, tk_regex *re)
{
    json_t *p = json_object_get(j, "pattern");
    json_t *str = json_object_get(p, "String"), *rx = json_object_get(p, "Regex");
    if (!json_is_object(p) || json_object_size(p) != 1 || (!json_is_string(str) && !json_is_string(rx)))
        return bad(t, where, "\"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
    json_t *v = str ? str : rx;
    return tk_regex_compile(re, json_string_value(v), json_string_length(v), str != NULL, t->what, where);
}

/* -------------------------------------------------------------- normalizer */

/* A component or a "Sequence" of them (listed under list_key, nested
 * sequences allowed): each plain component goes to `one`, in order. */
typedef int (*component_fn)(tokenizer *t, json_t *j, const char *type, const char *where, void *ctx);

static int each_component(tokenizer *t, json_t *j, const char *where, const char *list_key, int depth,
                          component_fn one, void *ctx)
{
    const char *type;
    int rc = need_type(t, j, where, &type);
    if (rc) return rc;
    if (depth > 16) return bad(t, where, "Sequences nested too deeply");
    if (strcmp(type, "Sequence")) return one(t, j, type, where, ctx);
    json_t *list = json_object_get(j, list_key);
    if (!json_is_array(list)) {
        char msg[96];
        snprintf(msg, sizeof msg, "Sequence without a \"%s\" list", list_key);
        return bad(t, where, msg);
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        char sub[320];
        snprintf(sub, sizeof sub, "%.200s.%.32s[%zu]", where, list_key, i);
        if ((rc = each_component(t, json_array_get(list, i), sub, list_key, depth + 1, one, ctx))) return rc;
    }
    return DS_OK;
}

static int normalizer(tokenizer *t, json_t *j, const char *type, const char *where, void *ctx)
{
    (void)ctx;
    int rc = DS_OK;
    tk_norm nm = {0};
    const char *s = NULL;
    size_t n = 0;
    if (!strcmp(type, "NFC")) nm.kind = NORM_NFC;
    else if (!strcmp(type, "NFD")) nm.kind = NORM_NFD;
    else if (!strcmp(type, "NFKC")) nm.kind = NORM_NFKC;
    else if (!strcmp(type, "NFKD")) nm.kind = NORM_NFKD;
    else if (!strcmp(type, "Prepend")) {
        nm.kind = NORM_PREPEND;
        if ((rc = get_str(t, j, "prepend", where, &s, &n)) || (rc = dup_n(s, n, &nm.str, &nm.str_len))) return rc;
    } else if (!strcmp(type, "Replace")) {
        nm.kind = NORM_REPLACE;
        if ((rc = get_str(t, j, "content", where, &s, &n)) || (rc = get_pattern(t, j, where, &nm.re))) return rc;
        rc = dup_n(s, n, &nm.str, &nm.str_len);
    } else if (!strcmp(type, "Strip")) {
        nm.kind = NORM_STRIP;
        if ((rc = get_bool(t, j, "strip_left", true, where, &nm.left)) ||
            (rc = get_bool(t, j, "strip_right", true, where, &nm.right)))
            return rc;
    } else
        return unsupported(t, where, "normalizer", type);
    if (!rc) rc = ds_grow(&t->norm, &t->cap_norm, (size_t)t->nnorm + 1, sizeof *t->norm);
    if (rc) {
        tk_norm_free(&nm);
        return rc;
    }
    t->norm[t->nnorm++] = nm;
    return DS_OK;
}

int tk_load_normalizer(tokenizer *t, json_t *j)
{
    return !j || json_is_null(j) ? DS_OK : each_component(t, j, "normalizer", "normalizers", 0, normalizer, NULL);
}

/* ------------------------------------------------------------ pre-tokenizer */

static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int pretokenizer(tokenizer *t, json_t *j, const char *type, const char *where, void *ctx)
{
    (void)ctx;
    int rc = DS_OK;
    tk_pretok p = {0};
    if (!strcmp(type, "Split")) {
        static const char *const BEHAVIORS[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                                "Contiguous"};
        const char *b = json_string_value(json_object_get(j, "behavior"));
        p.kind = PT_SPLIT;
        p.behavior = -1;
        for (int i = 0; b && i < 5; i++)
            if (!strcmp(b, BEHAVIORS[i])) p.behavior = i;
        if (p.behavior < 0)
            return ds_fail(DS_EDATA, "%s: %s: Split behavior '%s' is not supported", t->what, where, b ? b : "(none)");
        if ((rc = get_bool(t, j, "invert", false, where, &p.invert))) return rc;
        if ((rc = get_pattern(t, j, where, &p.re))) return rc;
    } else if (!strcmp(type, "ByteLevel")) {
        p.kind = PT_BYTELEVEL;
        if ((rc = get_bool(t, j, "add_prefix_space", true, where, &p.add_prefix_space)) ||
            (rc = get_bool(t, j, "use_regex", true, where, &p.use_regex)))
            return rc;
        if (p.use_regex &&
            (rc = tk_regex_compile(&p.re, GPT2_PATTERN, strlen(GPT2_PATTERN), false, t->what, where)))
            return rc;
    } else if (!strcmp(type, "Digits")) {
        p.kind = PT_DIGITS;
        if ((rc = get_bool(t, j, "individual_digits", false, where, &p.individual))) return rc;
    } else
        return unsupported(t, where, "pre_tokenizer", type);
    if ((rc = ds_grow(&t->pretok, &t->cap_pretok, (size_t)t->npretok + 1, sizeof *t->pretok))) {
        tk_pretok_free(&p);
        return rc;
    }
    t->pretok[t->npretok++] = p;
    return DS_OK;
}

int tk_load_pretokenizer(tokenizer *t, json_t *j)
{
    return !j || json_is_null(j) ? DS_OK : each_component(t, j, "pre_tokenizer", "pretokenizers", 0, pretokenizer, NULL);
}

/* ------------------------------------------------------------------ decoder */

static int decoder(tokenizer *t, json_t *j, const char *type, const char *where, void *ctx)
{
    (void)ctx;
    int rc = DS_OK;
    tk_dec d = {0};
    const char *s = NULL;
    size_t n = 0;
    if (!strcmp(type, "ByteLevel")) d.kind = DEC_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) d.kind = DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) d.kind = DEC_FUSE;
    else if (!strcmp(type, "Strip")) {
        d.kind = DEC_STRIP;
        if ((rc = get_str(t, j, "content", where, &s, &n)) || (rc = get_size(t, j, "start", where, &d.strip_start)) ||
            (rc = get_size(t, j, "stop", where, &d.strip_stop)))
            return rc;
        size_t k;
        if (!n || ds_utf8_decode(s, n, &k) == DS_UTF8_BAD || k != n)
            return bad(t, where, "Strip \"content\" must be one character");
        d.strip_char = ds_utf8_decode(s, n, &k);
    } else if (!strcmp(type, "Replace")) {
        d.kind = DEC_REPLACE;
        if ((rc = get_str(t, j, "content", where, &s, &n)) || (rc = get_pattern(t, j, where, &d.re))) return rc;
        rc = dup_n(s, n, &d.str, &d.str_len);
    } else
        return unsupported(t, where, "decoder", type);
    if (!rc) rc = ds_grow(&t->dec, &t->cap_dec, (size_t)t->ndec + 1, sizeof *t->dec);
    if (rc) {
        tk_dec_free(&d);
        return rc;
    }
    t->dec[t->ndec++] = d;
    return DS_OK;
}

int tk_load_decoder(tokenizer *t, json_t *j)
{
    t->has_decoder = j && !json_is_null(j);
    return t->has_decoder ? each_component(t, j, "decoder", "decoders", 0, decoder, NULL) : DS_OK;
}

/* ------------------------------------------------------------ post-processor */

/* Ids of a special token named in a TemplateProcessing's "special_tokens". */
static int template_ids(tokenizer *t, json_t *specials, const char *name, const char *where, tok_ids *out)
{
    json_t *st = json_object_get(specials, name), *ids = json_object_get(st, "ids");
    if (!json_is_array(ids))
        return ds_fail(DS_EDATA, "%s: %s: special token '%s' has no \"ids\" in \"special_tokens\"", t->what, where, name);
    for (size_t i = 0; i < json_array_size(ids); i++) {
        json_t *v = json_array_get(ids, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return ds_fail(DS_EDATA, "%s: %s: special token '%s' has a bad id", t->what, where, name);
        if (tk_ids_push(out, (int32_t)json_integer_value(v))) return DS_ENOMEM;
    }
    return DS_OK;
}

/* The "single" template: ids before $A go to pre, ids after it to post. */
static int template_single(tokenizer *t, json_t *j, const char *where, tok_ids *pre, tok_ids *post)
{
    json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
    bool seen_a = false;
    int rc;
    if (json_is_string(single)) {
        /* the short form: "<s> $A </s>", each item optionally ":type_id" */
        char *s = ds_strdup(json_string_value(single)), *save = NULL;
        if (!s) return DS_ENOMEM;
        for (char *w = strtok_r(s, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
            char *colon = strrchr(w, ':');
            if (colon && colon != w) *colon = '\0';
            if (w[0] == '$') {
                if (strcmp(w, "$") && strcmp(w, "$A") && strcmp(w, "$0")) {
                    free(s);
                    return bad(t, where, "the single template may only use $A");
                }
                seen_a = true;
            } else if ((rc = template_ids(t, specials, w, where, seen_a ? post : pre))) {
                free(s);
                return rc;
            }
        }
        free(s);
    } else if (json_is_array(single)) {
        for (size_t i = 0; i < json_array_size(single); i++) {
            json_t *item = json_array_get(single, i);
            json_t *sp = json_object_get(item, "SpecialToken"), *sq = json_object_get(item, "Sequence");
            if (json_is_object(sq)) {
                const char *id = json_string_value(json_object_get(sq, "id"));
                if (!id || strcmp(id, "A")) return bad(t, where, "the single template may only use sequence A");
                seen_a = true;
            } else if (json_is_object(sp) && json_is_string(json_object_get(sp, "id"))) {
                rc = template_ids(t, specials, json_string_value(json_object_get(sp, "id")), where, seen_a ? post : pre);
                if (rc) return rc;
            } else
                return bad(t, where, "template items must be {\"SpecialToken\": ...} or {\"Sequence\": ...}");
        }
    } else
        return bad(t, where, "TemplateProcessing without a \"single\" template");
    if (!seen_a) return bad(t, where, "the single template does not contain $A");
    return DS_OK;
}

/* Roberta/Bert processors: "cls": [token, id], "sep": [token, id]. */
static int cls_sep(tokenizer *t, json_t *j, const char *key, const char *where, tok_ids *out)
{
    json_t *v = json_object_get(j, key), *id = json_array_get(v, 1);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(id) || json_integer_value(id) < 0 ||
        json_integer_value(id) > INT32_MAX)
        return ds_fail(DS_EDATA, "%s: %s: \"%s\" must be [token, id]", t->what, where, key);
    return tk_ids_push(out, (int32_t)json_integer_value(id));
}

typedef struct {
    tok_ids *pre, *post;   /* ids a template puts before and after the text */
} wrap;

static int postprocessor(tokenizer *t, json_t *j, const char *type, const char *where, void *ctx)
{
    tok_ids *pre = ((wrap *)ctx)->pre, *post = ((wrap *)ctx)->post;
    int rc = DS_OK;
    if (!strcmp(type, "ByteLevel")) return DS_OK;   /* only trims offsets */
    /* each later processor wraps what the earlier ones produced */
    tok_ids p = {0}, q = {0};
    if (!strcmp(type, "TemplateProcessing")) rc = template_single(t, j, where, &p, &q);
    else if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        rc = cls_sep(t, j, "cls", where, &p);
        if (!rc) rc = cls_sep(t, j, "sep", where, &q);
    } else
        rc = unsupported(t, where, "post_processor", type);
    if (!rc && (tk_ids_append(&p, pre->ids, pre->n) || tk_ids_append(post, q.ids, q.n))) rc = DS_ENOMEM;
    if (!rc) {
        tok_ids_free(pre);
        *pre = p;
        p = (tok_ids){0};
    }
    tok_ids_free(&p);
    tok_ids_free(&q);
    return rc;
}

int tk_load_postprocessor(tokenizer *t, json_t *j)
{
    if (!j || json_is_null(j)) return DS_OK;
    tok_ids pre = {0}, post = {0};
    wrap w = {&pre, &post};
    int rc = each_component(t, j, "post_processor", "processors", 0, postprocessor, &w);
    if (!rc) {   /* a list with no ids may have no array: the old one (room for one id) stays */
        t->nprefix = (int)pre.n;
        t->nsuffix = (int)post.n;
        if (pre.ids) {
            free(t->prefix_ids);
            t->prefix_ids = pre.ids;
            pre = (tok_ids){0};
        }
        if (post.ids) {
            free(t->suffix_ids);
            t->suffix_ids = post.ids;
            post = (tok_ids){0};
        }
    }
    tok_ids_free(&pre);
    tok_ids_free(&post);
    return rc;
}
