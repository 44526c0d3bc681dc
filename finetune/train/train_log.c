#include "train_log.h"

#include "core/files.h"
#include "core/status.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tlog_open(train_log *t, const char *output_dir, bool append)
{
    char *m = ds_path_join(output_dir, "metrics.jsonl"), *l = ds_path_join(output_dir, "train.log");
    t->metrics = fopen(m, append ? "a" : "w");
    t->log = fopen(l, append ? "a" : "w");
    int rc = t->metrics && t->log ? DS_OK : ds_fail(DS_EIO, "%s: cannot write the run's logs", output_dir);
    free(m);
    free(l);
    t->tty = isatty(STDERR_FILENO);
    if (!rc && t->pending.len) fputs(t->pending.p, t->log);
    ds_buf_free(&t->pending);
    if (rc) tlog_close(t);
    return rc;
}

int tlog_keep_until(train_log *t, const char *output_dir, long step)
{
    char *path = ds_path_join(output_dir, "metrics.jsonl"), *text = NULL;
    size_t len;
    int rc = ds_read_file(path, &text, &len);
    if (rc == DS_ENOINPUT) {
        ds_clear_error();
        rc = DS_OK;
    } else if (!rc) {
        ds_out o;
        rc = ds_out_open(&o, path);
        for (char *line = text, *next; !rc && line < text + len; line = next) {
            char *nl = memchr(line, '\n', (size_t)(text + len - line));
            next = nl ? nl + 1 : text + len;
            json_t *row = json_loadb(line, (size_t)(next - line), 0, NULL);
            json_t *s = json_object_get(row, "step");
            if (!json_is_integer(s) || json_integer_value(s) <= step) ds_out_write(&o, line, (size_t)(next - line));
            json_decref(row);
        }
        if (!rc) rc = ds_out_commit(&o);
        if (!rc && t->metrics) {
            fclose(t->metrics);
            t->metrics = fopen(path, "a");
            if (!t->metrics) rc = ds_fail(DS_EIO, "%s: cannot reopen", path);
        }
    }
    free(text);
    free(path);
    return rc;
}

void tlog_close(train_log *t)
{
    if (t->live) fputc('\n', stderr);
    if (t->metrics) fclose(t->metrics);
    if (t->log) fclose(t->log);
    report_tb_close(t->tb);
    ds_buf_free(&t->pending);
    memset(t, 0, sizeof *t);
}

static void clear_live(train_log *t)
{
    if (t->live) fputs("\r\033[K", stderr);
    t->live = false;
}

void tlog_say(train_log *t, const char *fmt, ...)
{
    if (t->quiet) return;
    va_list ap;
    clear_live(t);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (t->log) {
        va_start(ap, fmt);
        vfprintf(t->log, fmt, ap);
        va_end(ap);
        fputc('\n', t->log);
        fflush(t->log);
    } else {   /* kept for train.log; a line lost for want of memory only misses from the file */
        char line[1024];
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        if (ds_buf_puts(&t->pending, line) == DS_OK) ds_buf_putc(&t->pending, '\n');
    }
}

void tlog_live(train_log *t, const char *fmt, ...)
{
    if (!t->tty || t->quiet) return;
    va_list ap;
    fputs("\r\033[K", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
    t->live = true;
}

int tlog_row(train_log *t, json_t *row)
{
    char *s = json_dumps(row, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
    if (!s) {
        json_decref(row);
        return ds_fail(DS_ENOMEM, "out of memory writing a metrics row");
    }
    int rc = DS_OK;
    if (t->metrics && (fprintf(t->metrics, "%s\n", s) < 0 || fflush(t->metrics) != 0))
        rc = ds_fail(DS_EIO, "metrics.jsonl: cannot write: %s", strerror(errno));
    free(s);
    if (t->tb && report_tb_row(t->tb, row)) {
        tlog_say(t, "tensorboard: %s (no more events written)", ds_errmsg());
        report_tb_close(t->tb);
        t->tb = NULL;
    }
    json_decref(row);
    return rc;
}
