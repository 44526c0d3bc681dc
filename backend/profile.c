/* backend/profile.c - time by op (be_profile_begin, backend.h): a pair of CUDA
 * events around each outermost call, summed by name when profiling ends. The
 * events are made as calls come and destroyed at the end; a 7B training step
 * makes a few thousand. */
#include "backend.h"
#include "backend_internal.h"

#include "core/status.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    void *start, *stop;   /* cudaEvent_t, recorded on the stream the call is queued on */
} timed_call;

typedef struct {
    timed_call *calls;
    int n, cap;
    int depth;   /* calls open: only the outermost is timed */
} profile_state;

int be_profile_begin(backend *be)
{
    if (be->kind != BE_CUDA)
        return ds_fail(DS_EUSAGE, "timing by op needs a CUDA device (the CPU's ops are timed by the host)");
    if (be->recording) return ds_fail(DS_EINTERNAL, "timing by op while work is being recorded");
    if (be->profile) return DS_OK;
    profile_state *p = calloc(1, sizeof *p);
    if (!p) return ds_fail(DS_ENOMEM, "out of host memory for the op timings");
    be->profile = p;
    return DS_OK;
}

int be_profile_enter(backend *be, const char *name)
{
    profile_state *p = be->profile;
    if (!p) return -1;
    if (p->depth++ > 0 || be->err) return BE_PROFILE_UNTIMED;
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 1024;
        timed_call *c = realloc(p->calls, sizeof *c * (size_t)cap);
        if (!c) {
            be_fail(be, DS_ENOMEM, "out of host memory for the op timings");
            return BE_PROFILE_UNTIMED;
        }
        p->calls = c, p->cap = cap;
    }
#ifdef DS_HAVE_CUDA
    timed_call *c = &p->calls[p->n];
    c->name = name, c->stop = NULL;
    c->start = cuda_event_mark(be);
    if (!c->start) return BE_PROFILE_UNTIMED;
    return p->n++;
#else
    (void)name;
    return BE_PROFILE_UNTIMED;
#endif
}

void be_profile_leave(backend *be, int mark)
{
    profile_state *p = be->profile;
    if (!p || mark == -1) return;
    p->depth--;
#ifdef DS_HAVE_CUDA
    if (mark >= 0 && mark < p->n) p->calls[mark].stop = cuda_event_mark(be);
#endif
}

/* The events and the state, whatever the work did. */
static void profile_free(profile_state *p)
{
#ifdef DS_HAVE_CUDA
    for (int i = 0; i < p->n; i++) {
        cuda_event_free(p->calls[i].start);
        cuda_event_free(p->calls[i].stop);
    }
#endif
    free(p->calls);
    free(p);
}

static int by_time(const void *a, const void *b)
{
    const be_profile_row *x = a, *y = b;
    return (x->ms < y->ms) - (x->ms > y->ms);
}

int be_profile_end(backend *be, be_profile_row **rows, int *n)
{
    *rows = NULL, *n = 0;
    profile_state *p = be->profile;
    if (!p) return DS_OK;
    be->profile = NULL;
    int rc = be_sync(be);
    be_profile_row *r = rc ? NULL : calloc((size_t)p->n + 1, sizeof *r);
    if (!rc && !r) rc = ds_fail(DS_ENOMEM, "out of host memory for the op timings");
    int nr = 0;
#ifdef DS_HAVE_CUDA
    for (int i = 0; r && i < p->n; i++) {
        const timed_call *c = &p->calls[i];
        if (!c->stop) continue;
        int k = 0;
        while (k < nr && strcmp(r[k].name, c->name)) k++;
        if (k == nr) r[nr++] = (be_profile_row){.name = c->name};
        r[k].ms += cuda_event_ms(c->start, c->stop);
        r[k].calls++;
    }
#endif
    profile_free(p);
    if (rc) {
        free(r);
        return rc;
    }
    qsort(r, (size_t)nr, sizeof *r, by_time);
    *rows = r, *n = nr;
    return DS_OK;
}

void be_profile_drop(backend *be)
{
    if (be->profile) profile_free(be->profile);
    be->profile = NULL;
}
