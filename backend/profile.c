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
        return be_fail(be, DS_EUSAGE, "timing by op needs a CUDA device (the CPU's ops are timed by the host)");
    if (be->profile) return DS_OK;
    profile_state *p = calloc(1, sizeof *p);
    if (!p) return be_fail(be, DS_ENOMEM, "out of host memory for the op timings");
    be->profile = p;
    return DS_OK;
}

/* @return the call's index, or PROFILE_UNTIMED for a call inside another (or
 * after a failure): be_profile_leave() must follow either way. */
enum { PROFILE_UNTIMED = -2 };

int be_profile_enter(backend *be, const char *name)
{
    profile_state *p = be->profile;
    if (!p) return -1;
    if (p->depth++ > 0 || be->err) return PROFILE_UNTIMED;
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 1024;
        timed_call *c = realloc(p->calls, sizeof *c * (size_t)cap);
        if (!c) {
            be_fail(be, DS_ENOMEM, "out of host memory for the op timings");
            return PROFILE_UNTIMED;
        }
        p->calls = c, p->cap = cap;
    }
#ifdef DS_HAVE_CUDA
    timed_call *c = &p->calls[p->n];
    c->name = name, c->stop = NULL;
    c->start = cuda_event_mark(be);
    if (!c->start) return PROFILE_UNTIMED;
    return p->n++;
#else
    (void)name;
    return PROFILE_UNTIMED;
#endif
}

void be_profile_leave(backend *be, int mark)
{
    profile_state *p = be->profile;
    if (!p || mark == -1) return;
    p->depth--;
#ifdef DS_HAVE_CUDA
    if (mark >= 0 && mark < p->n) p->calls[mark].stop = cuda_event_mark(be);
#else
    (void)mark;
#endif
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
    if (!rc && !r) rc = be_fail(be, DS_ENOMEM, "out of host memory for the op timings");
    int nr = 0;
#ifdef DS_HAVE_CUDA
    for (int i = 0; i < p->n; i++) {
        timed_call *c = &p->calls[i];
        if (r && c->stop) {
            int k = 0;
            while (k < nr && strcmp(r[k].name, c->name)) k++;
            if (k == nr) r[nr++] = (be_profile_row){.name = c->name};
            r[k].ms += cuda_event_ms(c->start, c->stop);
            r[k].calls++;
        }
        cuda_event_free(c->start);
        cuda_event_free(c->stop);
    }
#endif
    free(p->calls);
    free(p);
    if (rc) {
        free(r);
        return rc;
    }
    qsort(r, (size_t)nr, sizeof *r, by_time);
    *rows = r, *n = nr;
    return DS_OK;
}

/* Called by be_close(): a profile left open is dropped. */
void be_profile_drop(backend *be)
{
    be_profile_row *rows;
    int n;
    if (be->profile) {
        be->err = 0;   /* closing: the events are freed whatever the work did */
        (void)be_profile_end(be, &rows, &n);
        free(rows);
    }
}
