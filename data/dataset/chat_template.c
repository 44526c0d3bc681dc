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

#include "core/buf.h"
#include "core/files.h"
#include "core/mem.h"
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
    chat_template *t = ds_calloc(1, sizeof *t, "a chat template");
    if (t) *t = model ? (chat_template){"auto", T_MODEL, false, model, NULL} : *plain;
    if (t) t->about = model ? ds_strdupf("the model's chat template (%s)", jinja_chat_name(model))
                            : ds_strdupf("built-in plain (%s has no chat template)", dir ? dir : "the model folder");
    if (!t || !t->about) {
        jinja_chat_free(model);
        free(t);
        return DS_ENOMEM;
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
    char *s = NULL;
    if (ds_grow(&r->p, &r->cap, (size_t)r->n + 1, sizeof *r->p) || !(s = ds_malloc(len + 1, "a chat template piece")))
        return DS_ENOMEM;
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
    ds_buf b = {0};
    int rc = DS_OK;
    for (int i = 0; !rc && i < r->n; i++) {
        rc = ds_buf_append(&b, r->p[i].text, r->p[i].len);
        if (!rc && r->p[i].eos && eos_text) rc = ds_buf_puts(&b, eos_text);
    }
    if (rc) {
        ds_buf_free(&b);
        return NULL;
    }
    return ds_buf_take(&b);
}

/* Flush the text built for one piece into a piece. `rc` holds the statuses of
 * the appends that built it, or-ed together (DS_OK or DS_ENOMEM). */
static int flush_piece(ds_buf *b, int rc, ct_render *r, bool train, bool eos)
{
    if (!rc) rc = ct_push(r, b->p, b->len, train, eos);
    b->len = 0;
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
static int add_content(ds_buf *b, const chat_msg *m, bool do_trim)
{
    const char *c = m->content;
    size_t n = m->len;
    if (m->input && m->input_len) {
        ds_buf tmp = {0};
        int rc = ds_buf_append(&tmp, c, n);
        rc |= ds_buf_puts(&tmp, "\n\n");
        rc |= ds_buf_append(&tmp, m->input, m->input_len);
        const char *t = tmp.p ? tmp.p : "";
        size_t tn = tmp.len;
        if (do_trim) trim(&t, &tn);
        if (!rc) rc = ds_buf_append(b, t, tn);
        ds_buf_free(&tmp);
        return rc;
    }
    if (do_trim) trim(&c, &n);
    return ds_buf_append(b, c, n);
}

/* A system or user turn (masked). */
static int render_turn(const chat_template *t, turn_state *st, const chat_msg *m, ct_render *out)
{
    ds_buf b = {0};
    int rc = DS_OK;   /* the appends' statuses, or-ed */
    switch (t->kind) {
    case T_DEEPSEEK:
        if (m->role == CT_USER) rc |= ds_buf_puts(&b, "User: ");
        rc |= add_content(&b, m, false);
        rc |= ds_buf_puts(&b, "\n\n");
        break;
    case T_LLAMA3:
        rc |= ds_buf_puts(&b, "<|start_header_id|>");
        rc |= ds_buf_puts(&b, role_name(m->role));
        rc |= ds_buf_puts(&b, "<|end_header_id|>\n\n");
        rc |= add_content(&b, m, true);
        rc |= ds_buf_puts(&b, "<|eot_id|>");
        break;
    case T_CHATML:
        rc |= ds_buf_puts(&b, "<|im_start|>");
        rc |= ds_buf_puts(&b, role_name(m->role));
        rc |= ds_buf_puts(&b, "\n");
        rc |= add_content(&b, m, false);
        rc |= ds_buf_puts(&b, "<|im_end|>\n");
        break;
    case T_ALPACA: {
        if (st->after_assistant) rc |= ds_buf_puts(&b, "\n\n");
        if (m->role == CT_SYSTEM) {         /* a system prompt takes the preamble's place */
            rc |= ds_buf_append(&b, m->content, m->len);
            rc |= ds_buf_puts(&b, "\n\n");
            break;
        }
        bool has_input = m->input && m->input_len;
        if (!st->seen_user && !st->seen_system) rc |= ds_buf_puts(&b, has_input ? ALPACA_PREAMBLE_INPUT : ALPACA_PREAMBLE);
        rc |= ds_buf_puts(&b, "### Instruction:\n");
        rc |= ds_buf_append(&b, m->content, m->len);
        rc |= ds_buf_puts(&b, "\n\n");
        if (has_input) {
            rc |= ds_buf_puts(&b, "### Input:\n");
            rc |= ds_buf_append(&b, m->input, m->input_len);
            rc |= ds_buf_puts(&b, "\n\n");
        }
        rc |= ds_buf_puts(&b, "### Response:\n");
        break;
    }
    case T_PLAIN: default:
        rc |= add_content(&b, m, false);
        break;
    }
    if (m->role == CT_SYSTEM) st->seen_system = true;
    else st->seen_user = true;
    st->after_assistant = false;
    rc = flush_piece(&b, rc, out, false, false);
    ds_buf_free(&b);
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
    if (t->model) return ds_fail(DS_EINTERNAL, "ct_render_reply: a model's template needs the prompt (ct_render_answer)");
    ds_buf b = {0};
    int rc = DS_OK;   /* the appends' statuses, or-ed */
    switch (t->kind) {
    case T_DEEPSEEK:
        rc |= ds_buf_puts(&b, " ");
        rc |= ds_buf_append(&b, content, len);
        rc = flush_piece(&b, rc, out, true, true);
        break;
    case T_LLAMA3:
        trim(&content, &len);
        rc |= ds_buf_append(&b, content, len);
        rc |= ds_buf_puts(&b, "<|eot_id|>");
        rc = flush_piece(&b, rc, out, true, false);
        break;
    case T_CHATML:
        rc |= ds_buf_append(&b, content, len);
        rc |= ds_buf_puts(&b, "<|im_end|>");
        rc = flush_piece(&b, rc, out, true, false);
        if (!rc) rc = ct_push(out, "\n", 1, false, false);
        break;
    default:                                /* alpaca, plain */
        rc |= ds_buf_append(&b, content, len);
        rc = flush_piece(&b, rc, out, true, true);
        break;
    }
    ds_buf_free(&b);
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
    ds_buf b = {0};
    rc = ds_buf_append(&b, cont, clen);
    bool eos = true;
    if (t->kind == T_LLAMA3) {
        rc |= ds_buf_puts(&b, "<|eot_id|>");
        eos = false;
    } else if (t->kind == T_CHATML) {
        rc |= ds_buf_puts(&b, "<|im_end|>");
        eos = false;
    }
    rc = flush_piece(&b, rc, out, true, eos);
    ds_buf_free(&b);
    return rc;
}
