/* data/template/jinja_lex.c - template source to tokens, with the
 * whitespace rules transformers' environment sets (Jinja2's lexer):
 *
 * - newlines are normalized to "\n" and one trailing newline is dropped
 *   (keep_trailing_newline=False);
 * - trim_blocks: the first newline after a block tag or comment is removed;
 * - lstrip_blocks: spaces and tabs from the start of a line up to a block
 *   tag or comment are removed;
 * - "{%-" / "{{-" / "{#-" strip all whitespace before the tag, "-%}" / "-}}"
 *   / "-#}" all whitespace after it; "{%+" keeps the line's indentation and
 *   "+%}" the newline.
 */
#include "jinja_internal.h"

#include "core/status.h"
#include "core/utf8.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;
    size_t n, pos;
    int line, col;
    jarena *a;
    jerr *e;
    jtok *t;
    int nt, cap;
} lexer;

static int push(lexer *L, jtok tok)
{
    if (L->nt == L->cap) {
        int cap = L->cap ? 2 * L->cap : 256;
        jtok *nt = jarena_alloc(L->a, (size_t)cap * sizeof *nt);
        if (!nt) return jerr_set(L->e, L->line, L->col, "out of memory");
        if (L->nt) memcpy(nt, L->t, (size_t)L->nt * sizeof *nt);
        L->t = nt;
        L->cap = cap;
    }
    L->t[L->nt++] = tok;
    return 0;
}

/* Move to `to`, counting lines and columns. */
static void advance(lexer *L, size_t to)
{
    for (; L->pos < to; L->pos++) {
        if (L->s[L->pos] == '\n') {
            L->line++;
            L->col = 1;
        } else if (((unsigned char)L->s[L->pos] & 0xc0) != 0x80) {
            L->col++;
        }
    }
}

/* Python's \s at s[i] (Unicode whitespace); *w its byte length. */
static bool space_at(const char *s, size_t n, size_t i, size_t *w)
{
    uint32_t c = ds_utf8_decode(s + i, n - i, w);
    if (c == DS_UTF8_BAD) *w = 1;
    return c != DS_UTF8_BAD && ju_space(c);
}

static size_t skip_space(const char *s, size_t n, size_t i)
{
    size_t w;
    while (i < n && space_at(s, n, i, &w)) i += w;
    return i;
}

/* text.rstrip() */
static size_t rstrip_len(const char *s, size_t n)
{
    while (n > 0) {
        size_t k = n - 1, w;
        while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80 && n - k < 4) k--;
        if (!space_at(s, n, k, &w) || k + w != n) break;
        n = k;
    }
    return n;
}

static int data(lexer *L, size_t from, size_t len, int line, int col)
{
    if (len == 0) return 0;
    return push(L, (jtok){.kind = T_DATA, .line = line, .col = col, .s = L->s + from, .n = len});
}

/* After a tag's closer at L->pos: '-' strips all whitespace, else
 * trim_blocks removes one newline (block tags and comments, not '+'). */
static bool after_close(lexer *L, char sign, bool block)
{
    size_t p = L->pos;
    if (sign == '-') p = skip_space(L->s, L->n, p);
    else if (block && sign != '+' && p < L->n && L->s[p] == '\n') p++;
    advance(L, p);
    return p > 0 && L->s[p - 1] == '\n';
}

/* ---- expressions inside {{ }} and {% %} ---- */

static int lex_string(lexer *L, jtok *tok)
{
    char q = L->s[L->pos];
    size_t i = L->pos + 1;
    jbuf b = {0};
    while (i < L->n && L->s[i] != q) {
        char c = L->s[i];
        if (c != '\\' || i + 1 >= L->n) {
            jbuf_add(&b, &c, 1);
            i++;
            continue;
        }
        char x = L->s[i + 1], out[4];
        i += 2;
        switch (x) {
        case 'n': jbuf_add(&b, "\n", 1); break;
        case 't': jbuf_add(&b, "\t", 1); break;
        case 'r': jbuf_add(&b, "\r", 1); break;
        case 'a': jbuf_add(&b, "\a", 1); break;
        case 'b': jbuf_add(&b, "\b", 1); break;
        case 'f': jbuf_add(&b, "\f", 1); break;
        case 'v': jbuf_add(&b, "\v", 1); break;
        case '\\': case '\'': case '"': jbuf_add(&b, &x, 1); break;
        case '\n': break;                              /* line continuation */
        case 'x': case 'u': case 'U': {
            int want = x == 'x' ? 2 : x == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < want; k++, i++) {
                char h = i < L->n ? L->s[i] : 0;
                int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                        : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                if (d < 0) {
                    free(b.s);
                    return jerr_set(L->e, L->line, L->col, "bad \\%c escape in a string", x);
                }
                cp = cp * 16 + (uint32_t)d;
            }
            if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
                free(b.s);
                return jerr_set(L->e, L->line, L->col, "escape \\%c names no character", x);
            }
            jbuf_add(&b, out, ds_utf8_encode(cp, out));
            break;
        }
        default:
            if (x >= '0' && x <= '7') {                /* octal, up to three digits */
                uint32_t cp = (uint32_t)(x - '0');
                for (int k = 0; k < 2 && i < L->n && L->s[i] >= '0' && L->s[i] <= '7'; k++, i++)
                    cp = cp * 8 + (uint32_t)(L->s[i] - '0');
                jbuf_add(&b, out, ds_utf8_encode(cp, out));
            } else if (x == 'N') {
                free(b.s);
                return jerr_set(L->e, L->line, L->col, "\\N{...} escapes are not supported");
            } else {                                   /* unknown escapes stay as written */
                jbuf_add(&b, "\\", 1);
                jbuf_add(&b, &x, 1);
            }
        }
    }
    if (i >= L->n) {
        free(b.s);
        return jerr_set(L->e, L->line, L->col, "unterminated string");
    }
    if (b.oom) {
        free(b.s);
        L->e->rc = DS_ENOMEM;   /* the message is set: core/mem.h */
        return jerr_set(L->e, L->line, L->col, "out of memory reading a string");
    }
    jstr *s = jv_newstr(L->a, b.s ? b.s : "", b.n);
    free(b.s);
    if (!s) return jerr_set(L->e, L->line, L->col, "out of memory");
    tok->kind = T_STRING;
    tok->s = s->s;
    tok->n = s->n;
    advance(L, i + 1);
    return 0;
}

static int lex_number(lexer *L, jtok *tok)
{
    size_t i = L->pos;
    char buf[64];
    size_t k = 0;
    bool is_float = false;
    while (i < L->n && ((L->s[i] >= '0' && L->s[i] <= '9') || L->s[i] == '_')) {
        if (L->s[i] != '_' && k < sizeof buf - 1) buf[k++] = L->s[i];
        i++;
    }
    if (i + 1 < L->n && L->s[i] == '.' && L->s[i + 1] >= '0' && L->s[i + 1] <= '9') {
        is_float = true;
        if (k < sizeof buf - 1) buf[k++] = '.';
        for (i++; i < L->n && ((L->s[i] >= '0' && L->s[i] <= '9') || L->s[i] == '_'); i++)
            if (L->s[i] != '_' && k < sizeof buf - 1) buf[k++] = L->s[i];
    }
    if (i < L->n && (L->s[i] == 'e' || L->s[i] == 'E')) {
        size_t j = i + 1;
        if (j < L->n && (L->s[j] == '+' || L->s[j] == '-')) j++;
        if (j < L->n && L->s[j] >= '0' && L->s[j] <= '9') {
            is_float = true;
            for (; i < j; i++)
                if (k < sizeof buf - 1) buf[k++] = L->s[i];
            for (; i < L->n && L->s[i] >= '0' && L->s[i] <= '9'; i++)
                if (k < sizeof buf - 1) buf[k++] = L->s[i];
        }
    }
    buf[k] = '\0';
    if (k >= sizeof buf - 1) return jerr_set(L->e, L->line, L->col, "number too long");
    if (is_float) {
        tok->kind = T_FLOAT;
        tok->f = strtod(buf, NULL);
    } else {
        errno = 0;
        unsigned long long v = strtoull(buf, NULL, 10);
        if (errno || v > (unsigned long long)INT64_MAX)
            return jerr_set(L->e, L->line, L->col, "integer %s is too large", buf);
        tok->kind = T_INT;
        tok->i = (int64_t)v;
    }
    advance(L, i);
    return 0;
}

/* Operators, longest first. */
static const char *const OPS[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "/", "*", "%", "~", "[", "]", "(",
                                  ")", "{", "}", "<", ">", "=", ".", ":", "|", ",", ";"};

/* Tokens up to the closer ("}}" or "%}"); returns the closer's sign. */
static int lex_tag(lexer *L, bool block, char *sign)
{
    int depth = 0;
    for (;;) {
        advance(L, skip_space(L->s, L->n, L->pos));
        if (L->pos >= L->n) return jerr_set(L->e, L->line, L->col, "unclosed %s", block ? "'{%'" : "'{{'");
        const char *p = L->s + L->pos;
        size_t left = L->n - L->pos;
        char close = block ? '%' : '}';
        if (depth == 0) {
            char sg = (p[0] == '-' || p[0] == '+') ? p[0] : 0;
            size_t o = sg ? 1 : 0;
            if (left >= o + 2 && p[o] == close && p[o + 1] == '}' && !(sg == '+' && !block)) {
                *sign = sg;
                int line = L->line, col = L->col;
                advance(L, L->pos + o + 2);
                return push(L, (jtok){.kind = block ? T_BLOCK_END : T_VAR_END, .line = line, .col = col});
            }
        }
        jtok tok = {.line = L->line, .col = L->col};
        int rc;
        if (p[0] == '\'' || p[0] == '"') {
            rc = lex_string(L, &tok);
        } else if (p[0] >= '0' && p[0] <= '9') {
            rc = lex_number(L, &tok);
        } else if ((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z') || p[0] == '_') {
            size_t k = 1;
            while (k < left && ((p[k] >= 'a' && p[k] <= 'z') || (p[k] >= 'A' && p[k] <= 'Z') || p[k] == '_' ||
                                (p[k] >= '0' && p[k] <= '9')))
                k++;
            tok.kind = T_NAME;
            tok.s = p;
            tok.n = k;
            advance(L, L->pos + k);
            rc = 0;
        } else {
            const char *op = NULL;
            for (size_t i = 0; i < sizeof OPS / sizeof OPS[0] && !op; i++)
                if (left >= strlen(OPS[i]) && memcmp(p, OPS[i], strlen(OPS[i])) == 0) op = OPS[i];
            if (!op) return jerr_set(L->e, L->line, L->col, "unexpected character '%.*s'",
                                     (int)ds_utf8_lead_len((unsigned char)p[0]), p);
            if (op[0] == '(' || op[0] == '[' || op[0] == '{') depth++;
            if ((op[0] == ')' || op[0] == ']' || op[0] == '}') && depth > 0) depth--;
            tok.kind = T_OP;
            tok.s = op;
            tok.n = strlen(op);
            advance(L, L->pos + tok.n);
            rc = 0;
        }
        if (rc || (rc = push(L, tok))) return rc;
    }
}

/* "{% raw %}" at `at` (the opener's position): the raw text up to
 * "{% endraw %}" becomes data. Returns 1 when it was a raw block. */
static int try_raw(lexer *L, size_t at, bool *line_starting)
{
    size_t i = at + 2;
    if (i < L->n && (L->s[i] == '-' || L->s[i] == '+')) i++;
    i = skip_space(L->s, L->n, i);
    if (L->n - i < 3 || memcmp(L->s + i, "raw", 3) != 0) return 0;
    i = skip_space(L->s, L->n, i + 3);
    char sign = 0;
    if (i < L->n && (L->s[i] == '-' || L->s[i] == '+')) sign = L->s[i++];
    if (L->n - i < 2 || memcmp(L->s + i, "%}", 2) != 0) return 0;
    advance(L, i + 2);
    if (sign == '-') advance(L, skip_space(L->s, L->n, L->pos));
    /* find {% endraw %} */
    for (size_t k = L->pos; k + 1 < L->n; k++) {
        if (L->s[k] != '{' || L->s[k + 1] != '%') continue;
        size_t j = k + 2;
        char open_sign = 0;
        if (j < L->n && (L->s[j] == '-' || L->s[j] == '+')) open_sign = L->s[j++];
        j = skip_space(L->s, L->n, j);
        if (L->n - j < 6 || memcmp(L->s + j, "endraw", 6) != 0) continue;
        j = skip_space(L->s, L->n, j + 6);
        char close_sign = 0;
        if (j < L->n && (L->s[j] == '-' || L->s[j] == '+')) close_sign = L->s[j++];
        if (L->n - j < 2 || memcmp(L->s + j, "%}", 2) != 0) continue;
        size_t len = k - L->pos;
        if (open_sign == '-') len = rstrip_len(L->s + L->pos, len);
        int rc = data(L, L->pos, len, L->line, L->col);
        if (rc) return -1;
        advance(L, j + 2);
        *line_starting = after_close(L, close_sign, true);
        return 1;
    }
    jerr_set(L->e, L->line, L->col, "'{%% raw %%}' without '{%% endraw %%}'");
    return -1;
}

static int lex_source(lexer *L)
{
    bool line_starting = true;
    while (L->pos < L->n) {
        /* the next opener */
        size_t k = L->pos;
        while (k + 1 < L->n && !(L->s[k] == '{' && (L->s[k + 1] == '{' || L->s[k + 1] == '%' || L->s[k + 1] == '#')))
            k++;
        if (k + 1 >= L->n) return data(L, L->pos, L->n - L->pos, L->line, L->col);
        char kind = L->s[k + 1];
        char sign = k + 2 < L->n && (L->s[k + 2] == '-' || L->s[k + 2] == '+') ? L->s[k + 2] : 0;
        if (kind == '{' && sign == '+') sign = 0;      /* "{{+" is not a marker */
        size_t len = k - L->pos;
        const char *text = L->s + L->pos;
        if (sign == '-') {
            len = rstrip_len(text, len);
        } else if (sign != '+' && kind != '{') {        /* lstrip_blocks */
            size_t l_pos = len;
            while (l_pos > 0 && text[l_pos - 1] != '\n') l_pos--;
            if (l_pos > 0 || line_starting) {
                size_t j = l_pos;
                while (j < len && (text[j] == ' ' || text[j] == '\t')) j++;
                if (j == len) len = l_pos;
            }
        }
        if (data(L, L->pos, len, L->line, L->col)) return -1;
        int line = L->line, col = L->col;
        advance(L, k);
        line = L->line;
        col = L->col;
        if (kind == '#') {                               /* comment: dropped */
            size_t c = k + 2 + (sign ? 1 : 0);
            while (c + 1 < L->n && !(L->s[c] == '#' && L->s[c + 1] == '}')) c++;
            if (c + 1 >= L->n) return jerr_set(L->e, line, col, "unclosed comment");
            char csign = c > k + 2 && (L->s[c - 1] == '-' || L->s[c - 1] == '+') ? L->s[c - 1] : 0;
            advance(L, c + 2);
            line_starting = after_close(L, csign, true);
            continue;
        }
        if (kind == '%') {
            int raw = try_raw(L, k, &line_starting);
            if (raw < 0) return -1;
            if (raw) continue;
        }
        advance(L, k + 2 + (sign ? 1 : 0));
        if (push(L, (jtok){.kind = kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, .line = line, .col = col})) return -1;
        char csign = 0;
        if (lex_tag(L, kind == '%', &csign)) return -1;
        line_starting = after_close(L, csign, kind == '%');
    }
    return 0;
}

int jinja_lex(const char *src, size_t n, jarena *a, jerr *e, jtok **toks, int *ntoks)
{
    /* newlines to "\n", one trailing newline dropped */
    char *s = jarena_alloc(a, n + 1);
    if (!s) return jerr_set(e, 1, 1, "out of memory");
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\r') {
            s[m++] = '\n';
            if (i + 1 < n && src[i + 1] == '\n') i++;
        } else {
            s[m++] = src[i];
        }
    }
    if (m > 0 && s[m - 1] == '\n') m--;
    lexer L = {.s = s, .n = m, .line = 1, .col = 1, .a = a, .e = e};
    if (lex_source(&L)) return -1;
    if (push(&L, (jtok){.kind = T_EOF, .line = L.line, .col = L.col})) return -1;
    *toks = L.t;
    *ntoks = L.nt;
    return 0;
}
