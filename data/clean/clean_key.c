/* data/clean/clean_key.c - the key of a cleaning run's result, for caches:
 * a SHA-256 over every key of the config (by name and value), the bytes of
 * every input and evaluation file, and what the caller adds (the scorer's
 * model). The same key means the same kept records. */
#include "clean_internal.h"

#include "core/files.h"
#include "core/sha256.h"
#include "core/status.h"

#include <inttypes.h>
#include <string.h>

#define KEY_VERSION "ds-ft clean v1"

static void put_text(ds_sha256 *h, const char *name, const char *value)
{
    char len[40];
    snprintf(len, sizeof len, "=%zu:", value ? strlen(value) : (size_t)0);
    ds_sha256_update(h, name, strlen(name));
    ds_sha256_update(h, len, strlen(len));
    if (value) ds_sha256_update(h, value, strlen(value));
    ds_sha256_update(h, value ? "\n" : "\x01\n", value ? 1 : 2);
}

static void put_key(ds_sha256 *h, const char *section, const opt_key *k, const clean_config *cfg)
{
    char name[128], num[64];
    snprintf(name, sizeof name, "%s.%s", section, k->name);
    const void *field = (const char *)cfg + k->offset;
    switch (k->type) {
    case OPT_BOOL: put_text(h, name, *(const bool *)field ? "true" : "false"); break;
    case OPT_INT: snprintf(num, sizeof num, "%" PRId64, *(const int64_t *)field); put_text(h, name, num); break;
    case OPT_FLOAT: snprintf(num, sizeof num, "%.17g", *(const double *)field); put_text(h, name, num); break;
    case OPT_STRING:
    case OPT_CHOICE: put_text(h, name, *(char *const *)field); break;
    case OPT_STRING_LIST: {
        const opt_strings *l = field;
        snprintf(num, sizeof num, "%d", l->n);
        put_text(h, name, num);
        for (int i = 0; i < l->n; i++) put_text(h, name, l->items[i]);
        break;
    }
    default: put_text(h, name, "?"); break;
    }
}

static int put_file(ds_sha256 *h, const char *role, const char *path)
{
    ds_map m;
    int rc = ds_map_open(path, &m);
    if (rc) return rc;
    char digest[65], size[40];
    ds_sha256_hex(m.data, m.size, digest);
    snprintf(size, sizeof size, "%zu", m.size);
    ds_map_close(&m);
    put_text(h, role, digest);
    put_text(h, "bytes", size);
    return DS_OK;
}

int clean_job_key(const clean_config *cfg, const clean_job *job, const char *extra, char key[65])
{
    ds_sha256 h;
    ds_sha256_init(&h);
    put_text(&h, "format", KEY_VERSION);
    for (const clean_section *s = clean_config_sections(); s->name; s++)
        for (const opt_key *k = s->keys; k->name; k++) put_key(&h, s->name, k, cfg);
    int rc = DS_OK;
    for (int i = 0; !rc && i < job->ninputs; i++) rc = put_file(&h, "input", job->inputs[i]);
    for (int i = 0; !rc && i < job->nevals; i++) rc = put_file(&h, "eval", job->evals[i]);
    for (int i = 0; !rc && i < cfg->eval.n; i++) rc = put_file(&h, "eval", cfg->eval.items[i]);
    put_text(&h, "tokenizer", job->tok ? tok_digest(job->tok) : NULL);
    put_text(&h, "extra", extra);
    uint8_t out[32];
    ds_sha256_final(&h, out);
    ds_hex(out, 32, key);
    return rc;
}
