/* data/tokenizer/tokenizer.c - loading a tokenizer folder; the public accessors.
 *
 * tokenizer.json gives the pipeline; tokenizer_config.json (transformers'
 * side) adds special tokens it names and decides what add_special puts
 * around the text. transformers replaces the post-processor with a BOS/EOS
 * template when the config sets add_bos_token/add_eos_token (or when
 * tokenizer.json has none), and its Llama tokenizer classes default to
 * add_bos_token = true. Otherwise tokenizer.json's post-processor decides.
 * Without tokenizer_config.json and without a post-processor, the tokenizer
 * is read as LlamaTokenizerFast reads it: BOS first, its id supplied by the
 * model (tok_set_default_ids; see tokenizer.h).
 */
#include "tokenizer_internal.h"
#include "data/json_util.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "core/status.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_uint_fast64_t g_serial;

/* ------------------------------------------------------------ added tokens */

/* The id HF gives the next token that is in neither vocabulary. */
static int32_t first_new_id(const tokenizer *t)
{
    int32_t vocab = (int32_t)t->bpe.vocab.n, max = -1;
    for (int i = 0; i < t->nadded; i++)
        if (t->added[i].id > max) max = t->added[i].id;
    if (max < 0) return vocab;
    return max >= vocab || vocab == 0 ? max + 1 : vocab;
}

/* Add one token as HF's AddedVocabulary::add_tokens does: a known string
 * keeps its id (and takes the new flags), a vocabulary string takes its
 * vocabulary id, anything else the next free id. */
static int add_token(tokenizer *t, const char *s, size_t n, tk_added flags, int32_t *next_id)
{
    if (!n) return DS_OK;
    int k = tk_added_find(t, s, n);
    if (k >= 0) {
        tk_added *a = &t->added[k];
        bool special = a->special || flags.special;   /* HF never takes a string out of its special set */
        a->lstrip = flags.lstrip;
        a->rstrip = flags.rstrip;
        a->single_word = flags.single_word;
        a->normalized = flags.normalized;
        a->special = special;
        return DS_OK;
    }
    int32_t id = tk_strmap_get(&t->bpe.vocab, s, n);
    if (id < 0) {
        if (*next_id >= (1 << 24)) return ds_fail(DS_EDATA, "%s: too many added tokens", t->what);
        id = (*next_id)++;
    }
    char *content = ds_malloc(n + 1, "an added token");
    if (!content || ds_grow(&t->added, &t->cap_added, (size_t)t->nadded + 1, sizeof *t->added) ||
        tk_strmap_put(&t->added_by_content, s, n, t->nadded)) {
        free(content);
        return DS_ENOMEM;
    }
    memcpy(content, s, n);
    content[n] = '\0';
    tk_added *a = &t->added[t->nadded++];
    *a = flags;
    a->id = id;
    a->content = content;
    a->len = n;
    a->norm = NULL;
    return DS_OK;
}

/* An AddedToken as JSON: {"content": ..., "lstrip": ..., ...}. `dflt` holds
 * the flags for members that are absent. */
static int parse_added(const char *file, const char *where, json_t *j, tk_added dflt, tk_added *out,
                       const char **s, size_t *n)
{
    json_t *c = json_object_get(j, "content");
    if (!json_is_object(j) || !json_is_string(c))
        return ds_fail(DS_EDATA, "%s: %s: expected an object with a \"content\" string", file, where);
    *s = json_string_value(c);
    *n = json_string_length(c);
    *out = dflt;
    static const char *const KEYS[] = {"special", "lstrip", "rstrip", "single_word", "normalized"};
    bool *dst[] = {&out->special, &out->lstrip, &out->rstrip, &out->single_word, &out->normalized};
    char label[512];
    snprintf(label, sizeof label, "%s: %s", file, where);
    for (int i = 0; i < 5; i++) {
        int rc = json_get_bool(j, KEYS[i], *dst[i], label, dst[i]);
        if (rc) return rc;
    }
    return DS_OK;
}

static int load_added_tokens(tokenizer *t, json_t *list)
{
    if (!list || json_is_null(list)) return DS_OK;
    if (!json_is_array(list)) return ds_fail(DS_EDATA, "%s: \"added_tokens\" is not a list", t->what);
    int32_t next = first_new_id(t);
    for (size_t i = 0; i < json_array_size(list); i++) {
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        json_t *j = json_array_get(list, i);
        tk_added a;
        const char *s;
        size_t n;
        /* serde's defaults: normalized = true, everything else false */
        int rc = parse_added(t->what, where, j, (tk_added){.normalized = true}, &a, &s, &n);
        if (!rc && !json_is_integer(json_object_get(j, "id")))
            rc = ds_fail(DS_EDATA, "%s: %s: no integer \"id\"", t->what, where);
        if (!rc) rc = add_token(t, s, n, a, &next);
        if (rc) return rc;
    }
    return DS_OK;
}

/* After loading: normalized forms, the id table and the two tries. */
static int index_added(tokenizer *t)
{
    tk_scratch *sc = tk_scratch_get(t);
    if (!sc) return DS_ENOMEM;
    for (int i = 0; i < t->nadded; i++) {
        tk_added *a = &t->added[i];
        if (a->normalized && t->nnorm) {
            int rc = tk_normalize(t, sc, a->content, a->len, &sc->buf[0], &sc->buf[1]);
            if (!rc && !(a->norm = ds_malloc(sc->buf[0].len + 1, "an added token"))) rc = DS_ENOMEM;
            if (rc) return rc;
            memcpy(a->norm, sc->buf[0].p, sc->buf[0].len);
            a->norm[sc->buf[0].len] = '\0';
            a->norm_len = sc->buf[0].len;
        }
        if (a->id + 1 > t->vocab_size) t->vocab_size = a->id + 1;
    }
    t->added_by_id = ds_malloc(((size_t)t->vocab_size + 1) * sizeof *t->added_by_id, "the added tokens' ids");
    if (!t->added_by_id) return DS_ENOMEM;
    for (int i = 0; i < t->vocab_size; i++) t->added_by_id[i] = -1;
    for (int i = 0; i < t->nadded; i++) {
        const tk_added *a = &t->added[i];
        t->added_by_id[a->id] = i;   /* a later token with the same id wins, as in HF's map */
        int rc = a->normalized ? tk_trie_add(&t->trie_norm, a->norm ? a->norm : a->content,
                                             a->norm ? a->norm_len : a->len, i)
                               : tk_trie_add(&t->trie_raw, a->content, a->len, i);
        if (rc) return rc;
    }
    return DS_OK;
}

/* The post-processor's ids must be tokens: HF would emit any number given. */
static int check_special_ids(const tokenizer *t)
{
    for (int k = 0; k < t->nprefix + t->nsuffix; k++) {
        int32_t id = k < t->nprefix ? t->prefix_ids[k] : t->suffix_ids[k - t->nprefix];
        if (!tok_token_str(t, id))
            return ds_fail(DS_EDATA, "%s: post_processor: special token id %d is not in the vocabulary", t->what, id);
    }
    return DS_OK;
}

/* ----------------------------------------------------- tokenizer_config.json */

/* A named special token `v` ("<s>", {"content": "<s>", ...} or null);
 * `where` names it in messages ("bos_token"). */
static int config_token(tokenizer *t, const char *file, json_t *v, const char *where, char **name, int32_t *next)
{
    *name = NULL;
    if (!v || json_is_null(v)) return DS_OK;
    tk_added a = {.special = true};   /* transformers adds a named token as special, not normalized */
    const char *s;
    size_t n;
    if (json_is_string(v)) {
        s = json_string_value(v);
        n = json_string_length(v);
    } else {
        int rc = parse_added(file, where, v, a, &a, &s, &n);
        if (rc) return rc;
        a.special = true;
    }
    if (!(*name = ds_strdup(s))) return DS_ENOMEM;
    /* transformers adds it unless it is already an added token */
    return tk_added_find(t, s, n) >= 0 ? DS_OK : add_token(t, s, n, a, next);
}

/* A boolean the config may leave unset: *out -1. */
static int config_bool(const char *file, json_t *cfg, const char *key, int *out)
{
    json_t *v = json_object_get(cfg, key);
    bool b = false;
    int rc = json_get_bool(cfg, key, false, file, &b);
    *out = !v || json_is_null(v) ? -1 : b;
    return rc;
}

static int load_config(tokenizer *t, const char *text, size_t len, const char *file, bool *template, int *add_bos,
                       int *add_eos, char *names[3])
{
    json_t *cfg;
    /* integers as reals: configs carry model_max_length values past 64 bits */
    int rc = json_text_load(text, len, file, JSON_DECODE_INT_AS_REAL, &cfg), split = -1;
    if (rc) return rc;
    if (!json_is_object(cfg)) rc = ds_fail(DS_EDATA, "%s: not a JSON object", file);
    if (!rc) rc = config_bool(file, cfg, "add_bos_token", add_bos);
    if (!rc) rc = config_bool(file, cfg, "add_eos_token", add_eos);
    if (!rc) rc = config_bool(file, cfg, "split_special_tokens", &split);
    t->split_special = split == 1;
    const char *cls = json_string_value(json_object_get(cfg, "tokenizer_class"));
    bool llama = cls && (!strcmp(cls, "LlamaTokenizer") || !strcmp(cls, "LlamaTokenizerFast") ||
                         !strcmp(cls, "CodeLlamaTokenizer") || !strcmp(cls, "CodeLlamaTokenizerFast"));
    *template = *add_bos >= 0 || *add_eos >= 0 || llama;
    if (*add_bos < 0) *add_bos = llama;
    int32_t next = first_new_id(t);
    /* tokens declared in added_tokens_decoder that tokenizer.json lacks, or with other flags */
    json_t *decl = json_object_get(cfg, "added_tokens_decoder");
    if (!rc && decl && !json_is_null(decl)) {
        if (!json_is_object(decl)) rc = ds_fail(DS_EDATA, "%s: \"added_tokens_decoder\" is not an object", file);
        const char *key;
        json_t *v;
        json_object_foreach(decl, key, v) {
            if (rc) break;
            tk_added a;
            const char *s;
            size_t n;
            char where[96];
            snprintf(where, sizeof where, "added_tokens_decoder.%.60s", key);
            rc = parse_added(file, where, v, (tk_added){.normalized = true}, &a, &s, &n);
            if (!rc) rc = add_token(t, s, n, a, &next);
        }
    }
    static const char *const NAMED[] = {"bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token",
                                        "mask_token"};
    for (int i = 0; !rc && i < 7; i++) {
        char *name = NULL;
        rc = config_token(t, file, json_object_get(cfg, NAMED[i]), NAMED[i], &name, &next);
        if (i < 3) names[i] = name;
        else free(name);
    }
    json_t *extra = json_object_get(cfg, "additional_special_tokens");
    if (!extra) extra = json_object_get(cfg, "extra_special_tokens");
    if (!rc && extra && !json_is_null(extra)) {
        if (!json_is_array(extra)) rc = ds_fail(DS_EDATA, "%s: \"additional_special_tokens\" is not a list", file);
        for (size_t i = 0; !rc && i < json_array_size(extra); i++) {
            char where[64], *name = NULL;
            snprintf(where, sizeof where, "additional_special_tokens[%zu]", i);
            rc = config_token(t, file, json_array_get(extra, i), where, &name, &next);
            free(name);
        }
    }
    json_decref(cfg);
    return rc;
}

/* ------------------------------------------------------------------ loading */

/* The digest of what was parsed: both files' bytes, each length-prefixed. */
static void make_digest(tokenizer *t, const char *json, size_t len, const char *config, size_t config_len)
{
    ds_sha256 h;
    ds_sha256_init(&h);
    char head[64];
    snprintf(head, sizeof head, "tokenizer.json %zu\n", len);
    ds_sha256_update(&h, head, strlen(head));
    ds_sha256_update(&h, json, len);
    if (config) snprintf(head, sizeof head, "tokenizer_config.json %zu\n", config_len);
    else snprintf(head, sizeof head, "no tokenizer_config.json\n");
    ds_sha256_update(&h, head, strlen(head));
    if (config) ds_sha256_update(&h, config, config_len);
    uint8_t d[32];
    ds_sha256_final(&h, d);
    ds_hex(d, 32, t->digest);
}

static int build(tokenizer *t, const char *json, size_t len, const char *config, size_t config_len,
                 const char *config_what)
{
    make_digest(t, json, len, config, config_len);
    json_t *root;
    int rc = json_text_load(json, len, t->what, JSON_REJECT_DUPLICATES, &root);
    if (rc) return rc;
    json_t *version = json_object_get(root, "version");
    if (!json_is_object(root)) rc = ds_fail(DS_EDATA, "%s: not a JSON object", t->what);
    else if (version && !(json_is_string(version) && !strcmp(json_string_value(version), "1.0")))
        rc = ds_fail(DS_EDATA, "%s: unknown tokenizer.json version (expected \"1.0\")", t->what);
    json_t *post = json_object_get(root, "post_processor");
    if (!rc) rc = tk_load_model(t, json_object_get(root, "model"));
    if (!rc) rc = tk_load_normalizer(t, json_object_get(root, "normalizer"));
    if (!rc) rc = tk_load_pretokenizer(t, json_object_get(root, "pre_tokenizer"));
    if (!rc) rc = tk_load_decoder(t, json_object_get(root, "decoder"));
    if (!rc) rc = tk_load_postprocessor(t, post);
    if (!rc) rc = load_added_tokens(t, json_object_get(root, "added_tokens"));
    bool template = !post || json_is_null(post);
    int add_bos = 0, add_eos = 0;
    char *names[3] = {NULL, NULL, NULL};
    if (!rc && config) {
        bool from_config = false;
        rc = load_config(t, config, config_len, config_what, &from_config, &add_bos, &add_eos, names);
        template = template || from_config;
    } else if (!rc && template) {
        /* No tokenizer_config.json: AutoTokenizer takes the class from the
         * model's config.json, LlamaTokenizerFast for the models ds-ft
         * trains, which adds BOS. Its id comes from the model. */
        t->bos_from_model = true;
    }
    t->vocab_size = t->bpe.nr;
    if (!rc) rc = index_added(t);
    if (!rc) rc = check_special_ids(t);
    int *ids[3] = {&t->bos_id, &t->eos_id, &t->pad_id};
    for (int i = 0; i < 3; i++) *ids[i] = names[i] ? tok_token_id(t, names[i]) : -1;
    if (!rc && template) {
        /* transformers' BOS/EOS template replaces the post-processor */
        if (add_bos == 1 && t->bos_id < 0)
            rc = ds_fail(DS_EDATA, "%s: add_bos_token is set but bos_token %s%s%s is not a token", config_what,
                         names[0] ? "'" : "", names[0] ? names[0] : "(none)", names[0] ? "'" : "");
        else if (add_eos == 1 && t->eos_id < 0)
            rc = ds_fail(DS_EDATA, "%s: add_eos_token is set but eos_token %s%s%s is not a token", config_what,
                         names[1] ? "'" : "", names[1] ? names[1] : "(none)", names[1] ? "'" : "");
        t->nprefix = t->nsuffix = 0;
        if (!rc && add_bos == 1) t->prefix_ids[t->nprefix++] = t->bos_id;
        if (!rc && add_eos == 1) t->suffix_ids[t->nsuffix++] = t->eos_id;
    }
    for (int i = 0; i < 3; i++) free(names[i]);
    json_decref(root);
    return rc;
}

/* A tokenizer with nothing loaded yet: NULL when out of memory (message set).
 * Its prefix and suffix have room for the one BOS and EOS that a BOS/EOS
 * template or tok_set_default_ids puts there. */
static tokenizer *new_tokenizer(const char *what)
{
    tokenizer *t = ds_calloc(1, sizeof *t, "a tokenizer");
    if (!t) return NULL;
    t->serial = atomic_fetch_add(&g_serial, 1) + 1;
    t->bos_id = t->eos_id = t->pad_id = -1;
    t->what = ds_strdup(what);
    t->prefix_ids = ds_malloc(sizeof *t->prefix_ids, "the BOS id");
    t->suffix_ids = ds_malloc(sizeof *t->suffix_ids, "the EOS id");
    if (!t->what || !t->prefix_ids || !t->suffix_ids) {
        tok_free(t);
        return NULL;
    }
    return t;
}

int tok_load_json(const char *tokenizer_json, size_t len, const char *config_json, size_t config_len,
                  const char *what, tokenizer **out)
{
    *out = NULL;
    tokenizer *t = new_tokenizer(what ? what : "tokenizer.json");
    char *cwhat = t ? ds_strdupf("%s (tokenizer_config)", t->what) : NULL;
    int rc = cwhat ? build(t, tokenizer_json, len, config_json, config_len, cwhat) : DS_ENOMEM;
    free(cwhat);
    if (rc) {
        tok_free(t);
        return rc;
    }
    *out = t;
    return DS_OK;
}

int tok_load(const char *dir, tokenizer **out)
{
    *out = NULL;
    char *path = ds_path_join(dir, "tokenizer.json"), *cpath = ds_path_join(dir, "tokenizer_config.json");
    char *json = NULL, *config = NULL;
    size_t len = 0, config_len = 0;
    int rc = !path || !cpath ? DS_ENOMEM : ds_read_file(path, &json, &len);
    if (rc == DS_ENOINPUT && !ds_is_dir(dir)) rc = ds_fail(DS_ENOINPUT, "%s: no such tokenizer folder", dir);
    if (!rc && ds_exists(cpath)) rc = ds_read_file(cpath, &config, &config_len);
    tokenizer *t = rc ? NULL : new_tokenizer(path);
    if (!rc && !t) rc = DS_ENOMEM;
    if (!rc) rc = build(t, json, len, config, config_len, cpath);
    if (rc) tok_free(t);
    else *out = t;
    free(json);
    free(config);
    free(path);
    free(cpath);
    return rc;
}

void tok_free(tokenizer *t)
{
    if (!t) return;
    tk_scratch_release_for(t);
    tk_bpe_free(&t->bpe);
    for (int i = 0; i < t->nnorm; i++) tk_norm_free(&t->norm[i]);
    for (int i = 0; i < t->npretok; i++) tk_pretok_free(&t->pretok[i]);
    for (int i = 0; i < t->ndec; i++) tk_dec_free(&t->dec[i]);
    for (int i = 0; i < t->nadded; i++) {
        free(t->added[i].content);
        free(t->added[i].norm);
    }
    free(t->norm);
    free(t->pretok);
    free(t->dec);
    free(t->added);
    free(t->added_by_id);
    tk_strmap_free(&t->added_by_content);
    tk_trie_free(&t->trie_raw);
    tk_trie_free(&t->trie_norm);
    free(t->prefix_ids);
    free(t->suffix_ids);
    free(t->what);
    free(t);
}

/* ---------------------------------------------------------------- accessors */

int tok_vocab_size(const tokenizer *t) { return t->vocab_size; }
int tok_bos_id(const tokenizer *t) { return t->bos_id; }
int tok_eos_id(const tokenizer *t) { return t->eos_id; }
int tok_pad_id(const tokenizer *t) { return t->pad_id; }
bool tok_adds_bos(const tokenizer *t) { return t->nprefix > 0 && t->bos_id >= 0 && t->prefix_ids[0] == t->bos_id; }
const char *tok_digest(const tokenizer *t) { return t->digest; }

void tok_set_default_ids(tokenizer *t, int bos, int eos, int pad)
{
    int want[3] = {bos, eos, pad}, *have[3] = {&t->bos_id, &t->eos_id, &t->pad_id};
    for (int i = 0; i < 3; i++)
        if (*have[i] < 0 && tok_token_str(t, want[i])) *have[i] = want[i];
    if (t->bos_from_model && t->bos_id >= 0 && t->nprefix == 0)
        t->prefix_ids[t->nprefix++] = t->bos_id;   /* room made by new_tokenizer */
}

int tok_token_id(const tokenizer *t, const char *token)
{
    size_t n = strlen(token);
    int k = tk_added_find(t, token, n);
    if (k >= 0) return t->added[k].id;
    return tk_strmap_get(&t->bpe.vocab, token, n);
}

const char *tok_token_str(const tokenizer *t, int id)
{
    if (id < 0 || id >= t->vocab_size) return NULL;
    if (t->added_by_id[id] >= 0) return t->added[t->added_by_id[id]].content;
    size_t len;
    return tk_bpe_token(&t->bpe, id, &len);
}

bool tok_is_special(const tokenizer *t, int id)
{
    return id >= 0 && id < t->vocab_size && t->added_by_id[id] >= 0 && t->added[t->added_by_id[id]].special;
}

bool tok_is_added(const tokenizer *t, int id) { return id >= 0 && id < t->vocab_size && t->added_by_id[id] >= 0; }

bool tok_adds_eos(const tokenizer *t) { return t->nsuffix > 0 && t->eos_id >= 0 && t->suffix_ids[t->nsuffix - 1] == t->eos_id; }

int tok_merge_count(const tokenizer *t) { return (int)t->bpe.nmerge; }

bool tok_merge_at(const tokenizer *t, int rank, const char **left, const char **right)
{
    size_t nl, nr;
    if (rank < 0 || (size_t)rank >= t->bpe.nmerge) return false;
    *left = tk_bpe_token(&t->bpe, t->bpe.merge_list[rank][0], &nl);
    *right = tk_bpe_token(&t->bpe, t->bpe.merge_list[rank][1], &nr);
    return *left && *right;
}
