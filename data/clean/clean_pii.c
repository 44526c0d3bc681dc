/* data/clean/clean_pii.c - personal information in text: e-mail
 * addresses, phone numbers, IPv4/IPv6 addresses, payment card numbers,
 * national identifiers, and credentials in URLs.
 *
 * Hand-written matchers, one pass left to right: at each position the
 * matchers are tried in a fixed order, and a match is skipped over whole.
 * Each matcher wants a boundary on both sides (no letter or digit glued to
 * it), and the number matchers want shapes that ordinary numbers do not
 * have, so that clinical text stays as it is: "120/80 mmHg", "Na 140
 * mmol/L", dates, doses, ICD codes and section numbers are not PII.
 *
 *   email            local@domain.tld (a dotted domain, a top-level label of 2+ letters)
 *   url_credentials  scheme://user:password@host - the user:password part
 *   ipv4             four dotted parts 0..255 without leading zeros, not all one digit
 *                    (1.2.3.4 reads as a section number), not inside a longer dotted number
 *   ipv6             eight groups of 1-4 hex digits, or fewer around one "::" with a group
 *                    of 3 or more characters
 *   credit_card      13-19 digits, run together or in groups of 4-6 split by one space or
 *                    hyphen, a known issuer prefix, and the Luhn check
 *   us_ssn           AAA-GG-SSSS (or with spaces), area not 000/666/9xx, group and serial not 0
 *   uk_nhs_number    NNN NNN NNNN (or hyphens) passing the NHS modulus-11 check
 *   uk_nino          two letters (the allowed prefixes), six digits (pairs may be spaced), A-D
 *   us_mbi           Medicare Beneficiary Identifier, 1EG4-TE5-MK73 (hyphens optional)
 *   phone            +CC and 7-14 more digits in groups; North American (NXX) NXX-XXXX with
 *                    hyphens, dots, or "(NXX) "; national numbers from a trunk 0 in groups of
 *                    2-5 digits split by spaces (or one hyphen), 10-11 digits in all
 */
#include "clean_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

#define NAME(name, id, cat, ph) #name
#define PH(name, id, cat, ph) ph
#define CAT(name, id, cat, ph) cat
static const char *const type_names[] = {CLEAN_PII_TYPES(NAME, DS_COMMA)};
static const char *const placeholders[] = {CLEAN_PII_TYPES(PH, DS_COMMA)};
static const clean_pii_category categories[] = {CLEAN_PII_TYPES(CAT, DS_COMMA)};
#undef NAME
#undef PH
#undef CAT

const char *clean_pii_type_name(clean_pii_type t) { return type_names[t]; }
const char *clean_pii_placeholder(clean_pii_type t) { return placeholders[t]; }
clean_pii_category clean_pii_category_of(clean_pii_type t) { return categories[t]; }

/* ---- characters ---- */

typedef struct {
    const unsigned char *s;
    size_t n;
} text;

/* Character classes by table: the scan looks at every byte of every text,
 * and one load beats three range tests there. */
enum { C_DIGIT = 1, C_UPPER = 2, C_LOWER = 4 };
static const unsigned char CLASS[256] = {['0' ... '9'] = C_DIGIT, ['A' ... 'Z'] = C_UPPER, ['a' ... 'z'] = C_LOWER};
static bool digit(int c) { return CLASS[c & 0xff] & C_DIGIT; }
static bool upper(int c) { return CLASS[c & 0xff] & C_UPPER; }
static bool alpha(int c) { return CLASS[c & 0xff] & (C_UPPER | C_LOWER); }
static bool alnum(int c) { return CLASS[c & 0xff] & (C_DIGIT | C_UPPER | C_LOWER); }
static bool hexd(int c) { return digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }
static bool local_char(int c) { return alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'; }
static int at(const text *t, size_t i) { return i < t->n ? t->s[i] : 0; }
/* Nothing word-like glued on the right of a match ending at e (a letter,
 * a digit, or a dot or hyphen going on with one). */
static bool right_free(const text *t, size_t e)
{
    int c = at(t, e);
    if (alnum(c) || c >= 0x80) return false;
    if ((c == '.' || c == '-' || c == '/') && alnum(at(t, e + 1))) return false;
    return true;
}
static bool left_free(const text *t, size_t i)
{
    if (i == 0) return true;
    int c = t->s[i - 1];
    if (alnum(c) || c >= 0x80) return false;
    if ((c == '.' || c == '-' || c == '/') && i >= 2 && alnum(t->s[i - 2])) return false;
    return true;
}

/* Digits from i: *end after them; the count. */
static size_t digits_at(const text *t, size_t i, size_t *end)
{
    size_t k = i;
    while (k < t->n && digit(t->s[k])) k++;
    *end = k;
    return k - i;
}

/* ---- matchers: each returns the end of a match at i, or 0 ---- */

static size_t match_email(const text *t, size_t i)
{
    if (i > 0 && local_char(t->s[i - 1])) return 0;
    if (!alnum(at(t, i))) return 0;
    size_t k = i;
    while (k < t->n && local_char(t->s[k])) k++;
    if (at(t, k) != '@' || t->s[k - 1] == '.') return 0;
    size_t d = k + 1, labels = 0, last = d, e = d;
    for (;;) {                               /* label ( . label )* */
        size_t l = e;
        while (l < t->n && (alnum(t->s[l]) || t->s[l] == '-')) l++;
        if (l == e) break;
        labels++;
        last = e;
        e = l;
        if (at(t, e) == '.' && alnum(at(t, e + 1))) e++;
        else break;
    }
    if (labels < 2) return 0;
    for (size_t j = last; j < e; j++)        /* the top-level label: letters only */
        if (!alpha(t->s[j])) return 0;
    if (e - last < 2 || at(t, e) >= 0x80) return 0;
    return e;
}

/* At i: "scheme://" + user:password + "@": the span of user:password. */
static size_t match_url_credentials(const text *t, size_t i, size_t *start)
{
    if (at(t, i) != ':' || at(t, i + 1) != '/' || at(t, i + 2) != '/') return 0;
    size_t b = i;
    while (b > 0 && (alnum(t->s[b - 1]) || t->s[b - 1] == '+' || t->s[b - 1] == '.' || t->s[b - 1] == '-')) b--;
    if (i - b < 2 || !alpha(t->s[b])) return 0;
    size_t u = i + 3, k = u;
    bool colon = false;
    while (k < t->n && t->s[k] > ' ' && t->s[k] != '/' && t->s[k] != '?' && t->s[k] != '#' && t->s[k] != '@') {
        colon |= t->s[k] == ':';
        k++;
    }
    if (at(t, k) != '@' || !colon || k == u) return 0;
    *start = u;
    return k;
}

static size_t match_ipv4(const text *t, size_t i)
{
    if (i > 0 && (t->s[i - 1] == '.' || alnum(t->s[i - 1]))) return 0;
    size_t k = i, e;
    bool all_single = true;
    for (int part = 0; part < 4; part++) {
        if (part && at(t, k++) != '.') return 0;
        size_t nd = digits_at(t, k, &e);
        if (nd < 1 || nd > 3 || (nd > 1 && t->s[k] == '0')) return 0;
        int v = 0;
        for (size_t j = k; j < e; j++) v = v * 10 + t->s[j] - '0';
        if (v > 255) return 0;
        all_single &= nd == 1;
        k = e;
    }
    if (all_single || alnum(at(t, k)) || (at(t, k) == '.' && digit(at(t, k + 1)))) return 0;
    return k;
}

static size_t match_ipv6(const text *t, size_t i)
{
    if (!left_free(t, i) || (i > 0 && t->s[i - 1] == ':')) return 0;
    size_t k = i, groups = 0;
    bool compressed = false, long_group = false;
    if (at(t, k) == ':' && at(t, k + 1) == ':') {
        compressed = true;
        k += 2;
    }
    while (groups < 8) {
        size_t g = k;
        while (k < t->n && hexd(t->s[k]) && k - g < 5) k++;
        if (k == g || k - g > 4) {
            if (k - g > 4) return 0;
            break;
        }
        groups++;
        long_group |= k - g >= 3;
        if (at(t, k) == ':' && at(t, k + 1) == ':' && !compressed) {
            compressed = true;
            k += 2;
        } else if (at(t, k) == ':' && hexd(at(t, k + 1))) {
            k++;
        } else {
            break;
        }
    }
    if (alnum(at(t, k)) || at(t, k) == ':') return 0;
    if (!compressed && groups == 8) return k;
    if (compressed && groups >= 2 && groups <= 7 && long_group) return k;
    return 0;
}

/* Digit groups from i split by one separator, the same one throughout
 * (none, ' ', '-' or '.'); sizes into g[], digits into d[]. */
typedef struct {
    int ng, size[8], nd;
    char d[24];
    char sep;
    size_t end;
} groups;

static bool digit_groups(const text *t, size_t i, const char *seps, groups *g)
{
    memset(g, 0, sizeof *g);
    size_t k = i, e;
    for (;;) {
        size_t nd = digits_at(t, k, &e);
        if (nd == 0) return g->ng > 0;
        if (g->ng == 8 || g->nd + nd > 20) return false;   /* longer than any shape here */
        memcpy(g->d + g->nd, t->s + k, nd);
        g->nd += (int)nd;
        g->size[g->ng++] = (int)nd;
        g->end = e;
        int c = at(t, e);
        if (c && strchr(seps, c) && (!g->sep || g->sep == c) && digit(at(t, e + 1))) {
            g->sep = (char)c;
            k = e + 1;
        } else {
            break;
        }
    }
    return true;
}

static bool luhn(const char *d, int n)
{
    int sum = 0;
    for (int i = 0; i < n; i++) {
        int x = d[n - 1 - i] - '0';
        if (i & 1) x = x * 2 > 9 ? x * 2 - 9 : x * 2;
        sum += x;
    }
    return sum % 10 == 0;
}

static bool card_prefix(const char *d, int n)
{
    int p2 = (d[0] - '0') * 10 + d[1] - '0', p4 = p2 * 100 + (d[2] - '0') * 10 + d[3] - '0';
    if (d[0] == '4') return n == 13 || n == 16 || n == 19;                  /* Visa */
    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return n == 16;   /* Mastercard */
    if (p2 == 34 || p2 == 37) return n == 15;                              /* American Express */
    if (p4 == 6011 || p2 == 65 || (p4 >= 6440 && p4 <= 6499)) return n >= 16;   /* Discover */
    if (p2 == 35) return n >= 16;                                          /* JCB */
    if (p2 == 36 || p2 == 38 || (p4 >= 3000 && p4 <= 3059)) return n >= 14;     /* Diners Club */
    if (p2 == 62) return n >= 16;                                          /* UnionPay */
    return false;
}

static size_t match_card(const text *t, size_t i)
{
    groups g;
    if (!digit_groups(t, i, " -", &g) || g.nd < 13 || g.nd > 19 || !right_free(t, g.end)) return 0;
    for (int k = 0; k < g.ng && g.ng > 1; k++)
        if (g.size[k] < 4 || g.size[k] > 6) return 0;
    return card_prefix(g.d, g.nd) && luhn(g.d, g.nd) ? g.end : 0;
}

static size_t match_ssn(const text *t, size_t i)
{
    groups g;
    if (!digit_groups(t, i, " -", &g) || g.ng != 3 || g.size[0] != 3 || g.size[1] != 2 || g.size[2] != 4 ||
        !right_free(t, g.end))
        return 0;
    int area = (g.d[0] - '0') * 100 + (g.d[1] - '0') * 10 + g.d[2] - '0';
    if (area == 0 || area == 666 || area >= 900) return 0;
    if (g.d[3] == '0' && g.d[4] == '0') return 0;
    if (!memcmp(g.d + 5, "0000", 4)) return 0;
    return g.end;
}

static size_t match_nhs(const text *t, size_t i)
{
    groups g;
    if (!digit_groups(t, i, " -", &g) || g.ng != 3 || g.size[0] != 3 || g.size[1] != 3 || g.size[2] != 4 ||
        !right_free(t, g.end))
        return 0;
    int sum = 0;
    for (int k = 0; k < 9; k++) sum += (g.d[k] - '0') * (10 - k);
    int check = 11 - sum % 11;
    if (check == 11) check = 0;
    return check != 10 && check == g.d[9] - '0' ? g.end : 0;
}

static size_t match_phone(const text *t, size_t i)
{
    groups g;
    int c = at(t, i);
    if (c == '+') {                                       /* international */
        if (!digit(at(t, i + 1))) return 0;
        size_t k = i + 1, e;
        int nd = 0, ng = 0;
        while (ng < 8) {
            bool paren = at(t, k) == '(';
            size_t n = digits_at(t, k + paren, &e);
            if (!n || (paren && at(t, e) != ')')) break;
            nd += (int)n;
            ng++;
            k = e + paren;
            int s = at(t, k);
            if ((s == ' ' || s == '-' || s == '.') && (digit(at(t, k + 1)) || at(t, k + 1) == '(')) k++;
            else break;
        }
        return nd >= 8 && nd <= 15 && ng >= 1 && right_free(t, k) ? k : 0;
    }
    size_t k = i;
    if (c == '1' && (at(t, i + 1) == '-' || at(t, i + 1) == ' ') && (digit(at(t, i + 2)) || at(t, i + 2) == '('))
        k = i + 2;                                        /* 1-800-..., 1 (415) ... */
    if (at(t, k) == '(') {                                /* (NXX) NXX-XXXX */
        size_t e;
        if (digits_at(t, k + 1, &e) != 3 || at(t, e) != ')' || t->s[k + 1] < '2') return 0;
        size_t m = e + 1 + (at(t, e + 1) == ' ');
        if (!digit_groups(t, m, "- .", &g) || g.ng != 2 || g.size[0] != 3 || g.size[1] != 4 || g.d[0] < '2')
            return 0;
        return right_free(t, g.end) ? g.end : 0;
    }
    if (!digit(at(t, k))) return 0;
    if (digit_groups(t, k, "-.", &g) && g.ng == 3 && g.size[0] == 3 && g.size[1] == 3 && g.size[2] == 4 &&
        g.d[0] >= '2' && g.d[3] >= '2' && right_free(t, g.end))
        return g.end;                                     /* NXX-NXX-XXXX */
    if (k != i || c != '0' || !digit_groups(t, i, " -", &g) || g.ng < 2 || g.nd < 10 || g.nd > 11 ||
        !right_free(t, g.end))
        return 0;                                         /* trunk 0: 020 7946 0958 */
    if (g.sep == '-' && g.ng > 2) return 0;              /* 0002-8215-01: a drug code (NDC), not a number to call */
    for (int j = 0; j < g.ng; j++)
        if (g.size[j] < 2 || g.size[j] > 5) return 0;
    return g.end;
}

/* National Insurance number: prefix letters with the excluded ones out. */
static size_t match_nino(const text *t, size_t i)
{
    int a = at(t, i), b = at(t, i + 1);
    if (!upper(a) || !upper(b) || strchr("DFIQUV", a) || strchr("DFIOQUV", b)) return 0;
    static const char *const bad[] = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"};
    for (int k = 0; k < 7; k++)
        if (a == bad[k][0] && b == bad[k][1]) return 0;
    size_t k = i + 2;
    bool spaced = at(t, k) == ' ';
    for (int pair = 0; pair < 3; pair++) {
        if (spaced && at(t, k++) != ' ') return 0;
        if (!digit(at(t, k)) || !digit(at(t, k + 1))) return 0;
        k += 2;
    }
    if (spaced && at(t, k) == ' ') k++;
    int s = at(t, k);
    if (s < 'A' || s > 'D') return 0;
    return right_free(t, k + 1) ? k + 1 : 0;
}

/* Medicare Beneficiary Identifier: C A AN N A AN N A A N N (A: letters but S L O I B Z). */
static size_t match_mbi(const text *t, size_t i)
{
    static const char shape[] = "CAXNAXNAANN";   /* C: 1-9, A: letter, N: digit, X: either */
    size_t k = i;
    for (int p = 0; p < 11; p++) {
        if ((p == 4 || p == 7) && at(t, k) == '-') k++;
        int c = at(t, k++);
        bool letter = upper(c) && !strchr("SLOIBZ", c);
        bool ok = shape[p] == 'C' ? c >= '1' && c <= '9'
                : shape[p] == 'N' ? digit(c)
                : shape[p] == 'A' ? letter
                                  : letter || digit(c);
        if (!ok) return 0;
    }
    return right_free(t, k) ? k : 0;
}

/* ---- the scan ---- */

static int push(clean_pii_matches *m, size_t start, size_t end, clean_pii_type type)
{
    if (ds_grow(&m->m, &m->cap, m->n + 1, sizeof *m->m)) return DS_ENOMEM;
    m->m[m->n++] = (clean_pii_match){start, end, type};
    return DS_OK;
}

int clean_pii_find(const char *s, size_t len, clean_pii_matches *out)
{
    text t = {(const unsigned char *)s, len};
    out->n = 0;
    bool any_at = memchr(s, '@', len) != NULL;
    for (size_t i = 0; i < len;) {
        int c = t.s[i];
        size_t e = 0, start = i;
        clean_pii_type type = PII_EMAIL;
        if (c == ':') {
            if ((e = match_url_credentials(&t, i, &start))) type = PII_URL_CREDENTIALS;
            else if ((e = match_ipv6(&t, i))) type = PII_IPV6;
        } else if (alnum(c)) {
            /* a word: the matchers that start one, then on past its end */
            size_t w = i;
            while (w < len && alnum(t.s[w])) w++;
            if (any_at && (e = match_email(&t, i))) type = PII_EMAIL;
            else if (w - i <= 4 && at(&t, w) == ':' && (e = match_ipv6(&t, i))) type = PII_IPV6;
            else if (digit(c) && left_free(&t, i)) {
                if ((e = match_ipv4(&t, i))) type = PII_IPV4;
                else if ((e = match_card(&t, i))) type = PII_CARD;
                else if ((e = match_ssn(&t, i))) type = PII_US_SSN;
                else if ((e = match_nhs(&t, i))) type = PII_UK_NHS;
                else if ((e = match_phone(&t, i))) type = PII_PHONE;
                else if ((e = match_mbi(&t, i))) type = PII_US_MBI;
            } else if (upper(c) && upper(at(&t, i + 1)) && left_free(&t, i) && (e = match_nino(&t, i))) {
                type = PII_UK_NINO;
            }
            if (!e) {
                i = w;
                continue;
            }
        } else if ((c == '+' || c == '(') && left_free(&t, i)) {
            if ((e = match_phone(&t, i))) type = PII_PHONE;
        }
        if (e > start) {
            int rc = push(out, start, e, type);
            if (rc) return rc;
            i = e;
        } else {
            i++;
        }
    }
    return DS_OK;
}

void clean_pii_matches_free(clean_pii_matches *m)
{
    free(m->m);
    memset(m, 0, sizeof *m);
}

char *clean_pii_mask(const char *text, size_t len, const clean_pii_matches *m, const bool mask[CLEAN_PII_NCAT],
                     size_t *out_len)
{
    size_t n = len;
    for (size_t k = 0; k < m->n; k++) n += strlen(placeholders[m->m[k].type]);
    char *out = ds_malloc(n + 1, "masked text"), *w = out;
    if (!out) return NULL;
    size_t pos = 0;
    for (size_t k = 0; k < m->n; k++) {
        const clean_pii_match *x = &m->m[k];
        if (!mask[categories[x->type]]) continue;
        memcpy(w, text + pos, x->start - pos);
        w += x->start - pos;
        size_t pl = strlen(placeholders[x->type]);
        memcpy(w, placeholders[x->type], pl);
        w += pl;
        pos = x->end;
    }
    memcpy(w, text + pos, len - pos);
    w += len - pos;
    *w = '\0';
    *out_len = (size_t)(w - out);
    return out;
}
