/* data/json_util.c - JSON files and their optional members (see json_util.h). */
#include "json_util.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>

static _Thread_local bool g_alloc_failed;   /* since json_alloc_reset() */
static _Thread_local bool g_parsing;        /* inside json_parse() */

static void *json_alloc(size_t bytes)
{
    /* Within a parse, after one failure every allocation fails: jansson's
     * lexer goes on after it could not keep a byte of a token, and only
     * another failed allocation stops it before it reads the damaged token
     * back (where it can fail an assert). */
    if (g_parsing && g_alloc_failed) return NULL;
    void *p = ds_malloc(bytes, "JSON");
    if (!p) g_alloc_failed = true;
    return p;
}

/* Before main(): every jansson allocation of the program goes through json_alloc. */
__attribute__((constructor)) static void json_use_checked_alloc(void) { json_set_alloc_funcs(json_alloc, free); }

void json_alloc_reset(void) { g_alloc_failed = false; }
bool json_alloc_failed(void) { return g_alloc_failed; }

int json_parse(const char *text, size_t len, size_t flags, json_t **root, json_error_t *err)
{
    bool before = g_alloc_failed;   /* a builder around this call keeps its own record */
    g_alloc_failed = false;
    g_parsing = true;
    *root = json_loadb(text, len, flags, err);
    g_parsing = false;
    bool failed = g_alloc_failed;
    g_alloc_failed = before || failed;
    if (failed) {
        json_decref(*root);   /* it may lack what could not be allocated */
        *root = NULL;
        return DS_ENOMEM;
    }
    return *root ? DS_OK : DS_EDATA;
}

int json_text_load(const char *text, size_t len, const char *name, size_t flags, json_t **root)
{
    json_error_t jerr;
    int rc = json_parse(text, len, flags, root, &jerr);
    if (rc == DS_ENOMEM) return ds_fail_context(rc, "%s: ", name);
    if (rc) return ds_fail(DS_EDATA, "%s:%d:%d: invalid JSON: %s", name, jerr.line, jerr.column, jerr.text);
    return DS_OK;
}

int json_file_load(const char *path, size_t flags, json_t **root)
{
    *root = NULL;
    char *text;
    size_t len;
    int rc = ds_read_file(path, &text, &len);
    if (rc) return rc;
    rc = json_text_load(text, len, path, flags, root);
    free(text);
    return rc;
}

/* The member, or NULL when absent or null. */
static const json_t *member(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

static int wrong(const char *where, const char *key, const char *want)
{
    return ds_fail(DS_EDATA, "%s: \"%s\" must be %s", where, key, want);
}

int json_get_bool(const json_t *obj, const char *key, bool dflt, const char *where, bool *out)
{
    const json_t *v = member(obj, key);
    if (!v) *out = dflt;
    else if (json_is_boolean(v)) *out = json_is_true(v);
    else return wrong(where, key, "true or false");
    return DS_OK;
}

int json_get_str(const json_t *obj, const char *key, const char *dflt, const char *where, const char **out)
{
    const json_t *v = member(obj, key);
    if (!v) *out = dflt;
    else if (json_is_string(v)) *out = json_string_value(v);
    else return wrong(where, key, "a string");
    return DS_OK;
}

int json_get_int(const json_t *obj, const char *key, long long dflt, const char *where, long long *out)
{
    const json_t *v = member(obj, key);
    if (!v) *out = dflt;
    else if (json_is_integer(v)) *out = (long long)json_integer_value(v);
    else return wrong(where, key, "an integer");
    return DS_OK;
}

int json_get_num(const json_t *obj, const char *key, double dflt, const char *where, double *out)
{
    const json_t *v = member(obj, key);
    if (!v) *out = dflt;
    else if (json_is_number(v)) *out = json_number_value(v);
    else return wrong(where, key, "a number");
    return DS_OK;
}
