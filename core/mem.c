/* core/mem.c - checked allocation (see mem.h) and the failure hook of mem_test.h. */
#include "mem.h"
#include "mem_test.h"

#include "status.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Allocations left before the planned failure; -1 = none planned. */
static atomic_long g_fail_countdown = -1;
static void (*_Atomic g_on_alloc)(void);

void ds_mem_fail_after(long n) { atomic_store(&g_fail_countdown, n < 0 ? -1 : n); }

bool ds_mem_fail_pending(void) { return atomic_load(&g_fail_countdown) >= 0; }

void ds_mem_on_alloc(void (*fn)(void)) { atomic_store(&g_on_alloc, fn); }

/* Whether this allocation is the planned failure (counting it). */
static bool planned_failure(void)
{
    void (*on_alloc)(void) = atomic_load_explicit(&g_on_alloc, memory_order_relaxed);
    if (on_alloc) on_alloc();
    if (atomic_load_explicit(&g_fail_countdown, memory_order_relaxed) < 0) return false;
    return atomic_fetch_sub(&g_fail_countdown, 1) == 0;   /* 0 -> -1: fails once, then none planned */
}

int ds_oom(size_t bytes, const char *what)
{
    return ds_fail(DS_ENOMEM, "out of memory allocating %zu bytes%s%s", bytes, what ? " for " : "", what ? what : "");
}

void *ds_malloc(size_t bytes, const char *what)
{
    void *p = planned_failure() ? NULL : malloc(bytes ? bytes : 1);
    if (!p) ds_oom(bytes, what);
    return p;
}

void *ds_calloc(size_t n, size_t size, const char *what)
{
    if (size && n > SIZE_MAX / size) {
        ds_oom(SIZE_MAX, what);
        return NULL;
    }
    void *p = planned_failure() ? NULL : calloc(n ? n : 1, size ? size : 1);
    if (!p) ds_oom(n * size, what);
    return p;
}

char *ds_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = ds_malloc(n, "a string");
    if (p) memcpy(p, s, n);
    return p;
}

int ds_grow_to(void *arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return DS_OK;
    size_t nc = *cap ? *cap : 8;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return ds_oom(SIZE_MAX, "a growing array");
        nc *= 2;
    }
    if (elem && nc > SIZE_MAX / elem) return ds_oom(SIZE_MAX, "a growing array");
    void **p = arr;
    char *np = planned_failure() ? NULL : realloc(*p, nc * elem);
    if (!np) return ds_oom(nc * elem, "a growing array");
    memset(np + *cap * elem, 0, (nc - *cap) * elem);
    *p = np;
    *cap = nc;
    return DS_OK;
}
