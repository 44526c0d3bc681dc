/* data/dataset/dataset_arena.c - where a dataset's tokens live: one arena of large
 * blocks per dataset (dataset.storage), freed at once by dataset_free().
 * Views from dataset_split share the arena and own only their example list.
 */
#include "dataset_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct ds_arena_block {
    ds_arena_block *next;
    size_t used, cap;
    _Alignas(8) unsigned char data[];
};

ds_arena *ds_arena_new(void) { return ds_calloc(1, sizeof(ds_arena), "a dataset's tokens"); }

void *ds_arena_alloc(ds_arena *a, size_t bytes)
{
    if (bytes > SIZE_MAX - sizeof(ds_arena_block) - 8) {
        ds_oom(bytes, "a dataset's tokens");
        return NULL;
    }
    bytes = (bytes + 7) & ~(size_t)7;
    if (bytes == 0) bytes = 8;
    ds_arena_block *b = a->head;
    if (!b || b->cap - b->used < bytes) {
        size_t cap = bytes > ((size_t)1 << 20) ? bytes : ((size_t)1 << 20);
        b = ds_malloc(sizeof *b + cap, "a dataset's tokens");
        if (!b) return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += bytes;
    return p;
}

void ds_arena_free(ds_arena *a)
{
    if (!a) return;
    for (ds_arena_block *b = a->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    free(a);
}

void dataset_free(dataset *d)
{
    if (!d) return;
    free(d->sft);
    free(d->pref);
    free(d->mcq);
    ds_arena_free(d->storage);
    memset(d, 0, sizeof *d);
}

void *ds_dataset_push(dataset *d, size_t *cap)
{
    size_t size;
    unsigned char *arr = ds_examples(d, &size);
    if (ds_grow(&arr, cap, (size_t)d->n + 1, size)) return NULL;
    ds_set_examples(d, arr);
    void *slot = arr + (size_t)d->n * size;
    memset(slot, 0, size);
    d->n++;
    return slot;
}

