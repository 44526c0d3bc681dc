#define _GNU_SOURCE
#include "testutil.h"

#include "backend/backend.h"
#include "core/files.h"
#include "core/rng.h"
#include "core/status.h"
#include "data/tokenizer/tokenizer.h"

#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/wait.h>

const char *tu_shared(void)
{
    const char *e = getenv("DSFT_SHARED");
    return e && *e ? e : DSFT_SHARED_DEFAULT;
}

char *tu_shared_path(const char *rel) { return ds_path_join(tu_shared(), rel); }

char *tu_dataset_path(const char *name)
{
    char *rel = ds_strdupf("tests/data/datasets/%s", name);
    char *p = tu_source_path(rel);
    free(rel);
    return p;
}

tokenizer *tu_tokenizer(const char *rel)
{
    static struct { const char *rel; tokenizer *t; } cache[4];
    for (int i = 0; i < 4; i++)
        if (cache[i].rel && strcmp(cache[i].rel, rel) == 0) return cache[i].t;
    char *dir = tu_shared_path(rel);
    tokenizer *t = NULL;
    cr_assert_eq(tok_load(dir, &t), DS_OK, "%s: %s", rel, ds_errmsg());
    free(dir);
    for (int i = 0; i < 4; i++)
        if (!cache[i].rel) {
            cache[i].rel = rel;
            cache[i].t = t;
            break;
        }
    return t;
}
char *tu_source_path(const char *rel) { return ds_path_join(DSFT_SOURCE_DIR, rel); }
char *tu_binary_path(const char *rel) { return ds_path_join(DSFT_BINARY_DIR, rel); }

const char *tu_dsft_bin(void)
{
    const char *e = getenv("DSFT_BIN");
    return e && *e ? e : DSFT_BINARY_DIR "/ds-ft";
}

char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *t = ds_strdupf("%s/dsft-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(t)) {
        free(t);
        return NULL;
    }
    return t;
}

double tu_rel_err(const float *a, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(ref[i])) return INFINITY;
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    if (den == 0) return num == 0 ? 0 : INFINITY;
    return sqrt(num / den);
}

void tu_fill_uniform(float *x, size_t n, uint64_t seed, float scale)
{
    ds_rng r = ds_rng_make(seed, DS_STREAM_TEST);
    for (size_t i = 0; i < n; i++) x[i] = (2.0f * ds_rng_uniform(&r) - 1.0f) * scale;
}

/* A machine without the NVIDIA driver's device node has no GPU: answer that
 * without asking the CUDA runtime, whose probe takes seconds there. */
bool tu_have_gpu(void) { return access("/dev/nvidiactl", F_OK) == 0 && be_cuda_device_count() > 0; }

int tu_run(const char *cmd, const char *log)
{
    char *full = log ? ds_strdupf("%s >'%s' 2>&1", cmd, log) : strdup(cmd);
    int st = system(full);
    free(full);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}
