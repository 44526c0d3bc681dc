/* data/jsonl.c - streaming JSONL / JSON-array record reader (see jsonl.h).
 *
 * Bytes come from a file or memory, through libzstd's streaming decoder when
 * the data starts with a zstd frame. A JSONL line, or one element of a JSON
 * array (found by a small scanner that tracks strings and bracket depth), is
 * collected into a bounded buffer and handed to jansson on its own, so the
 * line numbers in messages are exact and one bad record does not stop the
 * reader where skipping it is possible.
 */
#include "jsonl.h"

#include "data/json_util.h"

#include "core/buf.h"
#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "core/utf8.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define CHUNK ((size_t)1 << 16)

enum { MODE_START, MODE_JSONL, MODE_ARRAY, MODE_DONE };

struct jsonl_reader {
    char *name;
    /* raw source: a file or memory */
    FILE *f;
    const unsigned char *mem;
    size_t mem_len, mem_pos;
    bool raw_eof;
    /* zstd: compressed input buffer and decoder */
    ZSTD_DStream *zs;
    unsigned char *zbuf;
    ZSTD_inBuffer zin;
    size_t zret;                   /* the decoder's last answer: 0 = frame complete */
    /* decoded bytes: buf[pos..len) not consumed yet */
    const unsigned char *buf;
    unsigned char *own;            /* buf's storage when we own it */
    size_t len, pos;
    bool eof;
    /* the record being collected */
    ds_buf rec;
    size_t max_record;
    bool overflow;
    int line;                      /* line of the next byte */
    int mode;
    bool after_value;              /* array: an element has been read */
    bool fatal;
};

/* ---- bytes ---- */

static int raw_read(jsonl_reader *r, unsigned char *dst, size_t cap, size_t *got)
{
    *got = 0;
    if (r->raw_eof) return DS_OK;
    if (r->f) {
        *got = fread(dst, 1, cap, r->f);
        if (*got < cap) {
            if (ferror(r->f)) return ds_fail(DS_EIO, "%s: read error: %s", r->name, strerror(errno));
            r->raw_eof = true;
        }
    } else {
        size_t n = r->mem_len - r->mem_pos;
        if (n > cap) n = cap;
        memcpy(dst, r->mem + r->mem_pos, n);
        r->mem_pos += n;
        *got = n;
        if (r->mem_pos == r->mem_len) r->raw_eof = true;
    }
    return DS_OK;
}

/* Make buf[pos] available, or set eof. */
static int fill(jsonl_reader *r)
{
    if (r->pos < r->len || r->eof) return DS_OK;
    r->pos = r->len = 0;
    if (!r->zs) {
        if (r->mem) {                 /* plain memory: the whole input is one chunk */
            if (r->mem_pos == 0 && r->mem_len > 0) {
                r->buf = r->mem;
                r->len = r->mem_len;
                r->mem_pos = r->mem_len;
            } else {
                r->eof = true;
            }
            return DS_OK;
        }
        size_t got;
        int rc = raw_read(r, r->own, CHUNK, &got);
        if (rc) return rc;
        r->len = got;
        if (got == 0) r->eof = true;
        return DS_OK;
    }
    for (;;) {
        if (r->zin.pos == r->zin.size && !r->raw_eof) {
            size_t got;
            int rc = raw_read(r, r->zbuf, ZSTD_DStreamInSize(), &got);
            if (rc) return rc;
            r->zin.size = got;
            r->zin.pos = 0;
        }
        ZSTD_outBuffer out = {r->own, CHUNK, 0};
        size_t in_before = r->zin.pos;
        size_t ret = ZSTD_decompressStream(r->zs, &out, &r->zin);
        if (ZSTD_isError(ret))
            return ds_fail(DS_EDATA, "%s: corrupt zstd stream: %s", r->name, ZSTD_getErrorName(ret));
        /* 0 = the frame is complete; a call that made no progress says nothing */
        if (out.pos > 0 || r->zin.pos != in_before) r->zret = ret;
        if (out.pos > 0) {
            r->len = out.pos;
            return DS_OK;
        }
        if (r->zin.pos == r->zin.size && r->raw_eof) {
            if (r->zret != 0) return ds_fail(DS_EDATA, "%s: truncated zstd stream", r->name);
            r->eof = true;
            return DS_OK;
        }
    }
}

/* The next byte without consuming it (-1 at the end). */
static int peek(jsonl_reader *r, int *c)
{
    int rc = fill(r);
    if (rc) {
        r->fatal = true;
        return rc;
    }
    *c = r->pos < r->len ? r->buf[r->pos] : -1;
    return DS_OK;
}

static int getb(jsonl_reader *r, int *c)
{
    int rc = peek(r, c);
    if (rc == DS_OK && *c >= 0) {
        r->pos++;
        if (*c == '\n') r->line++;
    }
    return rc;
}

static bool is_ws(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int skip_ws(jsonl_reader *r, int *c)
{
    for (;;) {
        int rc = peek(r, c);
        if (rc || *c < 0 || !is_ws(*c)) return rc;
        getb(r, c);
    }
}

/* Add to the record; past max_record bytes it only notes the overflow. */
static int rec_append(jsonl_reader *r, const void *p, size_t n)
{
    if (r->overflow) return DS_OK;
    if (r->rec.len + n > r->max_record) {
        r->overflow = true;
        return DS_OK;
    }
    int rc = ds_buf_append(&r->rec, p, n);
    if (rc) r->fatal = true;
    return rc;
}

/* ---- open / close ---- */

static bool zstd_magic(const unsigned char *p, size_t n)
{
    if (n < 4) return false;
    uint32_t m = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return m == 0xFD2FB528u || (m & 0xFFFFFFF0u) == 0x184D2A50u;   /* frame or skippable frame */
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int reader_new(const char *name, size_t max_record, jsonl_reader **out)
{
    jsonl_reader *r = ds_calloc(1, sizeof *r, "a record reader");
    if (!r || !(r->name = ds_strdup(name))) {
        free(r);
        return ds_fail_context(DS_ENOMEM, "%s: ", name);
    }
    r->max_record = max_record ? max_record : JSONL_MAX_RECORD_DEFAULT;
    r->line = 1;
    *out = r;
    return DS_OK;
}

/* Look at the first raw bytes: start the zstd decoder when they are a zstd frame. */
static int setup_source(jsonl_reader *r)
{
    size_t head_len = 0;
    unsigned char head[4];
    if (r->f) {
        head_len = fread(head, 1, 4, r->f);
        if (ferror(r->f)) return ds_fail(DS_EIO, "%s: read error: %s", r->name, strerror(errno));
        if (fseek(r->f, 0, SEEK_SET) != 0) return ds_fail(DS_EIO, "%s: cannot seek: %s", r->name, strerror(errno));
    } else {
        head_len = r->mem_len < 4 ? r->mem_len : 4;
        if (head_len) memcpy(head, r->mem, head_len);
    }
    bool zst = zstd_magic(head, head_len);
    if (!zst && ends_with(r->name, ".zst"))
        return ds_fail(DS_EDATA, "%s: not a zstd stream (the file does not start with a zstd frame)", r->name);
    if (zst) {
        r->zs = ZSTD_createDStream();
        if (!r->zs) return ds_fail(DS_ENOMEM, "%s: out of memory creating a zstd decoder", r->name);
        r->zbuf = ds_malloc(ZSTD_DStreamInSize(), "zstd input");
        if (!r->zbuf) return ds_fail_context(DS_ENOMEM, "%s: ", r->name);
        ZSTD_initDStream(r->zs);
        r->zin.src = r->zbuf;
        r->zret = 1;
    }
    if (r->f || r->zs) {
        r->own = ds_malloc(CHUNK, "reading");
        if (!r->own) return ds_fail_context(DS_ENOMEM, "%s: ", r->name);
        r->buf = r->own;
    }
    return DS_OK;
}

int jsonl_open(const char *path, size_t max_record, jsonl_reader **out)
{
    *out = NULL;
    jsonl_reader *r = NULL;
    int rc = reader_new(path, max_record, &r);
    if (rc) return rc;
    r->f = fopen(path, "rb");
    if (!r->f) {
        rc = ds_open_error(path, "open");
        jsonl_close(r);
        return rc;
    }
    rc = setup_source(r);
    if (rc) {
        jsonl_close(r);
        return rc;
    }
    *out = r;
    return DS_OK;
}

int jsonl_open_mem(const void *data, size_t len, const char *name, size_t max_record, jsonl_reader **out)
{
    *out = NULL;
    jsonl_reader *r = NULL;
    int rc = reader_new(name, max_record, &r);
    if (rc) return rc;
    r->mem = data;
    r->mem_len = len;
    rc = setup_source(r);
    if (rc) {
        jsonl_close(r);
        return rc;
    }
    *out = r;
    return DS_OK;
}

void jsonl_close(jsonl_reader *r)
{
    if (!r) return;
    if (r->f) fclose(r->f);
    if (r->zs) ZSTD_freeDStream(r->zs);
    free(r->zbuf);
    free(r->own);
    ds_buf_free(&r->rec);
    free(r->name);
    free(r);
}

bool jsonl_can_continue(const jsonl_reader *r) { return !r->fatal; }
const char *jsonl_name(const jsonl_reader *r) { return r->name; }

/* ---- records ---- */

const char *jsonl_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* The invalid UTF-8 jansson stopped at: its line and column in the record. */
static int utf8_fail(const jsonl_reader *r, int line)
{
    const char *rec = r->rec.p;
    size_t bad = ds_utf8_valid(rec, r->rec.len), col0 = 0;
    if (bad == r->rec.len) return ds_fail(DS_EDATA, "%s:%d: invalid UTF-8", r->name, line);   /* not ours to find */
    for (size_t i = 0; i < bad; i++)
        if (rec[i] == '\n') {
            line++;
            col0 = i + 1;
        }
    return ds_fail(DS_EDATA, "%s:%d: invalid UTF-8 (byte 0x%02x at column %zu)", r->name, line,
                   (unsigned char)rec[bad], bad - col0 + 1);
}

/* Parse the record (which starts at `line`) as one object. jansson
 * refuses invalid UTF-8 itself; only then is the bad byte looked for. */
static int parse_record(jsonl_reader *r, int line, json_t **obj)
{
    json_error_t e;
    json_t *j;
    int rc = json_parse_fast(r->rec.p ? r->rec.p : "", r->rec.len, &j);   /* jansson's where it declines */
    if (rc == DS_EDATA) rc = json_parse(r->rec.p ? r->rec.p : "", r->rec.len, JSON_DECODE_ANY, &j, &e);
    if (rc == DS_ENOMEM) {
        r->fatal = true;
        return ds_fail_context(rc, "%s:%d: ", r->name, line);
    }
    if (rc && json_error_code(&e) == json_error_invalid_utf8) return utf8_fail(r, line);
    if (rc)
        return ds_fail(DS_EDATA, "%s:%d: malformed JSON: %s (column %d)", r->name,
                       line + (e.line > 0 ? e.line - 1 : 0), e.text, e.column);
    if (!json_is_object(j)) {
        int rc = ds_fail(DS_EDATA, "%s:%d: expected a JSON object, found %s", r->name, line, jsonl_kind(j));
        json_decref(j);
        return rc;
    }
    *obj = j;
    return DS_OK;
}

/* One line into rec (without its '\n'); *got = false at the end of the data. */
static int read_line(jsonl_reader *r, bool *got)
{
    r->rec.len = 0;
    r->overflow = false;
    *got = false;
    for (;;) {
        int rc = fill(r);
        if (rc) {
            r->fatal = true;
            return rc;
        }
        if (r->pos == r->len) return DS_OK;   /* end of data */
        *got = true;
        const unsigned char *s = r->buf + r->pos;
        size_t n = r->len - r->pos;
        const unsigned char *nl = memchr(s, '\n', n);
        size_t take = nl ? (size_t)(nl - s) : n;
        if ((rc = rec_append(r, s, take))) return rc;
        r->pos += take + (nl ? 1 : 0);
        if (nl) return DS_OK;
    }
}

static int next_jsonl(jsonl_reader *r, json_t **obj, int *line)
{
    for (;;) {
        bool got;
        int rc = read_line(r, &got);
        if (rc) return rc;
        if (!got) {
            r->mode = MODE_DONE;
            return DS_OK;
        }
        *line = r->line++;
        if (r->overflow)
            return ds_fail(DS_EDATA, "%s:%d: line longer than %zu bytes", r->name, *line, r->max_record);
        while (r->rec.len > 0 && r->rec.p[r->rec.len - 1] == '\r') r->rec.len--;
        bool blank = true;
        for (size_t i = 0; i < r->rec.len && blank; i++) blank = is_ws((unsigned char)r->rec.p[i]);
        if (blank) continue;
        return parse_record(r, *line, obj);
    }
}

static int array_fail(jsonl_reader *r, const char *what)
{
    r->fatal = true;
    return ds_fail(DS_EDATA, "%s:%d: %s", r->name, r->line, what);
}

/* Collect one array element starting with byte c (already consumed). */
static int scan_element(jsonl_reader *r, int c, int start_line)
{
    r->rec.len = 0;
    r->overflow = false;
    unsigned char ch = (unsigned char)c;
    int rc = rec_append(r, &ch, 1);
    if (rc) return rc;
    if (c == '{' || c == '[' || c == '"') {
        int depth = c == '"' ? 0 : 1;
        bool in_str = c == '"', esc = false;
        for (;;) {
            if ((rc = getb(r, &c))) return rc;
            if (c < 0) {
                r->fatal = true;
                return ds_fail(DS_EDATA, "%s:%d: unexpected end of data inside the element that starts at line %d",
                               r->name, r->line, start_line);
            }
            ch = (unsigned char)c;
            if ((rc = rec_append(r, &ch, 1))) return rc;
            if (r->overflow) {
                r->fatal = true;
                return ds_fail(DS_EDATA, "%s:%d: array element longer than %zu bytes", r->name, start_line,
                               r->max_record);
            }
            if (in_str) {
                if (esc) esc = false;
                else if (c == '\\') esc = true;
                else if (c == '"') {
                    in_str = false;
                    if (depth == 0) return DS_OK;
                }
            } else if (c == '"') {
                in_str = true;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) return DS_OK;
            }
        }
    }
    /* a bare scalar: up to the next delimiter */
    for (;;) {
        if ((rc = peek(r, &c))) return rc;
        if (c < 0 || is_ws(c) || c == ',' || c == ']' || c == '}') return DS_OK;
        getb(r, &c);
        ch = (unsigned char)c;
        if ((rc = rec_append(r, &ch, 1))) return rc;
        if (r->overflow) {
            r->fatal = true;
            return ds_fail(DS_EDATA, "%s:%d: array element longer than %zu bytes", r->name, start_line, r->max_record);
        }
    }
}

static int next_array(jsonl_reader *r, json_t **obj, int *line)
{
    int c, rc = skip_ws(r, &c);
    if (rc) return rc;
    if (r->after_value) {
        if (c == ',') {
            getb(r, &c);
            if ((rc = skip_ws(r, &c))) return rc;
            if (c == ']') return array_fail(r, "malformed JSON: ']' after ',' (trailing comma)");
        } else if (c != ']') {
            return array_fail(r, c < 0 ? "malformed JSON: unexpected end of data, expected ',' or ']'"
                                       : "malformed JSON: expected ',' or ']' after an array element");
        }
    }
    if (c == ']') {
        getb(r, &c);
        if ((rc = skip_ws(r, &c))) return rc;
        if (c >= 0) return array_fail(r, "malformed JSON: data after the end of the top-level array");
        r->mode = MODE_DONE;
        return DS_OK;
    }
    if (c < 0) return array_fail(r, "malformed JSON: unexpected end of data inside the top-level array");
    *line = r->line;
    getb(r, &c);
    if ((rc = scan_element(r, c, *line))) return rc;
    r->after_value = true;
    return parse_record(r, *line, obj);
}

int jsonl_next(jsonl_reader *r, json_t **obj, int *line)
{
    *obj = NULL;
    *line = 0;
    if (r->fatal) return ds_fail(DS_EDATA, "%s: cannot read on after an earlier error", r->name);
    if (r->mode == MODE_START) {
        int c, rc = peek(r, &c);
        if (rc) return rc;
        if (c == 0xef) {                       /* a UTF-8 byte order mark */
            int c1 = -1, c2 = -1;
            getb(r, &c);
            if ((rc = getb(r, &c1)) || (rc = getb(r, &c2))) return rc;
            if (c1 != 0xbb || c2 != 0xbf) return array_fail(r, "invalid UTF-8 at the start of the file");
        }
        if ((rc = skip_ws(r, &c))) return rc;
        if (c == '[') {
            getb(r, &c);
            r->mode = MODE_ARRAY;
        } else {
            r->mode = MODE_JSONL;
        }
    }
    switch (r->mode) {
    case MODE_JSONL: return next_jsonl(r, obj, line);
    case MODE_ARRAY: return next_array(r, obj, line);
    default: return DS_OK;
    }
}
