/* data/dataset/dataset_arena.c - where a dataset's tokens live: one arena of large
 * blocks per dataset (dataset.storage), freed at once by dataset_free().
 * Views from dataset_split share the arena and own only their example list.
 */
#include "dataset_internal.h"

#include <stdlib.h>
#include <string.h>

struct ds_arena_block {
    ds_arena_block *next;
    size_t used, cap;
    _Alignas(8) unsigned char data[];
};

ds_arena *ds_arena_new(void) { return calloc(1, sizeof(ds_arena)); }

void *ds_arena_alloc(ds_arena *a, size_t bytes)
{
    bytes = (bytes + 7) & ~(size_t)7;
    if (bytes == 0) bytes = 8;
    ds_arena_block *b = a->head;
    if (!b || b->cap - b->used < bytes) {
        size_t cap = bytes > ((size_t)1 << 20) ? bytes : ((size_t)1 << 20);
        b = malloc(sizeof *b + cap);
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

void *ds_dataset_push(dataset *d, int *cap)
{
    size_t size;
    unsigned char *arr = ds_examples(d, &size);
    if (d->n == *cap) {
        int nc = *cap ? 2 * *cap : 256;
        unsigned char *na = realloc(arr, (size_t)nc * size);
        if (!na) return NULL;
        ds_set_examples(d, na);
        arr = na;
        *cap = nc;
    }
    void *slot = arr + (size_t)d->n * size;
    memset(slot, 0, size);
    d->n++;
    return slot;
}

