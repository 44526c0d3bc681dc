/* core/mem_test.h - a hook for tests of the out-of-memory paths: make one
 * chosen allocation of core/mem.h (ds_malloc, ds_calloc, ds_strdup, ds_grow,
 * and so ds_buf and jansson's allocations too) fail, as if memory had run
 * out. Tests only: nothing in ds-ft itself calls it.
 *
 *     for (long k = 0;; k++) {
 *         ds_mem_fail_after(k);            // allocations 0..k-1 succeed, allocation k fails
 *         int rc = operation();
 *         if (rc == DS_OK && ds_mem_fail_pending()) break;   // it needed fewer than k + 1
 *         ... rc must be DS_ENOMEM ...
 *     }
 *     ds_mem_fail_after(-1);
 */
#ifndef DS_CORE_MEM_TEST_H
#define DS_CORE_MEM_TEST_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ds_mem_fail_after() : let the next n allocations succeed and fail the one
 * after them (once; later ones succeed again). n < 0: no failure. */
void ds_mem_fail_after(long n);
/* ds_mem_fail_pending() : whether the planned failure has not happened yet. */
bool ds_mem_fail_pending(void);
/* ds_mem_on_alloc() : call fn at every allocation, before it is made (NULL:
 * none), e.g. to learn where each allocation of an operation comes from. */
void ds_mem_on_alloc(void (*fn)(void));

#ifdef __cplusplus
}
#endif

#endif
