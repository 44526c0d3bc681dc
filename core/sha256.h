/* core/sha256.h - SHA-256 (FIPS 180-4), for export checksums and cache keys. */
#ifndef DS_CORE_SHA256_H
#define DS_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;          /* bytes hashed so far */
    uint8_t buf[64];
    size_t nbuf;
} ds_sha256;

void ds_sha256_init(ds_sha256 *s);
void ds_sha256_update(ds_sha256 *s, const void *data, size_t len);
void ds_sha256_final(ds_sha256 *s, uint8_t out[32]);
/* Lower-case hex digest of a buffer into out[65]. */
void ds_sha256_hex(const void *data, size_t len, char out[65]);
void ds_hex(const uint8_t *bytes, size_t n, char *out);   /* out gets 2n+1 chars */

#endif
