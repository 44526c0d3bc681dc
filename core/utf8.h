/* core/utf8.h - UTF-8, as Unicode defines it well-formed: no overlong forms,
 * no surrogates (U+D800..U+DFFF), nothing above U+10FFFF. One place for
 * validating, decoding and encoding, shared by the JSON, YAML, tokenizer and
 * chat-template code.
 */
#ifndef DS_CORE_UTF8_H
#define DS_CORE_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define DS_UTF8_BAD UINT32_MAX   /* what ds_utf8_decode returns for an ill-formed sequence */

/* Offset of the first byte of the first ill-formed sequence in s[0..n), or
 * n when all of it is well-formed (ASCII runs are checked eight bytes at a
 * time). */
size_t ds_utf8_valid(const char *s, size_t n);

/* Decode the sequence at s[0..n) (n >= 1). Well-formed: the code point, and
 * *len its byte count (1-4). Ill-formed: DS_UTF8_BAD, and *len the length of
 * its maximal well-formed prefix ("maximal subpart", 1-3), which is what one
 * U+FFFD replaces in Rust's and Python's lossy decoding. */
static inline uint32_t ds_utf8_decode(const char *s, size_t n, size_t *len)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    *len = 1;
    if (c < 0x80) return c;
    size_t want;
    unsigned char lo = 0x80, hi = 0xBF;   /* the range of the second byte */
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        want = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        want = 3;
        cp = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;   /* no overlongs */
        if (c == 0xED) hi = 0x9F;   /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        want = 4;
        cp = c & 0x07;
        if (c == 0xF0) lo = 0x90;   /* no overlongs */
        if (c == 0xF4) hi = 0x8F;   /* nothing past U+10FFFF */
    } else {
        return DS_UTF8_BAD;
    }
    for (size_t k = 1; k < want; k++) {
        if (k >= n) return DS_UTF8_BAD;
        unsigned char b = u[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return DS_UTF8_BAD;
        cp = cp << 6 | (b & 0x3F);
        *len = k + 1;
    }
    *len = want;
    return cp;
}

/* Encode a code point (<= U+10FFFF); returns the byte count (1-4). */
size_t ds_utf8_encode(uint32_t cp, char out[4]);

/* The byte count a lead byte announces (1 for ASCII, continuation bytes and
 * bytes that start nothing), for stepping over characters of text already
 * known to be valid. */
static inline size_t ds_utf8_lead_len(unsigned char c)
{
    return c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
}

#endif
