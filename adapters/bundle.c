#include "bundle.h"

#include "lora.h"

#include "core/files.h"
#include "core/interrupt.h"
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
    if (!rc) rc = lora_check_files(data[0], len[0], data[1], len[1], dir);   /* a broken adapter is not shared */
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
    if (!rc && ds_interrupted()) rc = ds_interrupt_status("while packing the adapter; nothing was written");
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
static int name_index(const char *name)
{
    for (int i = 0; name && FILES[i]; i++)
        if (!strcmp(name, FILES[i])) return i;
    return -1;
}

/* The most a bundle may declare for each of FILES: a config and a README are
 * small; the tensors may be large. */
static const size_t FILE_CAP[] = {(size_t)1 << 20, MAX_BUNDLE, (size_t)16 << 20};
#define MAX_MANIFEST ((size_t)1 << 16)
#define CHUNK ((size_t)1 << 20)

/* The bundle's one zstd frame, decompressed on demand: never more than the
 * caller asks for, so the manifest's sizes bound the work and the memory. */
typedef struct {
    ZSTD_DStream *ds;
    ZSTD_inBuffer in;
    const char *path;
} unpacker;

/* Up to n bytes into dst; *got < n only at the end of the frame. */
static int unpack(unpacker *u, void *dst, size_t n, size_t *got)
{
    ZSTD_outBuffer out = {dst, n, 0};
    while (out.pos < out.size) {
        size_t in_before = u->in.pos, out_before = out.pos;
        size_t r = ZSTD_decompressStream(u->ds, &out, &u->in);
        if (ZSTD_isError(r)) return ds_fail(DS_EDATA, "%s: corrupted bundle: %s", u->path, ZSTD_getErrorName(r));
        if (r == 0 || (u->in.pos == in_before && out.pos == out_before)) break;   /* frame end, or input used up */
    }
    *got = out.pos;
    return DS_OK;
}

/* The manifest: the first line, at most MAX_MANIFEST bytes. */
static int read_manifest(unpacker *u, json_t **manifest, size_t *line_len)
{
    char *line = ds_malloc(MAX_MANIFEST + 1, "a bundle manifest");
    if (!line) return DS_ENOMEM;
    size_t n = 0, got = 1;
    int rc = DS_OK;
    while (!rc && n < MAX_MANIFEST && got == 1 && (n == 0 || line[n - 1] != '\n')) {
        rc = unpack(u, line + n, 1, &got);
        n += got;
    }
    if (!rc && (n == 0 || line[n - 1] != '\n'))
        rc = ds_fail(DS_EDATA, "%s: corrupted bundle: no manifest line in its first %zu bytes", u->path, MAX_MANIFEST);
    json_error_t jerr;
    if (!rc && !(*manifest = json_loadb(line, n - 1, 0, &jerr)))
        rc = ds_fail(DS_EDATA, "%s: corrupted bundle: manifest: %s", u->path, jerr.text);
    *line_len = n;
    free(line);
    return rc;
}

/* Every entry names one of FILES once, with a size within its cap and a
 * 64-hex-digit checksum; the total of what follows the manifest goes to *total. */
static int check_manifest(const json_t *manifest, const char *path, size_t *total)
{
    json_t *files = json_object_get(manifest, "files");
    const char *format = json_string_value(json_object_get(manifest, "format"));
    if (!json_is_array(files) || !format || strcmp(format, "ds-ft-adapter"))
        return ds_fail(DS_EDATA, "%s: corrupted bundle: no valid manifest", path);
    int seen[8] = {0};
    size_t i;
    json_t *f;
    *total = 0;
    json_array_foreach(files, i, f) {
        const char *name = json_string_value(json_object_get(f, "name"));
        const char *sha = json_string_value(json_object_get(f, "sha256"));
        json_t *size = json_object_get(f, "size");
        int k = name_index(name);
        if (k < 0 || !sha || strlen(sha) != 64 || !json_is_integer(size) || json_integer_value(size) < 0 ||
            (uint64_t)json_integer_value(size) > FILE_CAP[k])
            return ds_fail(DS_EDATA, "%s: corrupted bundle: bad manifest entry %zu", path, i);
        if (seen[k]++) return ds_fail(DS_EDATA, "%s: corrupted bundle: %s listed twice", path, name);
        *total += (size_t)json_integer_value(size);
    }
    for (int k = 0; k < 2; k++)   /* adapter_config.json and adapter_model.safetensors */
        if (!seen[k]) return ds_fail(DS_EDATA, "%s: not an adapter bundle: no %s", path, FILES[k]);
    return DS_OK;
}

/* One file of the bundle into dir, its size and checksum verified as it comes. */
static int unpack_file(unpacker *u, const json_t *entry, const char *dir, char *chunk)
{
    const char *name = json_string_value(json_object_get(entry, "name"));
    size_t left = (size_t)json_integer_value(json_object_get(entry, "size"));
    char *path = ds_path_join(dir, name);
    if (!path) return DS_ENOMEM;
    ds_out o;
    int rc = ds_out_open(&o, path);
    free(path);
    if (rc) return rc;
    ds_sha256 h;
    ds_sha256_init(&h);
    while (!rc && left) {
        if (ds_interrupted()) {
            rc = ds_interrupt_status("while unpacking the bundle; nothing was written");
            break;
        }
        size_t want = left < CHUNK ? left : CHUNK, got;
        rc = unpack(u, chunk, want, &got);
        if (!rc && got < want) rc = ds_fail(DS_EDATA, "%s: corrupted bundle: %s is cut short", u->path, name);
        if (!rc) {
            ds_sha256_update(&h, chunk, got);
            rc = ds_out_write(&o, chunk, got);
            left -= got;
        }
    }
    uint8_t digest[32];
    char hex[65];
    ds_sha256_final(&h, digest);
    ds_hex(digest, 32, hex);
    const char *sha = json_string_value(json_object_get(entry, "sha256"));
    if (!rc && strcmp(hex, sha))
        rc = ds_fail(DS_EDATA, "%s: checksum mismatch for %s (expected %.12s..., got %.12s...)", u->path, name, sha, hex);
    if (rc) ds_out_abort(&o);
    else rc = ds_out_commit(&o);
    return rc;
}

/* The unpacked adapter's two files, read back and checked as a loader would. */
static int check_unpacked(const char *dir, const char *what)
{
    char *cfg_path = ds_path_join(dir, FILES[0]), *st_path = ds_path_join(dir, FILES[1]);
    char *cfg = NULL;
    size_t cfg_len = 0;
    ds_map m = {0};
    int rc = cfg_path && st_path ? ds_read_file(cfg_path, &cfg, &cfg_len) : DS_ENOMEM;
    if (!rc) rc = ds_map_open(st_path, &m);
    if (!rc) rc = lora_check_files(cfg, cfg_len, m.data, m.size, what);
    ds_map_close(&m);
    free(cfg);
    free(cfg_path);
    free(st_path);
    return rc;
}

int bundle_import(const char *in, const char *out_dir)
{
    ds_map m;
    int rc = ds_map_open(in, &m);
    if (rc) return rc;
    unpacker u = {.path = in};
    json_t *manifest = NULL;
    char *chunk = NULL, *tmp = NULL;
    size_t line_len = 0, total = 0;
    if (m.size < sizeof MAGIC || memcmp(m.data, MAGIC, sizeof MAGIC)) {
        rc = ds_fail(DS_EDATA, "%s: not a ds-ft adapter bundle (bad magic)", in);
        goto done;
    }
    u.in = (ZSTD_inBuffer){m.data + sizeof MAGIC, m.size - sizeof MAGIC, 0};
    if (!(u.ds = ZSTD_createDStream()) || !(chunk = ds_malloc(CHUNK, "unpacking a bundle"))) {
        rc = u.ds ? DS_ENOMEM : ds_fail(DS_ENOMEM, "%s: out of memory for the decompressor", in);
        goto done;
    }
    rc = read_manifest(&u, &manifest, &line_len);
    if (!rc) rc = check_manifest(manifest, in, &total);
    /* The frame's own size, when it states one, must be the manifest's: a frame
     * that would decompress to more is refused before it is decompressed. */
    unsigned long long content = ZSTD_getFrameContentSize(m.data + sizeof MAGIC, m.size - sizeof MAGIC);
    if (!rc && content != ZSTD_CONTENTSIZE_UNKNOWN && content != line_len + total)
        rc = ds_fail(DS_EDATA, "%s: corrupted bundle: the frame holds %llu bytes, the manifest declares %zu", in,
                     content, line_len + total);
    if (!rc) rc = ds_dir_begin(out_dir, &tmp);
    json_t *files = json_object_get(manifest, "files");
    for (size_t i = 0; !rc && i < json_array_size(files); i++) rc = unpack_file(&u, json_array_get(files, i), tmp, chunk);
    size_t extra = 0;
    if (!rc) rc = unpack(&u, chunk, 1, &extra);   /* the frame ends here, its checksum verified */
    if (!rc && (extra || u.in.pos != u.in.size))
        rc = ds_fail(DS_EDATA, "%s: corrupted bundle: bytes after the files the manifest lists", in);
    if (!rc) rc = check_unpacked(tmp, in);
    if (!rc) rc = ds_dir_commit(tmp, out_dir);
    if (rc && tmp) ds_dir_abort(tmp);
done:
    free(tmp);
    free(chunk);
    ZSTD_freeDStream(u.ds);
    json_decref(manifest);
    ds_map_close(&m);
    return rc;
}
