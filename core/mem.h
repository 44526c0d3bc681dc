/* core/mem.h - the allocation policy: every allocation is checked, and running
 * out of memory is an error code with a message, never an abort.
 *
 *     float *x = ds_malloc(n * sizeof *x, "logits");
 *     if (!x) return DS_ENOMEM;            // the message is already set
 *
 * Growable storage goes through ds_grow() (typed arrays) or ds_buf (bytes and
 * text, core/buf.h), the one place where capacity doubling is written.
 */
#ifndef DS_CORE_MEM_H
#define DS_CORE_MEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ds_malloc() : `bytes` bytes (at least 1). @return NULL after setting the
 * message "out of memory allocating N bytes for WHAT" (status DS_ENOMEM). */
void *ds_malloc(size_t bytes, const char *what);
/* ds_calloc() : n zeroed elements of `size` bytes; overflow of n * size is an
 * out-of-memory failure too. @return NULL with the message set. */
void *ds_calloc(size_t n, size_t size, const char *what);
/* ds_strdup() : a copy of s. @return NULL with the message set. */
char *ds_strdup(const char *s);
/* ds_oom() : set the out-of-memory message. @return DS_ENOMEM. */
int ds_oom(size_t bytes, const char *what);

/* ds_grow() : make the array *arr (of elements of `elem` bytes, *cap of them
 * allocated) hold at least `need` elements, doubling its capacity; new
 * elements are zeroed. On failure *arr and *cap are unchanged.
 * @return DS_OK or DS_ENOMEM (message set).
 *
 *     if (ds_grow(&v->ids, &v->cap, v->n + 1, sizeof *v->ids)) return DS_ENOMEM;
 */
static inline int ds_grow(void *arr, size_t *cap, size_t need, size_t elem);
/* ds_grow_to() : the growth itself, which ds_grow() calls when there is not
 * room already (ds_grow is inline, for the loops that push one at a time). */
int ds_grow_to(void *arr, size_t *cap, size_t need, size_t elem);
static inline int ds_grow(void *arr, size_t *cap, size_t need, size_t elem)
{
    return need <= *cap ? 0 : ds_grow_to(arr, cap, need, elem);
}

#ifdef __cplusplus
}
#endif

#endif
