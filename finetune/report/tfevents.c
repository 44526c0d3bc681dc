/* finetune/report/tfevents.c - a TensorBoard event file, written by hand.
 *
 * The file is a sequence of TFRecords:
 *     uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
 * (little-endian), each record one serialized tensorboard.Event protobuf:
 *     Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
 *               Summary summary = 5; SessionLog session_log = 7; }
 *     Summary { repeated Value value = 1; }
 *     Value   { string tag = 1; float simple_value = 2; }
 *     SessionLog { SessionStatus status = 1; }   START = 1
 * The first event names the format ("brain.Event:2"), which makes TensorBoard
 * honour SessionLog START: on resume, what an earlier session logged after
 * the checkpoint is dropped, as metrics.jsonl drops it. */
#include "report_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

struct report_tb {
    FILE *f;
    char *path;
};

/* ------------------------------------------------------------ CRC-32C */

uint32_t crc32c(const void *data, size_t n)
{
    static uint32_t table[256];
    static bool ready;
    if (!ready) {   /* the reflected Castagnoli polynomial */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
        ready = true;
    }
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t crc32c_masked(const void *data, size_t n)
{
    uint32_t c = crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

/* ------------------------------------------------------------ protobuf */

static void pb_varint(sbuf *b, uint64_t v)
{
    char out[10];
    size_t n = 0;
    do {
        out[n++] = (char)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
    sb_putn(b, out, n);
}

static void pb_key(sbuf *b, int field, int wire) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }

static void pb_bytes(sbuf *b, int field, const void *data, size_t n)
{
    pb_key(b, field, 2);
    pb_varint(b, n);
    sb_putn(b, data, n);
}

static void pb_le(sbuf *b, uint64_t v, int bytes)
{
    char out[8];
    for (int i = 0; i < bytes; i++) out[i] = (char)(v >> (8 * i));
    sb_putn(b, out, (size_t)bytes);
}

static void pb_double(sbuf *b, int field, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    pb_key(b, field, 1);
    pb_le(b, u, 8);
}

static void pb_float(sbuf *b, int field, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    pb_key(b, field, 5);
    pb_le(b, u, 4);
}

/* ------------------------------------------------------------ records */

static double wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Event{wall_time, step} followed by `what` (already encoded), as one TFRecord. */
static int write_event(report_tb *tb, int64_t step, const sbuf *what)
{
    sbuf ev = {0}, rec = {0};
    pb_double(&ev, 1, wall_time());
    pb_key(&ev, 2, 0);
    pb_varint(&ev, (uint64_t)step);
    if (what->buf.len) sb_putn(&ev, what->buf.p, what->buf.len);
    pb_le(&rec, ev.buf.len, 8);
    uint32_t len_crc = crc32c_masked(rec.buf.p, 8);
    pb_le(&rec, len_crc, 4);
    if (ev.buf.len) sb_putn(&rec, ev.buf.p, ev.buf.len);
    pb_le(&rec, crc32c_masked(ev.buf.p, ev.buf.len), 4);
    int rc = DS_OK;
    if (ev.oom || rec.oom) rc = DS_ENOMEM;
    else if (fwrite(rec.buf.p, 1, rec.buf.len, tb->f) != rec.buf.len || fflush(tb->f) != 0)
        rc = ds_fail(DS_EIO, "%s: write failed: %s", tb->path, strerror(errno));
    sb_free(&ev);
    sb_free(&rec);
    return rc;
}

int report_tb_open(const char *output_dir, int64_t first_step, report_tb **out)
{
    *out = NULL;
    char *dir = ds_path_join(output_dir, "tensorboard");
    int rc = dir ? ds_mkdirs(dir) : ds_oom(0, "a path");
    struct utsname u;
    if (uname(&u) != 0) strcpy(u.nodename, "host");
    report_tb *tb = ds_calloc(1, sizeof *tb, "the event file");
    if (!rc && tb)
        tb->path = ds_strdupf("%s/events.out.tfevents.%lld.%s.%d.ds-ft", dir, (long long)time(NULL), u.nodename,
                              (int)getpid());
    if (!rc && (!tb || !tb->path)) rc = tb ? ds_oom(0, "a path") : DS_ENOMEM;
    if (!rc && !(tb->f = fopen(tb->path, "wb"))) rc = ds_open_error(tb->path, "create");
    free(dir);
    sbuf what = {0};
    pb_bytes(&what, 3, "brain.Event:2", 13);
    if (!rc) rc = write_event(tb, 0, &what);
    sb_free(&what);
    sbuf start = {0}, status = {0};
    pb_key(&status, 1, 0);
    pb_varint(&status, 1);   /* SessionLog.START */
    pb_bytes(&start, 7, status.buf.p, status.buf.len);
    if (!rc) rc = write_event(tb, first_step, &start);
    sb_free(&status);
    sb_free(&start);
    if (rc) {
        report_tb_close(tb);
        return rc;
    }
    *out = tb;
    return DS_OK;
}

/* The value metrics.jsonl shows (jansson prints reals with "%.8g" there), as float32. */
static float as_logged(const json_t *v)
{
    if (json_is_integer(v)) return (float)(double)json_integer_value(v);
    char buf[64];
    snprintf(buf, sizeof buf, "%.8g", json_real_value(v));
    return (float)strtod(buf, NULL);
}

int report_tb_row(report_tb *tb, const json_t *row)
{
    if (!tb) return DS_OK;
    const char *eval = json_string_value(json_object_get(row, "eval"));
    sbuf summary = {0}, value = {0}, what = {0};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)row, key, v) {
        if (!json_is_number(v) || !strcmp(key, "step")) continue;
        char *tag = eval ? ds_strdupf("eval/%s/%s", eval, key) : ds_strdupf("train/%s", key);
        if (!tag) {
            summary.oom = true;
            break;
        }
        value.buf.len = 0;
        pb_bytes(&value, 1, tag, strlen(tag));
        pb_float(&value, 2, as_logged(v));
        pb_bytes(&summary, 1, value.buf.p, value.buf.len);
        free(tag);
    }
    int rc = DS_OK;
    if (summary.oom || value.oom) rc = DS_ENOMEM;
    if (!rc && summary.buf.len) {
        pb_bytes(&what, 5, summary.buf.p, summary.buf.len);
        rc = write_event(tb, (int64_t)json_number_value(json_object_get(row, "step")), &what);
    }
    sb_free(&summary);
    sb_free(&value);
    sb_free(&what);
    return rc;
}

void report_tb_close(report_tb *tb)
{
    if (!tb) return;
    if (tb->f) fclose(tb->f);
    free(tb->path);
    free(tb);
}
