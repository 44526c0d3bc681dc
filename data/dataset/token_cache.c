/* data/dataset/token_cache.c - the tokenized dataset cached on disk.
 *
 * The key is a SHA-256 over everything that decides the tokens: the bytes
 * of every data file, the tokenizer (the digest of the tokenizer.json and
 * tokenizer_config.json bytes it was loaded from, and its BOS/EOS/pad ids
 * and whether it adds BOS), the example kind, each source's type /
 * mcq_format / limit / answer_base, and the options (template, sequence_len,
 * train_on_inputs, skip_bad_lines), plus a format version bumped whenever
 * rendering changes. The file:
 *
 *   header (128 bytes): "DSFTTOKC", u32 version, u32 kind, key (64 hex),
 *                       u64 payload size, u64 compressed size, sha256(payload)
 *   payload, zstd-compressed (one frame with its checksum):
 *     i64 n, skipped_lines, truncated, dropped, then per example
 *     SFT  u32 n, i32 ids[n], u8 train[n]
 *     PREF u32 np, nc, nr, i32 prompt[np], chosen[nc], rejected[nr]
 *     MCQ  u32 np, i32 prompt[np], u32 nchoices, u32 answer,
 *          per choice u32 n, i32 ids[n], u32 text bytes, text
 *
 * A cache that fails any check (size, key, checksum, counts, ids within the
 * vocabulary) is a miss and is rebuilt: it is never trusted. Written
 * atomically (core/files.h). Integers are little-endian (the host's).
 */
#include "dataset_internal.h"

#include "core/buf.h"
#include "core/files.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "core/status.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#define CACHE_MAGIC "DSFTTOKC"
#define CACHE_VERSION 1u
#define HEADER_SIZE 128
/* bumped whenever the same inputs would give other tokens */
#define RENDER_VERSION "ds-ft dataset tokens v1"

/* ---- key ---- */

static void hash_field(ds_sha256 *h, const char *name, const char *value)
{
    char len[32];
    size_t n = value ? strlen(value) : 0;
    snprintf(len, sizeof len, "=%zu:", n);
    ds_sha256_update(h, name, strlen(name));
    ds_sha256_update(h, len, strlen(len));
    if (n) ds_sha256_update(h, value, n);
    ds_sha256_update(h, value ? "\n" : "\x01\n", value ? 1 : 2);
}

static void hash_int(ds_sha256 *h, const char *name, long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    hash_field(h, name, buf);
}

/* A file's digest and length. */
static int hash_file(ds_sha256 *h, const char *name, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return ds_open_error(path, "open");
    ds_sha256 fh;
    ds_sha256_init(&fh);
    unsigned char buf[1 << 16];
    size_t got;
    unsigned long long total = 0;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        ds_sha256_update(&fh, buf, got);
        total += got;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) return ds_fail(DS_EIO, "%s: read error", path);
    uint8_t d[32];
    char hex[65];
    ds_sha256_final(&fh, d);
    ds_hex(d, 32, hex);
    hash_field(h, name, hex);
    hash_int(h, "bytes", (long long)total);
    return DS_OK;
}

int dataset_cache_key(const data_source *src, int nsrc, example_kind kind, const tokenizer *tok,
                      const data_options *opt, char key[65])
{
    key[0] = '\0';
    if (!tok) return ds_fail(DS_EINTERNAL, "dataset_cache_key: no tokenizer");
    ds_sha256 h;
    ds_sha256_init(&h);
    hash_field(&h, "format", RENDER_VERSION);
    hash_int(&h, "kind", kind);
    const chat_template *ct;
    int rc = chat_template_open(opt->chat_template, opt->template_dir, &ct);
    if (rc) return rc;
    hash_field(&h, "chat_template", chat_template_key(ct));
    chat_template_close(ct);
    hash_int(&h, "sequence_len", opt->sequence_len);
    hash_int(&h, "vocab_size", opt->vocab_size);
    hash_int(&h, "train_on_inputs", opt->train_on_inputs);
    hash_int(&h, "skip_bad_lines", opt->skip_bad_lines);
    hash_int(&h, "sources", nsrc);
    for (int i = 0; i < nsrc; i++) {
        hash_field(&h, "type", src[i].type);
        hash_field(&h, "mcq_format", src[i].mcq_format && *src[i].mcq_format ? src[i].mcq_format : "letters");
        hash_int(&h, "limit", src[i].limit > 0 ? src[i].limit : -1);
        hash_field(&h, "answer_base", src[i].answer_base && *src[i].answer_base ? src[i].answer_base : "auto");
        if (!src[i].path) return ds_fail(DS_ECONFIG, "dataset %d has no path", i + 1);
        rc = hash_file(&h, "data", src[i].path);
        if (rc) return rc;
    }
    hash_field(&h, "tokenizer", tok_digest(tok));
    hash_int(&h, "bos", tok_bos_id(tok));
    hash_int(&h, "eos", tok_eos_id(tok));
    hash_int(&h, "pad", tok_pad_id(tok));
    hash_int(&h, "adds_bos", tok_adds_bos(tok));
    uint8_t d[32];
    ds_sha256_final(&h, d);
    ds_hex(d, 32, key);
    return DS_OK;
}

/* ---- payload writer ---- */

/* Each put's status (DS_OK or DS_ENOMEM) is or-ed into *rc, checked once at the end. */
static void put(ds_buf *w, const void *data, size_t len, int *rc) { *rc |= ds_buf_append(w, data, len); }
static void put_u32(ds_buf *w, uint32_t v, int *rc) { put(w, &v, 4, rc); }
static void put_i64(ds_buf *w, int64_t v, int *rc) { put(w, &v, 8, rc); }
static void put_ids(ds_buf *w, const int32_t *ids, int n, int *rc)
{
    put_u32(w, (uint32_t)n, rc);
    put(w, ids, (size_t)n * 4, rc);
}

static int serialize(const dataset *d, ds_buf *w)
{
    int rc = DS_OK;
    put_i64(w, d->n, &rc);
    put_i64(w, d->skipped_lines, &rc);
    put_i64(w, d->truncated, &rc);
    put_i64(w, d->dropped, &rc);
    for (int i = 0; i < d->n && !rc; i++) {
        if (d->kind == EX_SFT) {
            put_ids(w, d->sft[i].ids, d->sft[i].n, &rc);
            put(w, d->sft[i].train, (size_t)d->sft[i].n, &rc);
        } else if (d->kind == EX_PREF) {
            const pref_example *x = &d->pref[i];
            put_ids(w, x->prompt, x->n_prompt, &rc);
            put_ids(w, x->chosen, x->n_chosen, &rc);
            put_ids(w, x->rejected, x->n_rejected, &rc);
        } else {
            const mcq_example *x = &d->mcq[i];
            put_ids(w, x->prompt, x->n_prompt, &rc);
            put_u32(w, (uint32_t)x->nchoices, &rc);
            put_u32(w, (uint32_t)x->answer, &rc);
            for (int c = 0; c < x->nchoices; c++) {
                put_ids(w, x->choice[c], x->n_choice[c], &rc);
                size_t tl = strlen(x->choice_text[c]);
                put_u32(w, (uint32_t)tl, &rc);
                put(w, x->choice_text[c], tl, &rc);
            }
        }
    }
    return rc;
}

static int write_cache(const char *path, const char *key, const dataset *d)
{
    ds_buf w = {0};
    if (serialize(d, &w)) {
        ds_buf_free(&w);
        return DS_ENOMEM;
    }
    size_t bound = ZSTD_compressBound(w.len);
    unsigned char *file = ds_malloc(HEADER_SIZE + bound, "the token cache");
    ZSTD_CCtx *cc = file ? ZSTD_createCCtx() : NULL;
    if (!cc) {
        int rc = file ? ds_fail(DS_ENOMEM, "out of memory creating a zstd compressor") : DS_ENOMEM;
        ds_buf_free(&w);
        free(file);
        return rc;
    }
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    size_t comp = ZSTD_compress2(cc, file + HEADER_SIZE, bound, w.p, w.len);
    ZSTD_freeCCtx(cc);
    if (ZSTD_isError(comp)) {
        int rc = ZSTD_getErrorCode(comp) == ZSTD_error_memory_allocation
                     ? ds_fail(DS_ENOMEM, "out of memory compressing the token cache")
                     : ds_fail(DS_EINTERNAL, "%s: zstd: %s", path, ZSTD_getErrorName(comp));
        ds_buf_free(&w);
        free(file);
        return rc;
    }
    memset(file, 0, HEADER_SIZE);
    memcpy(file, CACHE_MAGIC, 8);
    uint32_t version = CACHE_VERSION, kind = (uint32_t)d->kind;
    uint64_t raw = w.len, csize = comp;
    memcpy(file + 8, &version, 4);
    memcpy(file + 12, &kind, 4);
    memcpy(file + 16, key, 64);
    memcpy(file + 80, &raw, 8);
    memcpy(file + 88, &csize, 8);
    ds_sha256 h;
    ds_sha256_init(&h);
    ds_sha256_update(&h, w.p, w.len);
    ds_sha256_final(&h, file + 96);
    ds_buf_free(&w);
    int rc = ds_write_file(path, file, HEADER_SIZE + comp);
    free(file);
    return rc;
}

/* ---- payload reader: every read bounds-checked; any failure = a miss,
 * except running out of memory, which is an error ---- */

typedef struct {
    const unsigned char *p;
    size_t n, pos;
    int vocab;
    bool bad;
    bool oom;      /* out of memory (message set): not a miss */
} rbuf;

static uint32_t get_u32(rbuf *r)
{
    uint32_t v = 0;
    if (r->n - r->pos < 4) r->bad = true;
    else memcpy(&v, r->p + r->pos, 4), r->pos += 4;
    return v;
}

static int64_t get_i64(rbuf *r)
{
    int64_t v = 0;
    if (r->n - r->pos < 8) r->bad = true;
    else memcpy(&v, r->p + r->pos, 8), r->pos += 8;
    return v;
}

/* Out of memory while reading (message set): an error, not a miss. */
static bool no_memory(rbuf *r)
{
    r->bad = r->oom = true;
    return false;
}

/* A length-prefixed id list copied into the arena. */
static int32_t *get_ids(rbuf *r, ds_arena *a, int *n)
{
    uint32_t len = get_u32(r);
    *n = 0;
    if (r->bad || len > (r->n - r->pos) / 4 || len > INT32_MAX / 4) {
        r->bad = true;
        return NULL;
    }
    int32_t *ids = ds_arena_alloc(a, (size_t)len * 4);
    if (!ids) {
        no_memory(r);
        return NULL;
    }
    memcpy(ids, r->p + r->pos, (size_t)len * 4);
    r->pos += (size_t)len * 4;
    for (uint32_t i = 0; i < len; i++)
        if (ids[i] < 0 || (r->vocab > 0 && ids[i] >= r->vocab)) r->bad = true;
    *n = (int)len;
    return ids;
}

static bool parse_payload(rbuf *r, example_kind kind, dataset *d)
{
    memset(d, 0, sizeof *d);
    d->kind = kind;
    ds_arena *a = ds_arena_new();
    d->storage = a;
    if (!a) return no_memory(r);
    int64_t n = get_i64(r);
    d->skipped_lines = get_i64(r);
    d->truncated = get_i64(r);
    d->dropped = get_i64(r);
    if (r->bad || n < 0 || n > INT32_MAX || (uint64_t)n > r->n / 4 || d->skipped_lines < 0 || d->truncated < 0 ||
        d->dropped < 0)
        return false;
    size_t cap = 0;
    for (int64_t i = 0; i < n && !r->bad; i++) {
        void *slot = ds_dataset_push(d, &cap);
        if (!slot) return no_memory(r);
        if (kind == EX_SFT) {
            sft_example *x = slot;
            x->ids = get_ids(r, a, &x->n);
            if (r->bad || r->n - r->pos < (size_t)x->n) return false;
            x->train = ds_arena_alloc(a, (size_t)x->n);
            if (!x->train) return no_memory(r);
            memcpy(x->train, r->p + r->pos, (size_t)x->n);
            r->pos += (size_t)x->n;
            for (int k = 0; k < x->n; k++)
                if (x->train[k] > 1) return false;
            if (x->n < 1) return false;
        } else if (kind == EX_PREF) {
            pref_example *x = slot;
            x->prompt = get_ids(r, a, &x->n_prompt);
            x->chosen = get_ids(r, a, &x->n_chosen);
            x->rejected = get_ids(r, a, &x->n_rejected);
            if (r->bad || x->n_prompt < 1 || x->n_chosen < 1 || x->n_rejected < 1) return false;
        } else {
            mcq_example *x = slot;
            x->prompt = get_ids(r, a, &x->n_prompt);
            uint32_t nc = get_u32(r), ans = get_u32(r);
            if (r->bad || x->n_prompt < 1 || nc < 1 || nc > 26 || ans >= nc) return false;
            x->nchoices = (int)nc;
            x->answer = (int)ans;
            x->choice = ds_arena_alloc(a, nc * sizeof *x->choice);
            x->n_choice = ds_arena_alloc(a, nc * sizeof *x->n_choice);
            x->choice_text = ds_arena_alloc(a, nc * sizeof *x->choice_text);
            if (!x->choice || !x->n_choice || !x->choice_text) return no_memory(r);
            for (uint32_t c = 0; c < nc; c++) {
                x->choice[c] = get_ids(r, a, &x->n_choice[c]);
                uint32_t tl = get_u32(r);
                if (r->bad || x->n_choice[c] < 1 || tl > r->n - r->pos) return false;
                x->choice_text[c] = ds_arena_alloc(a, (size_t)tl + 1);
                if (!x->choice_text[c]) return no_memory(r);
                memcpy(x->choice_text[c], r->p + r->pos, tl);
                x->choice_text[c][tl] = '\0';
                if (memchr(x->choice_text[c], 0, tl)) return false;
                r->pos += tl;
            }
        }
    }
    return !r->bad && r->pos == r->n && d->n == n;
}

/* Load the cache if it is whole and its key matches: *hit. Anything wrong with
 * it is a miss; only running out of memory is an error. */
static int try_cache(const char *path, const char *key, example_kind kind, int vocab, dataset *out, bool *hit)
{
    *hit = false;
    char *file = NULL;
    size_t len = 0;
    int rc = ds_read_file(path, &file, &len);
    if (rc) return rc == DS_ENOMEM ? rc : DS_OK;
    unsigned char *raw = NULL;
    uint32_t version, k;
    uint64_t rawsize, csize;
    if (len < HEADER_SIZE || memcmp(file, CACHE_MAGIC, 8) != 0) goto done;
    memcpy(&version, file + 8, 4);
    memcpy(&k, file + 12, 4);
    memcpy(&rawsize, file + 80, 8);
    memcpy(&csize, file + 88, 8);
    if (version != CACHE_VERSION || k != (uint32_t)kind || memcmp(file + 16, key, 64) != 0) goto done;
    if (csize != len - HEADER_SIZE || rawsize < 32 || rawsize > ((uint64_t)1 << 40)) goto done;
    unsigned long long fcs = ZSTD_getFrameContentSize(file + HEADER_SIZE, csize);
    if (fcs != rawsize) goto done;
    if (!(raw = ds_malloc(rawsize, "the token cache"))) {
        rc = DS_ENOMEM;
        goto done;
    }
    size_t got = ZSTD_decompress(raw, rawsize, file + HEADER_SIZE, csize);
    if (ZSTD_isError(got) && ZSTD_getErrorCode(got) == ZSTD_error_memory_allocation)
        rc = ds_fail(DS_ENOMEM, "%s: out of memory decompressing the token cache", path);
    if (ZSTD_isError(got) || got != rawsize) goto done;
    uint8_t sha[32];
    ds_sha256 h;
    ds_sha256_init(&h);
    ds_sha256_update(&h, raw, rawsize);
    ds_sha256_final(&h, sha);
    if (memcmp(sha, file + 96, 32) != 0) goto done;
    rbuf r = {raw, rawsize, 0, vocab, false, false};
    *hit = parse_payload(&r, kind, out);
    if (!*hit) dataset_free(out);
    if (r.oom) rc = DS_ENOMEM;
done:
    free(raw);
    free(file);
    return rc;
}

int dataset_load_cached(const char *cache_path, const data_source *src, int nsrc, example_kind kind,
                        const tokenizer *tok, const data_options *opt, dataset *out, bool *hit)
{
    memset(out, 0, sizeof *out);
    *hit = false;
    char key[65];
    int rc = dataset_cache_key(src, nsrc, kind, tok, opt, key);
    if (rc) return rc;
    if ((rc = try_cache(cache_path, key, kind, tok_vocab_size(tok), out, hit))) return rc;
    if (*hit) return DS_OK;
    ds_clear_error();
    if ((rc = dataset_load(src, nsrc, kind, tok, opt, out))) return rc;
    rc = write_cache(cache_path, key, out);
    if (rc) {
        ds_fail_context(rc, "writing the token cache: ");
        dataset_free(out);
    }
    return rc;
}
