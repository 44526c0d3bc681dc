/* data/clean/clean_map.c - an open-addressing hash map from 64-bit keys to
 * the first 32-bit value put under each (exact duplicates: hash -> first
 * record; contamination: n-gram -> first eval item). Load stays below 1/2. */
#include "clean_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>

static int grow(clean_map *m)
{
    size_t cap = m->mask ? 2 * (m->mask + 1) : 1 << 12;
    uint64_t *keys = ds_calloc(cap, sizeof *keys, "a hash table");
    uint32_t *vals = ds_calloc(cap, sizeof *vals, "a hash table");
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return DS_ENOMEM;
    }
    for (size_t i = 0; m->mask && i <= m->mask; i++) {
        if (!m->keys[i]) continue;
        size_t j = (size_t)m->keys[i] & (cap - 1);
        while (keys[j]) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->mask = cap - 1;
    return DS_OK;
}

int clean_map_put(clean_map *m, uint64_t key, uint32_t val, uint32_t *first)
{
    if (!m->keys || 2 * (m->used + 1) > m->mask + 1) {
        int rc = grow(m);
        if (rc) return rc;
    }
    key |= 1;
    size_t j = (size_t)key & m->mask;
    while (m->keys[j] && m->keys[j] != key) j = (j + 1) & m->mask;
    if (!m->keys[j]) {
        m->keys[j] = key;
        m->vals[j] = val;
        m->used++;
    }
    *first = m->vals[j];
    return DS_OK;
}

bool clean_map_get(const clean_map *m, uint64_t key, uint32_t *val)
{
    if (!m->keys) return false;
    key |= 1;
    for (size_t j = (size_t)key & m->mask; m->keys[j]; j = (j + 1) & m->mask)
        if (m->keys[j] == key) {
            *val = m->vals[j];
            return true;
        }
    return false;
}

void clean_map_free(clean_map *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->mask = m->used = 0;
}
