#include "bundle.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "core/status.h"
#include "data/json_util.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

static const char MAGIC[8] = {'D', 'S', 'F', 'T', 'P', 'A', 'C', 'K'};
static const char *const FILES[] = {"adapter_config.json", "adapter_model.safetensors", "README.md", NULL};
#define MAX_BUNDLE ((size_t)1 << 34)   /* 16 GiB: far beyond any adapter */

int bundle_export(const char *dir, const char *out)
{
    char *data[8] = {0};
    size_t len[8] = {0};
    int n = 0, rc = DS_OK;
    json_alloc_reset();   /* a manifest member that could not be allocated makes the export fail */
    json_t *files = json_array();
    for (int i = 0; FILES[i] && !rc; i++) {
        char *path = ds_path_join(dir, FILES[i]);
        if (!path) {
            rc = DS_ENOMEM;
            break;
        }
        bool required = i < 2;
        if (!required && !ds_exists(path)) {
            free(path);
            continue;
        }
        rc = ds_read_file(path, &data[n], &len[n]);
        free(path);
        if (rc) break;
        char hex[65];
        ds_sha256_hex(data[n], len[n], hex);
        json_array_append_new(files, json_pack("{s:s, s:I, s:s}", "name", FILES[i], "size", (json_int_t)len[n],
                                               "sha256", hex));
        n++;
    }
    char *manifest = NULL;
    if (!rc) {
        json_t *m = json_pack("{s:s, s:i, s:o}", "format", "ds-ft-adapter", "version", 1, "files", files);
        manifest = json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(m);
        if (json_alloc_failed() || !manifest) rc = ds_fail_context(DS_ENOMEM, "%s: writing the manifest: ", out);
    } else {
        json_decref(files);
    }
    /* Manifest line, then the files, compressed as one frame. */
    size_t raw_len = manifest ? strlen(manifest) + 1 : 0;
    for (int i = 0; i < n; i++) raw_len += len[i];
    char *raw = NULL, *comp = NULL;
    size_t comp_len = 0;
    if (!rc && (!(raw = ds_malloc(raw_len, "an adapter bundle")) ||
                !(comp = ds_malloc(ZSTD_compressBound(raw_len), "an adapter bundle"))))
        rc = DS_ENOMEM;
    if (!rc) {
        size_t off = strlen(manifest);
        memcpy(raw, manifest, off);
        raw[off++] = '\n';
        for (int i = 0; i < n; i++) {
            memcpy(raw + off, data[i], len[i]);
            off += len[i];
        }
        ZSTD_CCtx *cc = ZSTD_createCCtx();
        if (!cc) rc = ds_fail(DS_ENOMEM, "%s: out of memory creating a zstd compressor", out);
        if (cc) {
            ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 19);
            ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
            comp_len = ZSTD_compress2(cc, comp, ZSTD_compressBound(raw_len), raw, raw_len);
            ZSTD_freeCCtx(cc);
        }
        if (!rc && ZSTD_isError(comp_len))
            rc = ds_fail(ZSTD_getErrorCode(comp_len) == ZSTD_error_memory_allocation ? DS_ENOMEM : DS_EINTERNAL,
                         "%s: compression failed: %s", out, ZSTD_getErrorName(comp_len));
    }
    if (!rc) {
        ds_out o;
        rc = ds_out_open(&o, out);
        if (!rc) {
            ds_out_write(&o, MAGIC, sizeof MAGIC);
            ds_out_write(&o, comp, comp_len);
            rc = ds_out_commit(&o);
        }
    }
    for (int i = 0; i < n; i++) free(data[i]);
    free(manifest);
    free(raw);
    free(comp);
    return rc;
}

/* A file name from a manifest: one of ours, never a path. */
static bool allowed_name(const char *name)
{
    for (int i = 0; FILES[i]; i++)
        if (!strcmp(name, FILES[i])) return true;
    return false;
}

int bundle_import(const char *in, const char *out_dir)
{
    ds_map m;
    int rc = ds_map_open(in, &m);
    if (rc) return rc;
    char *raw = NULL;
    json_t *manifest = NULL;
    size_t raw_len = 0;
    if (m.size < sizeof MAGIC || memcmp(m.data, MAGIC, sizeof MAGIC)) {
        rc = ds_fail(DS_EDATA, "%s: not a ds-ft adapter bundle (bad magic)", in);
        goto done;
    }
    const void *frame = m.data + sizeof MAGIC;
    size_t frame_len = m.size - sizeof MAGIC;
    unsigned long long content = ZSTD_getFrameContentSize(frame, frame_len);
    if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN || content > MAX_BUNDLE) {
        rc = ds_fail(DS_EDATA, "%s: corrupted bundle (bad zstd frame header)", in);
        goto done;
    }
    if (!(raw = ds_malloc(content, "an adapter bundle"))) {
        rc = DS_ENOMEM;
        goto done;
    }
    raw_len = ZSTD_decompress(raw, content, frame, frame_len);
    if (ZSTD_isError(raw_len) && ZSTD_getErrorCode(raw_len) == ZSTD_error_memory_allocation) {
        rc = ds_fail(DS_ENOMEM, "%s: out of memory decompressing the bundle", in);
        goto done;
    }
    if (ZSTD_isError(raw_len) || raw_len != content) {
        rc = ds_fail(DS_EDATA, "%s: corrupted bundle: %s", in,
                     ZSTD_isError(raw_len) ? ZSTD_getErrorName(raw_len) : "size mismatch");
        goto done;
    }
    char *nl = memchr(raw, '\n', raw_len);
    json_error_t jerr;
    if (nl && json_parse(raw, (size_t)(nl - raw), 0, &manifest, &jerr) == DS_ENOMEM) {
        rc = ds_fail_context(DS_ENOMEM, "%s: reading the manifest: ", in);
        goto done;
    }
    json_t *files = json_object_get(manifest, "files");
    if (!nl || !manifest || !json_is_array(files) ||
        strcmp(json_string_value(json_object_get(manifest, "format")) ?: "", "ds-ft-adapter")) {
        rc = ds_fail(DS_EDATA, "%s: corrupted bundle: no valid manifest", in);
        goto done;
    }
    /* Verify everything before writing anything. */
    size_t off = (size_t)(nl - raw) + 1;
    size_t i;
    json_t *f;
    int seen[8] = {0};
    json_array_foreach(files, i, f) {
        const char *name = json_string_value(json_object_get(f, "name"));
        for (int k = 0; name && FILES[k]; k++)
            if (!strcmp(name, FILES[k]) && seen[k]++) {
                rc = ds_fail(DS_EDATA, "%s: corrupted bundle: %s listed twice", in, name);
                goto done;
            }
        const char *sha = json_string_value(json_object_get(f, "sha256"));
        json_t *size = json_object_get(f, "size");
        if (!name || !sha || !json_is_integer(size) || !allowed_name(name) || json_integer_value(size) < 0 ||
            (size_t)json_integer_value(size) > raw_len - off) {
            rc = ds_fail(DS_EDATA, "%s: corrupted bundle: bad manifest entry %zu", in, i);
            goto done;
        }
        size_t n = (size_t)json_integer_value(size);
        char hex[65];
        ds_sha256_hex(raw + off, n, hex);
        if (strcmp(hex, sha)) {
            rc = ds_fail(DS_EDATA, "%s: checksum mismatch for %s (expected %.12s..., got %.12s...)", in, name, sha, hex);
            goto done;
        }
        off += n;
    }
    if (off != raw_len) {
        rc = ds_fail(DS_EDATA, "%s: corrupted bundle: %zu trailing bytes", in, raw_len - off);
        goto done;
    }
    for (int k = 0; k < 2; k++)   /* adapter_config.json and adapter_model.safetensors */
        if (!seen[k]) {
            rc = ds_fail(DS_EDATA, "%s: not an adapter bundle: no %s", in, FILES[k]);
            goto done;
        }
    char *tmp;
    rc = ds_dir_begin(out_dir, &tmp);
    if (rc) goto done;
    off = (size_t)(nl - raw) + 1;
    json_array_foreach(files, i, f) {
        size_t n = (size_t)json_integer_value(json_object_get(f, "size"));
        char *path = ds_path_join(tmp, json_string_value(json_object_get(f, "name")));
        rc = path ? ds_write_file(path, raw + off, n) : DS_ENOMEM;
        free(path);
        off += n;
        if (rc) break;
    }
    if (!rc) rc = ds_dir_commit(tmp, out_dir);
    if (rc) ds_dir_abort(tmp);
    free(tmp);
done:
    json_decref(manifest);
    free(raw);
    ds_map_close(&m);
    return rc;
}
