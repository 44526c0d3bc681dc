/* tests/oom_sweep.c - the out-of-memory sweeps of oom_sweep.h. */
#include "oom_sweep.h"

#include "core/mem.h"
#include "core/mem_test.h"
#include "core/status.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Run op with allocation k failing; *reached: whether it got that far. */
static int run_failing(oom_operation op, void *ctx, long k, bool *reached)
{
    ds_clear_error();
    ds_mem_fail_after(k);
    int rc = op(ctx);
    *reached = !ds_mem_fail_pending();
    ds_mem_fail_after(-1);
    return rc;
}

/* Where allocation k of an operation is made: its call stack on stderr,
 * printed when a failure was swallowed, to say whose it is. */
static long g_trace_countdown = -1;

static void trace_allocation(void)
{
    if (g_trace_countdown-- != 0) return;
    void *frames[32];
    int depth = backtrace(frames, 32);
    fprintf(stderr, "the allocation whose failure was swallowed:\n");
    backtrace_symbols_fd(frames, depth, 2);
}

static void print_allocation(oom_operation op, void *ctx, long k)
{
    g_trace_countdown = k;
    ds_mem_on_alloc(trace_allocation);
    (void)op(ctx);
    ds_mem_on_alloc(NULL);
}

/* A run whose allocation k failed must fail, as running out of memory. */
static void expect_oom(const char *name, oom_operation op, void *ctx, long k, int rc, bool reached)
{
    if (rc == DS_OK) print_allocation(op, ctx, k);
    cr_assert_neq(rc, DS_OK, "%s: allocation %ld failed, yet it succeeded", name, k);
    cr_assert_eq(rc, DS_ENOMEM, "%s: allocation %ld failed: status %d, '%s'", name, k, rc, ds_errmsg());
    cr_assert(strstr(ds_errmsg(), "out of memory"), "%s: allocation %ld: message '%s'", name, k, ds_errmsg());
    cr_assert(reached, "%s: failed before allocation %ld: '%s'", name, k, ds_errmsg());
}

long sweep(const char *name, oom_operation op, void *ctx)
{
    for (long k = 0;; k++) {
        bool reached;
        int rc = run_failing(op, ctx, k, &reached);
        if (rc == DS_OK && !reached) {
            cr_log_info("%s: %ld allocations, each failure reported", name, k);
            return k;
        }
        expect_oom(name, op, ctx, k, rc, reached);
    }
}

/* The call stack of each allocation of one run, hashed. */
static struct {
    uint64_t *hash;
    size_t n, cap;
} g_stacks;

static void record_stack(void)
{
    void *frames[64];
    int depth = backtrace(frames, 64);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < depth; i++) h = (h ^ (uint64_t)(uintptr_t)frames[i]) * 0x100000001b3ull;
    ds_mem_on_alloc(NULL);   /* the record itself allocates through the same functions */
    cr_assert_eq(ds_grow(&g_stacks.hash, &g_stacks.cap, g_stacks.n + 1, sizeof *g_stacks.hash), DS_OK);
    g_stacks.hash[g_stacks.n++] = h;
    ds_mem_on_alloc(record_stack);
}

long sweep_stacks(const char *name, oom_operation op, void *ctx)
{
    if (getenv("DSFT_OOM_EVERY")) return sweep(name, op, ctx);
    int rc = op(ctx);   /* first, what a thread allocates once and keeps (PCRE2's match data) */
    cr_assert_eq(rc, DS_OK, "%s: %s", name, ds_errmsg());
    g_stacks.n = 0;
    ds_mem_on_alloc(record_stack);
    rc = op(ctx);
    ds_mem_on_alloc(NULL);
    cr_assert_eq(rc, DS_OK, "%s: %s", name, ds_errmsg());
    long n = (long)g_stacks.n, tried = 0;
    for (long k = 0; k < n; k++) {
        bool seen = false;
        for (long j = 0; j < k && !seen; j++) seen = g_stacks.hash[j] == g_stacks.hash[k];
        if (seen) continue;
        bool reached;
        rc = run_failing(op, ctx, k, &reached);
        expect_oom(name, op, ctx, k, rc, reached);
        tried++;
    }
    ds_mem_fail_after(n);   /* the whole run: all n succeed */
    rc = op(ctx);
    cr_assert(rc == DS_OK && ds_mem_fail_pending(), "%s: the run does not make the same %ld allocations", name, n);
    ds_mem_fail_after(-1);
    cr_log_info("%s: %ld allocations from %ld call stacks, each failure reported", name, n, tried);
    free(g_stacks.hash);
    g_stacks.hash = NULL;
    g_stacks.cap = 0;
    return n;
}

int files_in(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}
