/* data/dataset/chat_template.c - the built-in chat templates (see chat_template.h).
 *
 * Each template is a handful of strings and three hooks: how a system or
 * user turn reads, the assistant header (masked: it ends the prompt) and
 * the assistant reply (trained). ct_render_chat is ct_render_prompt's
 * turns plus ct_render_reply for each assistant turn, so a preference
 * pair's prompt + reply renders exactly as the same conversation would.
 */
#include "chat_template.h"
#include "chat_template_model.h"

#include "core/files.h"
#include "core/status.h"
#include "core/utf8.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KIND(name, kind, bos) kind
typedef enum { CHAT_TEMPLATES(KIND, DS_COMMA), T_MODEL } template_kind;
#undef KIND

struct chat_template {
    const char *name;
    template_kind kind;
    bool bos;              /* the model's template writes bos_token first */
    jinja_chat *model;     /* T_MODEL: the model's own template */
    char *about;           /* from chat_template_open("auto") (malloc'd with the struct), else NULL */
};

#define ENTRY(name, kind, bos) {#name, kind, bos, NULL, NULL}
static const chat_template templates[] = {CHAT_TEMPLATES(ENTRY, DS_COMMA)};
#undef ENTRY

static const char ALPACA_PREAMBLE[] =
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n";
static const char ALPACA_PREAMBLE_INPUT[] =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n";

const char *chat_template_names(void) { return CHAT_TEMPLATE_NAMES; }

int chat_template_find(const char *name, const chat_template **out)
{
    *out = NULL;
    if (!name || !*name) name = "plain";
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++)
        if (strcmp(templates[i].name, name) == 0) {
            *out = &templates[i];
            return DS_OK;
        }
    return ds_fail(DS_ECONFIG, "unknown chat_template '%s' (built in: %s)", name, chat_template_names());
}

int chat_template_open(const char *name, const char *dir, const chat_template **out)
{
    *out = NULL;
    if (!name || strcmp(name, "auto") != 0) return chat_template_find(name, out);
    jinja_chat *model = NULL;
    int rc = dir ? jinja_chat_load(dir, &model) : DS_OK;
    if (rc) return rc;
    const chat_template *plain;
    chat_template_find("plain", &plain);
    chat_template *t = calloc(1, sizeof *t);
    if (t) *t = model ? (chat_template){"auto", T_MODEL, false, model, NULL} : *plain;
    if (t) t->about = model ? ds_strdupf("the model's chat template (%s)", jinja_chat_name(model))
                            : ds_strdupf("built-in plain (%s has no chat template)", dir ? dir : "the model folder");
    if (!t || !t->about) {
        jinja_chat_free(model);
        free(t);
        return ds_fail(DS_EINTERNAL, "out of memory");
    }
    *out = t;
    return DS_OK;
}

void chat_template_close(const chat_template *t)
{
    if (!t || !t->about) return;      /* the built-ins are static */
    chat_template *m = (chat_template *)t;
    jinja_chat_free(m->model);
    free(m->about);
    free(m);
}

const char *chat_template_about(const chat_template *t)
{
    static _Thread_local char buf[64];
    if (t->about) return t->about;
    snprintf(buf, sizeof buf, "built-in %s", t->name);
    return buf;
}

const char *chat_template_key(const chat_template *t) { return t->model ? jinja_chat_digest(t->model) : t->name; }

const char *chat_template_name(const chat_template *t) { return t->name; }
bool chat_template_wants_bos(const chat_template *t) { return t->bos; }

/* ---- pieces ---- */

int ct_push(ct_render *r, const char *text, size_t len, bool train, bool eos)
{
    if (len == 0 && !eos) return DS_OK;
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 8;
        ct_piece *np = realloc(r->p, (size_t)cap * sizeof *np);
        if (!np) return ds_fail(DS_EINTERNAL, "out of memory rendering a chat template");
        r->p = np;
        r->cap = cap;
    }
    char *s = malloc(len + 1);
    if (!s) return ds_fail(DS_EINTERNAL, "out of memory rendering a chat template");
    if (len) memcpy(s, text, len);
    s[len] = '\0';
    r->p[r->n++] = (ct_piece){s, len, train, eos};
    return DS_OK;
}

void ct_render_free(ct_render *r)
{
    for (int i = 0; i < r->n; i++) free(r->p[i].text);
    free(r->p);
    memset(r, 0, sizeof *r);
}

char *ct_render_text(const ct_render *r, const char *eos_text)
{
    size_t ne = eos_text ? strlen(eos_text) : 0, n = 0;
    for (int i = 0; i < r->n; i++) n += r->p[i].len + (r->p[i].eos ? ne : 0);
    char *s = malloc(n + 1), *w = s;
    if (!s) return NULL;
    for (int i = 0; i < r->n; i++) {
        memcpy(w, r->p[i].text, r->p[i].len);
        w += r->p[i].len;
        if (r->p[i].eos && ne) {
            memcpy(w, eos_text, ne);
            w += ne;
        }
    }
    *w = '\0';
    return s;
}

/* A small string builder for one piece. */
typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *text, size_t len)
{
    if (b->oom || len == 0) return;
    if (len > SIZE_MAX / 4 || b->n > SIZE_MAX / 4) {
        b->oom = true;
        return;
    }
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, text, len);
    b->n += len;
}

static void sb_str(sbuf *b, const char *text) { sb_add(b, text, strlen(text)); }

/* Flush the builder into one piece. */
static int sb_push(sbuf *b, ct_render *r, bool train, bool eos)
{
    int rc = b->oom ? ds_fail(DS_EINTERNAL, "out of memory rendering a chat template")
                    : ct_push(r, b->s, b->n, train, eos);
    b->n = 0;
    return rc;
}

/* Python's str.isspace() for one code point (what Jinja's trim strips). */
static bool py_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

/* The code point at s[i] (records are valid UTF-8: jansson checked them;
 * anything else is read a byte at a time). */
static uint32_t cp_at(const unsigned char *s, size_t n, size_t i, size_t *w)
{
    uint32_t cp = ds_utf8_decode((const char *)s + i, n - i, w);
    if (cp == DS_UTF8_BAD) {
        *w = 1;
        return s[i];
    }
    return cp;
}

/* Jinja's `| trim`: strip Unicode whitespace at both ends. */
static void trim(const char **text, size_t *len)
{
    const unsigned char *s = (const unsigned char *)*text;
    size_t a = 0, b = *len, w;
    while (a < b && py_space(cp_at(s, b, a, &w))) a += w;
    while (b > a) {
        size_t k = b - 1;                    /* start of the last code point */
        while (k > a && (s[k] & 0xc0) == 0x80 && b - k < 4) k--;
        if (!py_space(cp_at(s, b, k, &w)) || k + w != b) break;
        b = k;
    }
    *text = (const char *)s + a;
    *len = b - a;
}

/* ---- turns ---- */

typedef struct {
    bool seen_user, seen_system, after_assistant;
} turn_state;

static const char *role_name(ct_role r) { return r == CT_SYSTEM ? "system" : r == CT_USER ? "user" : "assistant"; }

/* A user turn's text where the template has no input section. */
static void add_content(sbuf *b, const chat_msg *m, bool do_trim)
{
    const char *c = m->content;
    size_t n = m->len;
    if (m->input && m->input_len) {
        sbuf tmp = {0};
        sb_add(&tmp, c, n);
        sb_str(&tmp, "\n\n");
        sb_add(&tmp, m->input, m->input_len);
        if (tmp.oom) b->oom = true;
        const char *t = tmp.s ? tmp.s : "";
        size_t tn = tmp.n;
        if (do_trim) trim(&t, &tn);
        sb_add(b, t, tn);
        free(tmp.s);
        return;
    }
    if (do_trim) trim(&c, &n);
    sb_add(b, c, n);
}

/* A system or user turn (masked). */
static int render_turn(const chat_template *t, turn_state *st, const chat_msg *m, ct_render *out)
{
    sbuf b = {0};
    switch (t->kind) {
    case T_DEEPSEEK:
        if (m->role == CT_USER) sb_str(&b, "User: ");
        add_content(&b, m, false);
        sb_str(&b, "\n\n");
        break;
    case T_LLAMA3:
        sb_str(&b, "<|start_header_id|>");
        sb_str(&b, role_name(m->role));
        sb_str(&b, "<|end_header_id|>\n\n");
        add_content(&b, m, true);
        sb_str(&b, "<|eot_id|>");
        break;
    case T_CHATML:
        sb_str(&b, "<|im_start|>");
        sb_str(&b, role_name(m->role));
        sb_str(&b, "\n");
        add_content(&b, m, false);
        sb_str(&b, "<|im_end|>\n");
        break;
    case T_ALPACA: {
        if (st->after_assistant) sb_str(&b, "\n\n");
        if (m->role == CT_SYSTEM) {         /* a system prompt takes the preamble's place */
            sb_add(&b, m->content, m->len);
            sb_str(&b, "\n\n");
            break;
        }
        bool has_input = m->input && m->input_len;
        if (!st->seen_user && !st->seen_system) sb_str(&b, has_input ? ALPACA_PREAMBLE_INPUT : ALPACA_PREAMBLE);
        sb_str(&b, "### Instruction:\n");
        sb_add(&b, m->content, m->len);
        sb_str(&b, "\n\n");
        if (has_input) {
            sb_str(&b, "### Input:\n");
            sb_add(&b, m->input, m->input_len);
            sb_str(&b, "\n\n");
        }
        sb_str(&b, "### Response:\n");
        break;
    }
    case T_PLAIN: default:
        add_content(&b, m, false);
        break;
    }
    if (m->role == CT_SYSTEM) st->seen_system = true;
    else st->seen_user = true;
    st->after_assistant = false;
    int rc = sb_push(&b, out, false, false);
    free(b.s);
    return rc;
}

/* The assistant header: the end of a prompt (masked). */
static int render_header(const chat_template *t, turn_state *st, ct_render *out)
{
    const char *h = "";
    switch (t->kind) {
    case T_DEEPSEEK: h = "Assistant:"; break;
    case T_LLAMA3: h = "<|start_header_id|>assistant<|end_header_id|>\n\n"; break;
    case T_CHATML: h = "<|im_start|>assistant\n"; break;
    case T_ALPACA: h = st->after_assistant ? "\n\n" : ""; break;   /* "### Response:\n" ends the user turn */
    default: break;                     /* plain */
    }
    st->after_assistant = false;
    return ct_push(out, h, strlen(h), false, false);
}

int ct_render_reply(const chat_template *t, const char *content, size_t len, ct_render *out)
{
    sbuf b = {0};
    int rc;
    if (t->model) return ds_fail(DS_EINTERNAL, "ct_render_reply: a model's template needs the prompt (ct_render_answer)");
    switch (t->kind) {
    case T_DEEPSEEK:
        sb_str(&b, " ");
        sb_add(&b, content, len);
        rc = sb_push(&b, out, true, true);
        break;
    case T_LLAMA3:
        trim(&content, &len);
        sb_add(&b, content, len);
        sb_str(&b, "<|eot_id|>");
        rc = sb_push(&b, out, true, false);
        break;
    case T_CHATML:
        sb_add(&b, content, len);
        sb_str(&b, "<|im_end|>");
        rc = sb_push(&b, out, true, false);
        if (!rc) rc = ct_push(out, "\n", 1, false, false);
        break;
    default:                                /* alpaca, plain */
        sb_add(&b, content, len);
        rc = sb_push(&b, out, true, true);
        break;
    }
    free(b.s);
    return rc;
}

int ct_render_answer(const chat_template *t, const chat_msg *prompt, int np, const char *content, size_t len,
                     ct_render *out)
{
    return t->model ? ctm_render_answer(t->model, prompt, np, content, len, out) : ct_render_reply(t, content, len, out);
}

int ct_render_chat(const chat_template *t, const chat_msg *m, int n, int context, ct_render *out)
{
    turn_state st = {0};
    out->bos = t->bos;
    if (t->model) return ctm_render_chat(t->model, m, n, context, out);
    for (int i = 0; i < n; i++) {
        int rc, first = out->n;
        if (m[i].role == CT_ASSISTANT) {
            rc = render_header(t, &st, out);
            if (!rc) rc = ct_render_reply(t, m[i].content, m[i].len, out);
            st.after_assistant = true;
        } else {
            rc = render_turn(t, &st, &m[i], out);
        }
        if (rc) return rc;
        if (i < context)                       /* part of a given prompt: context only */
            for (int k = first; k < out->n; k++) out->p[k].train = false;
    }
    return DS_OK;
}

int ct_render_prompt(const chat_template *t, const chat_msg *m, int n, ct_render *out)
{
    if (t->model) return ctm_render_prompt(t->model, m, n, out);
    int rc = ct_render_chat(t, m, n, n, out);
    if (rc) return rc;
    turn_state st = {n > 0, false, n > 0 && m[n - 1].role == CT_ASSISTANT};
    return render_header(t, &st, out);
}

int ct_render_raw(const chat_template *t, const char *prompt, size_t plen, const char *cont, size_t clen,
                  ct_render *out)
{
    out->bos = t->bos;
    int rc = ct_push(out, prompt, plen, false, false);
    if (rc) return rc;
    sbuf b = {0};
    sb_add(&b, cont, clen);
    bool eos = true;
    if (t->kind == T_LLAMA3) {
        sb_str(&b, "<|eot_id|>");
        eos = false;
    } else if (t->kind == T_CHATML) {
        sb_str(&b, "<|im_end|>");
        eos = false;
    }
    rc = sb_push(&b, out, true, eos);
    free(b.s);
    return rc;
}
