/* finetune/report/fingerprint.c - sha256 fingerprints of a model folder and
 * of data files, for run_info.json. A data file is hashed whole. A model's
 * weights can be tens of GB, so a *.safetensors file is hashed by its size,
 * its header (which names every tensor's dtype, shape and offsets) and 16
 * evenly spaced 64 KiB samples of its tensor data: a few MiB per file that
 * tell apart different weights of the same shape (report.h has the rules). */
#include "report_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "core/status.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define WHOLE_LIMIT ((uint64_t)64 << 20)   /* other files up to this are hashed whole */
#define SAMPLES 16
#define SAMPLE_BYTES ((uint64_t)64 << 10)


/* Hash bytes [off, off + len) of f. */
static int hash_range(FILE *f, const char *path, uint64_t off, uint64_t len, ds_sha256 *h)
{
    unsigned char buf[1 << 16];
    if (fseeko(f, (off_t)off, SEEK_SET) != 0) return ds_fail(DS_EIO, "%s: cannot seek: %s", path, strerror(errno));
    while (len > 0) {
        size_t want = len < sizeof buf ? (size_t)len : sizeof buf, got = fread(buf, 1, want, f);
        if (got != want) return ds_fail(DS_EIO, "%s: read error (the file changed while being read?)", path);
        ds_sha256_update(h, buf, got);
        len -= got;
    }
    return DS_OK;
}

static void finish_hex(ds_sha256 *h, char hex[65])
{
    uint8_t d[32];
    ds_sha256_final(h, d);
    ds_hex(d, 32, hex);
}

/* How a file is hashed. */
enum { HASH_MODEL_FILE, HASH_SAFETENSORS, HASH_WHOLE };

/* One file: {"name", "bytes", "sha256" (or null), "hashed": what}. */
static int hash_entry(const char *path, const char *name, int how, json_t **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return ds_open_error(path, "open");
    struct stat st;
    int rc = fstat(fileno(f), &st) == 0 ? DS_OK : ds_fail(DS_EIO, "%s: cannot stat", path);
    uint64_t size = rc ? 0 : (uint64_t)st.st_size;
    ds_sha256 h;
    ds_sha256_init(&h);
    const char *what = "whole file";
    bool hashed = true;
    if (!rc && how == HASH_SAFETENSORS) {
        unsigned char len8[8];
        uint64_t hlen = 0;
        if (fread(len8, 1, 8, f) != 8) rc = ds_fail(DS_EDATA, "%s: shorter than a safetensors header", path);
        for (int i = 7; !rc && i >= 0; i--) hlen = hlen << 8 | len8[i];
        if (!rc && hlen > size - 8) rc = ds_fail(DS_EDATA, "%s: header length %llu runs past the end of the file",
                                                path, (unsigned long long)hlen);
        uint64_t start = 8 + hlen, data = size - start;
        if (!rc) rc = hash_range(f, path, 0, start, &h);
        if (!rc && data <= SAMPLES * SAMPLE_BYTES) rc = hash_range(f, path, start, data, &h);
        else if (!rc) {
            what = "header and 16 evenly spaced 64 KiB samples of the tensor data";
            for (int k = 0; !rc && k < SAMPLES; k++)
                rc = hash_range(f, path, start + (data - SAMPLE_BYTES) / (SAMPLES - 1) * (uint64_t)k, SAMPLE_BYTES, &h);
        }
    } else if (!rc && (how == HASH_WHOLE || size <= WHOLE_LIMIT)) {
        rc = hash_range(f, path, 0, size, &h);
    } else if (!rc) {
        what = "size only (over 64 MiB and not safetensors)";
        hashed = false;
    }
    fclose(f);
    if (rc) return rc;
    char hex[65];
    finish_hex(&h, hex);
    *out = json_pack("{s:s, s:I, s:s?, s:s}", "name", name, "bytes", (json_int_t)size, "sha256", hashed ? hex : NULL,
                     "hashed", what);
    return *out ? DS_OK : ds_oom(0, "a fingerprint");
}

static bool is_file(const char *dir, const char *name)
{
    char *path = ds_path_join(dir, name);
    struct stat st;
    bool file = path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
    free(path);
    return file;
}

int fingerprint_dir(const char *dir, json_t **out)
{
    *out = NULL;
    char **names;
    int n, rc = rep_list_dir(dir, is_file, &names, &n);
    json_t *files = json_array();
    ds_sha256 all;
    ds_sha256_init(&all);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        bool st = len > 12 && !strcmp(names[i] + len - 12, ".safetensors");
        char *path = ds_path_join(dir, names[i]);
        json_t *f = NULL;
        if (!rc) rc = hash_entry(path, names[i], st ? HASH_SAFETENSORS : HASH_MODEL_FILE, &f);
        if (!rc) {
            const char *sha = json_string_value(json_object_get(f, "sha256"));
            char line[1024];
            snprintf(line, sizeof line, "%s %lld %s\n", names[i], (long long)json_integer_value(json_object_get(f, "bytes")),
                     sha ? sha : "-");
            ds_sha256_update(&all, line, strlen(line));
            json_array_append_new(files, f);
        }
        free(path);
        free(names[i]);
    }
    free(names);
    if (rc) {
        json_decref(files);
        return rc;
    }
    char hex[65];
    finish_hex(&all, hex);
    *out = json_pack("{s:s, s:s, s:s, s:o}", "path", dir, "sha256", hex, "hashed",
                     "sha256 of the lines 'NAME SIZE SHA256' of the folder's files (safetensors: header and 16 x 64 "
                     "KiB samples of the tensor data; other files whole up to 64 MiB)",
                     "files", files);
    return *out ? DS_OK : ds_oom(0, "a fingerprint");
}

int fingerprint_file(const char *path, json_t **out)
{
    json_t *e = NULL;
    int rc = hash_entry(path, path, HASH_WHOLE, &e);
    *out = rc ? NULL : json_pack("{s:s, s:O, s:O}", "path", path, "bytes", json_object_get(e, "bytes"), "sha256",
                                 json_object_get(e, "sha256"));
    json_decref(e);
    return rc || *out ? rc : ds_oom(0, "a fingerprint");
}
