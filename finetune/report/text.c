/* finetune/report/text.c - the page's text: a growing buffer, HTML escaping
 * that always yields well-formed UTF-8, and number formats for people. */
#include "report_internal.h"

#include "core/mem.h"
#include "core/utf8.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_putn(sbuf *b, const char *s, size_t n)
{
    if (!b->oom && ds_buf_append(&b->buf, s, n)) b->oom = true;
}

void sb_put(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

void sb_printf(sbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        sb_putn(b, small, (size_t)n);
        return;
    }
    char *big = b->oom ? NULL : ds_malloc((size_t)n + 1, "report text");
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_putn(b, big, (size_t)n);
    free(big);
}

void sb_htmln(sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t used;
        uint32_t cp = ds_utf8_decode(s + i, n - i, &used);
        if (cp == DS_UTF8_BAD) {
            sb_put(b, "\xEF\xBF\xBD");   /* U+FFFD for the maximal ill-formed part */
            i += used;
            continue;
        }
        switch (cp) {
        case '&': sb_put(b, "&amp;"); break;
        case '<': sb_put(b, "&lt;"); break;
        case '>': sb_put(b, "&gt;"); break;
        case '"': sb_put(b, "&quot;"); break;
        case '\'': sb_put(b, "&#39;"); break;
        default:
            /* C0/C1 controls and DEL are not allowed in HTML text */
            if ((cp < 0x20 && cp != '\t' && cp != '\n') || (cp >= 0x7F && cp < 0xA0)) break;
            sb_putn(b, s + i, used);
        }
        i += used;
    }
}

void sb_html(sbuf *b, const char *s) { sb_htmln(b, s, strlen(s)); }

void sb_free(sbuf *b)
{
    ds_buf_free(&b->buf);
    b->oom = false;
}

void fmt_num(char *buf, size_t n, double v)
{
    double a = fabs(v);
    if (!isfinite(v)) snprintf(buf, n, "-");
    else if (v == 0) snprintf(buf, n, "0");
    else if (a >= 1e9) snprintf(buf, n, "%.3gG", v / 1e9);
    else if (a >= 1e6) snprintf(buf, n, "%.3gM", v / 1e6);
    else if (a >= 1e4) snprintf(buf, n, "%.3gk", v / 1e3);
    else if (a >= 1e-3) snprintf(buf, n, "%.4g", v);
    else snprintf(buf, n, "%.2e", v);
}

void fmt_seconds(char *buf, size_t n, double s)
{
    if (!isfinite(s) || s < 0) snprintf(buf, n, "-");
    else if (s < 1) snprintf(buf, n, "%.0f ms", s * 1000);
    else if (s < 60) snprintf(buf, n, "%.1f s", s);
    else {
        long t = (long)(s + 0.5);
        if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
        else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
    }
}
