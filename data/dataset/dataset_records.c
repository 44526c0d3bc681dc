/* data/dataset/dataset_records.c - dataset records (JSON objects) to template text.
 *
 * Each type's fields are checked by name and type; a record that lacks one,
 * or has it with the wrong JSON type, is DS_EDATA "file:line: ..." naming
 * the field. The record becomes a conversation (chat_msg list) rendered by
 * the chat template, except mcq (a plain "Question: ...\nAnswer:" prompt,
 * the same text the multiple-choice evaluation scores) and text (trained
 * as it is).
 */
#include "dataset_internal.h"
#include "data/jsonl.h"

#include "core/buf.h"
#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHOICES 26

/* DS_ECONFIG about a dataset entry: "recipe.yaml:12: dataset PATH: ..."
 * where the entry has a recipe line, else "dataset PATH: ...". */
static int entry_fail(const data_source *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int entry_fail(const data_source *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *path = s->path ? s->path : "(no path)";
    if (s->recipe && s->line > 0) return ds_fail(DS_ECONFIG, "%s:%d: dataset %s: %s", s->recipe, s->line, path, msg);
    return ds_fail(DS_ECONFIG, "dataset %s: %s", path, msg);
}

int ds_source_type(const data_source *s, example_kind kind, ds_type *type, bool *cloze)
{
#define TYPE_ENTRY(name, id) {#name, id}
    static const struct { const char *name; ds_type t; } names[] = {DATASET_TYPES(TYPE_ENTRY, DS_COMMA)};
#undef TYPE_ENTRY
    const char *tn = s->type ? s->type : "";
    int found = -1;
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(names[i].name, tn) == 0) found = i;
    if (found < 0)
        return entry_fail(s, "unknown type '%s' (" DATASET_TYPE_NAMES ")", tn);
    *type = names[found].t;
    *cloze = false;
    if (*type == DT_MCQ && s->mcq_format && *s->mcq_format) {
        if (strcmp(s->mcq_format, "cloze") == 0) *cloze = true;
        else if (strcmp(s->mcq_format, "letters") != 0)
            return entry_fail(s, "unknown mcq_format '%s' (letters|cloze)", s->mcq_format);
    }
    if (kind == EX_PREF && *type != DT_PREFERENCE)
        return entry_fail(s, "type '%s' has no preference pairs; DPO needs type 'preference'", tn);
    if (kind == EX_MCQ && *type != DT_MCQ)
        return entry_fail(s, "type '%s' has no answer choices; multiple-choice evaluation needs type 'mcq'", tn);
    return DS_OK;
}

void ds_rendered_free(ds_rendered *r)
{
    ct_render_free(&r->seq);
    ct_render_free(&r->prompt);
    ct_render_free(&r->chosen);
    ct_render_free(&r->rejected);
    for (int i = 0; i < r->nchoices; i++) free(r->choice[i]);
    free(r->choice);
    memset(r, 0, sizeof *r);
}

/* ---- fields ---- */


static int missing(const ds_render_ctx *c, int line, const char *field)
{
    return ds_fail(DS_EDATA, "%s:%d: missing field \"%s\"", c->file, line, field);
}

static int wrong_type(const ds_render_ctx *c, int line, const char *field, const char *want, const json_t *v)
{
    return ds_fail(DS_EDATA, "%s:%d: field \"%s\" must be %s, found %s", c->file, line, field, want, jsonl_kind(v));
}

/* A string field; optional ones may be absent or null (*s = NULL). */
static int get_str(const ds_render_ctx *c, int line, const json_t *obj, const char *key, bool required,
                   const char **s, size_t *n)
{
    const json_t *v = json_object_get(obj, key);
    *s = NULL;
    *n = 0;
    if (!v || (!required && json_is_null(v))) return required ? missing(c, line, key) : DS_OK;
    if (!json_is_string(v)) return wrong_type(c, line, key, "a string", v);
    *s = json_string_value(v);
    *n = json_string_length(v);
    return DS_OK;
}

/* A list of {role, content} messages from array `arr` (field name `field`).
 * *m is malloc'd; its strings point into the JSON. */
static int get_messages(const ds_render_ctx *c, int line, const json_t *arr, const char *field, chat_msg **m, int *n)
{
    *m = NULL;
    *n = 0;
    size_t len = json_array_size(arr);
    if (len == 0) return ds_fail(DS_EDATA, "%s:%d: field \"%s\" holds no messages", c->file, line, field);
    if (len > 1000000) return ds_fail(DS_EDATA, "%s:%d: field \"%s\" holds too many messages", c->file, line, field);
    chat_msg *out = ds_calloc(len, sizeof *out, "a record's messages");
    if (!out) return DS_ENOMEM;
    char name[96];
    for (size_t i = 0; i < len; i++) {
        const json_t *e = json_array_get(arr, i);
        int rc = DS_OK;
        snprintf(name, sizeof name, "%s[%zu]", field, i);
        if (!json_is_object(e)) {
            rc = wrong_type(c, line, name, "an object with role and content", e);
        } else {
            snprintf(name, sizeof name, "%s[%zu].role", field, i);
            const json_t *v = json_object_get(e, "role");
            if (!v) rc = missing(c, line, name);
            else if (!json_is_string(v)) rc = wrong_type(c, line, name, "a string", v);
            else {
                const char *role = json_string_value(v);
                if (strcmp(role, "system") == 0) out[i].role = CT_SYSTEM;
                else if (strcmp(role, "user") == 0) out[i].role = CT_USER;
                else if (strcmp(role, "assistant") == 0) out[i].role = CT_ASSISTANT;
                else
                    rc = ds_fail(DS_EDATA, "%s:%d: field \"%s\": unknown role \"%.40s\" (system, user or assistant)",
                                 c->file, line, name, role);
            }
            if (!rc) {
                snprintf(name, sizeof name, "%s[%zu].content", field, i);
                v = json_object_get(e, "content");
                if (!v) rc = missing(c, line, name);
                else if (!json_is_string(v)) rc = wrong_type(c, line, name, "a string", v);
                else {
                    out[i].content = json_string_value(v);
                    out[i].len = json_string_length(v);
                }
            }
        }
        if (rc) {
            free(out);
            return rc;
        }
    }
    *m = out;
    *n = (int)len;
    return DS_OK;
}

/* A field that is either a string (one message of role `role`) or a message list. */
static int get_turns(const ds_render_ctx *c, int line, const json_t *obj, const char *key, ct_role role,
                     chat_msg **m, int *n)
{
    const json_t *v = json_object_get(obj, key);
    *m = NULL;
    *n = 0;
    if (!v) return missing(c, line, key);
    if (json_is_array(v)) return get_messages(c, line, v, key, m, n);
    if (!json_is_string(v)) return wrong_type(c, line, key, "a string or a list of messages", v);
    *m = ds_calloc(1, sizeof **m, "a record's messages");
    if (!*m) return DS_ENOMEM;
    (*m)[0] = (chat_msg){role, json_string_value(v), json_string_length(v), NULL, 0};
    *n = 1;
    return DS_OK;
}

/* The reply of a preference/completion field: one assistant message. */
static int one_reply(const ds_render_ctx *c, int line, const char *key, const chat_msg *m, int n)
{
    if (n != 1 || m[0].role != CT_ASSISTANT)
        return ds_fail(DS_EDATA, "%s:%d: field \"%s\" must be a string or one assistant message", c->file, line, key);
    return DS_OK;
}

/* ---- types ---- */

static int render_alpaca(const ds_render_ctx *c, const json_t *obj, int line, ds_rendered *out)
{
    chat_msg m[2] = {{CT_USER, 0, 0, 0, 0}, {CT_ASSISTANT, 0, 0, 0, 0}};
    int rc = get_str(c, line, obj, "instruction", true, &m[0].content, &m[0].len);
    if (!rc) rc = get_str(c, line, obj, "input", false, &m[0].input, &m[0].input_len);
    if (!rc) rc = get_str(c, line, obj, "output", true, &m[1].content, &m[1].len);
    if (!rc) rc = ct_render_chat(c->tmpl, m, 2, 0, &out->seq);
    return rc;
}

static int render_messages(const ds_render_ctx *c, const json_t *obj, int line, ds_rendered *out)
{
    const json_t *v = json_object_get(obj, "messages");
    if (!v) return missing(c, line, "messages");
    if (!json_is_array(v)) return wrong_type(c, line, "messages", "a list of messages", v);
    chat_msg *m;
    int n, rc = get_messages(c, line, v, "messages", &m, &n);
    if (rc) return rc;
    rc = ct_render_chat(c->tmpl, m, n, 0, &out->seq);
    free(m);
    return rc;
}

/* prompt + one reply (prompt_completion, and preference pairs for SFT). */
static int render_prompt_reply(const ds_render_ctx *c, const chat_msg *p, int np, const chat_msg *r, ds_rendered *out)
{
    chat_msg *all = ds_calloc((size_t)np + 1, sizeof *all, "a record's messages");
    if (!all) return DS_ENOMEM;
    memcpy(all, p, (size_t)np * sizeof *all);
    all[np] = *r;
    int rc = ct_render_chat(c->tmpl, all, np + 1, np, &out->seq);
    free(all);
    return rc;
}

static int render_prompt_completion(const ds_render_ctx *c, const json_t *obj, int line, ds_rendered *out)
{
    chat_msg *p = NULL, *r = NULL;
    int np, nr;
    int rc = get_turns(c, line, obj, "prompt", CT_USER, &p, &np);
    if (!rc) rc = get_turns(c, line, obj, "completion", CT_ASSISTANT, &r, &nr);
    if (!rc) rc = one_reply(c, line, "completion", r, nr);
    if (!rc) rc = render_prompt_reply(c, p, np, r, out);
    free(p);
    free(r);
    return rc;
}

static int render_text(const ds_render_ctx *c, const json_t *obj, int line, ds_rendered *out)
{
    const char *s;
    size_t n;
    int rc = get_str(c, line, obj, "text", true, &s, &n);
    if (rc) return rc;
    out->all_trained = true;
    return ct_push(&out->seq, s, n, true, true);
}

/* The prompt messages and the two replies of a preference record. Without
 * a prompt field, chosen and rejected are whole conversations and the
 * prompt is the messages they share (TRL's implicit-prompt form). */
static int render_preference(const ds_render_ctx *c, const json_t *obj, int line, ds_rendered *out)
{
    chat_msg *p = NULL, *ch = NULL, *rj = NULL;
    int np = 0, nc = 0, nr = 0, rc;
    const chat_msg *pm = NULL, *cm = NULL, *rm = NULL;
    int npm = 0;
    if (json_object_get(obj, "prompt")) {
        rc = get_turns(c, line, obj, "prompt", CT_USER, &p, &np);
        if (!rc) rc = get_turns(c, line, obj, "chosen", CT_ASSISTANT, &ch, &nc);
        if (!rc) rc = get_turns(c, line, obj, "rejected", CT_ASSISTANT, &rj, &nr);
        if (!rc) rc = one_reply(c, line, "chosen", ch, nc);
        if (!rc) rc = one_reply(c, line, "rejected", rj, nr);
        pm = p, npm = np, cm = ch, rm = rj;
    } else {
        const json_t *vc = json_object_get(obj, "chosen"), *vr = json_object_get(obj, "rejected");
        rc = !vc || !vr || !json_is_array(vc) ? missing(c, line, "prompt") : DS_OK;
        if (!rc) rc = get_turns(c, line, obj, "chosen", CT_ASSISTANT, &ch, &nc);
        if (!rc) rc = get_turns(c, line, obj, "rejected", CT_ASSISTANT, &rj, &nr);
        if (!rc && (nc != nr || nc < 2 || ch[nc - 1].role != CT_ASSISTANT || rj[nr - 1].role != CT_ASSISTANT))
            rc = ds_fail(DS_EDATA, "%s:%d: missing field \"prompt\" (chosen and rejected would need to be the same "
                         "conversation up to one last assistant message)", c->file, line);
        for (int i = 0; !rc && i < nc - 1; i++)
            if (ch[i].role != rj[i].role || ch[i].len != rj[i].len || memcmp(ch[i].content, rj[i].content, ch[i].len))
                rc = ds_fail(DS_EDATA, "%s:%d: missing field \"prompt\" (chosen and rejected differ before their "
                             "last message)", c->file, line);
        if (!rc) pm = ch, npm = nc - 1, cm = ch + nc - 1, rm = rj + nr - 1;
    }
    if (!rc) {
        if (c->kind == EX_PREF) {
            rc = ct_render_prompt(c->tmpl, pm, npm, &out->prompt);
            ct_render reply = {0};
            for (int k = 0; k < 2 && !rc; k++) {
                ct_render *dst = k == 0 ? &out->chosen : &out->rejected;
                rc = ct_render_answer(c->tmpl, pm, npm, (k == 0 ? cm : rm)->content, (k == 0 ? cm : rm)->len, &reply);
                for (int i = 0; i < reply.n && !rc; i++)   /* the reply proper: its trained pieces */
                    if (reply.p[i].train) rc = ct_push(dst, reply.p[i].text, reply.p[i].len, true, reply.p[i].eos);
                ct_render_free(&reply);
            }
        } else {                                          /* SFT on the chosen reply */
            rc = render_prompt_reply(c, pm, npm, cm, out);
        }
    }
    free(p);
    free(ch);
    free(rj);
    return rc;
}

/* ---- mcq ---- */

typedef struct {
    const char *q;
    const char *choice[MAX_CHOICES];
    int n, answer;
} mcq_fields;

/* An answer given as a letter ("A", "b") or an index. */
static int letter_index(const char *s)
{
    if (!s || !s[0] || s[1]) return -1;
    if (s[0] >= 'A' && s[0] <= 'Z') return s[0] - 'A';
    if (s[0] >= 'a' && s[0] <= 'z') return s[0] - 'a';
    return -1;
}

static int out_of_range(const ds_render_ctx *c, int line, const char *field, const json_t *v, int n)
{
    char shown[64];
    if (json_is_integer(v)) snprintf(shown, sizeof shown, "%lld", (long long)json_integer_value(v));
    else snprintf(shown, sizeof shown, "\"%.40s\"", json_string_value(v));
    int lo = c->answer_base > 0 ? c->answer_base : 0;
    return ds_fail(DS_EDATA, "%s:%d: field \"%s\": answer %s out of range (%d choices: %d..%d or A..%c)", c->file,
                   line, field, shown, n, lo, lo + n - 1, 'A' + n - 1);
}

/* The answer field: an index (counted from c->answer_base) or a letter (or,
 * in the generic layout, the text of one of the choices). */
static int get_answer(const ds_render_ctx *c, int line, const json_t *obj, const char *key, mcq_fields *f,
                      bool allow_text)
{
    const json_t *v = json_object_get(obj, key);
    if (!v) return missing(c, line, key);
    if (json_is_integer(v)) {
        json_int_t a = json_integer_value(v);
        bool any = c->answer_base == ANSWER_BASE_ANY;
        json_int_t lo = any ? 0 : c->answer_base, hi = lo + f->n - 1 + (any ? 1 : 0);
        if (a < lo || a > hi) return out_of_range(c, line, key, v, f->n);
        f->answer = (int)(a - lo < f->n ? a - lo : f->n - 1);
        return DS_OK;
    }
    if (!json_is_string(v)) return wrong_type(c, line, key, "an index or a letter", v);
    const char *s = json_string_value(v);
    int a = letter_index(s);
    if (a < 0 && allow_text)
        for (int i = 0; i < f->n && a < 0; i++)
            if (strcmp(s, f->choice[i]) == 0) a = i;
    if (a < 0 || a >= f->n) return out_of_range(c, line, key, v, f->n);
    f->answer = a;
    return DS_OK;
}

/* MedMCQA's cop: absent, null or -1 in the test split, which has no answers. */
static int medmcqa_answer(const ds_render_ctx *c, int line, const json_t *obj, mcq_fields *f)
{
    const json_t *cop = json_object_get(obj, "cop");
    bool none = !cop || json_is_null(cop) || (json_is_integer(cop) && json_integer_value(cop) == -1);
    if (none && c->answer_base == ANSWER_BASE_ANY) return DS_OK;
    if (none)
        return ds_fail(DS_EDATA, "%s:%d: field \"cop\": %s: this record has no answer, as in MedMCQA's test split; "
                       "train on the train split and evaluate on the validation split (dev.json)", c->file, line,
                       cop ? "-1 or null" : "missing");
    return get_answer(c, line, obj, "cop", f, false);
}

static int choice_str(const ds_render_ctx *c, int line, const json_t *v, const char *field, const char **s)
{
    if (!v) return missing(c, line, field);
    if (!json_is_string(v)) return wrong_type(c, line, field, "a string", v);
    *s = json_string_value(v);
    return DS_OK;
}

static int get_mcq(const ds_render_ctx *c, const json_t *obj, int line, mcq_fields *f)
{
    size_t qn;
    memset(f, 0, sizeof *f);
    int rc = get_str(c, line, obj, "question", true, &f->q, &qn);
    if (rc) return rc;
    char name[48];
    if (json_object_get(obj, "opa")) {                       /* MedMCQA */
        static const char *keys[] = {"opa", "opb", "opc", "opd"};
        for (int i = 0; i < 4; i++)
            if ((rc = choice_str(c, line, json_object_get(obj, keys[i]), keys[i], &f->choice[i]))) return rc;
        f->n = 4;
        return medmcqa_answer(c, line, obj, f);
    }
    const json_t *opts = json_object_get(obj, "options");
    const json_t *list = json_object_get(obj, "choices");
    if (opts && json_is_object(opts)) {                      /* MedQA: {"A": .., "B": ..} */
        size_t nkeys = json_object_size(opts);
        for (int i = 0; i < MAX_CHOICES; i++) {
            char key[2] = {(char)('A' + i), 0};
            const json_t *v = json_object_get(opts, key);
            if (!v) break;
            snprintf(name, sizeof name, "options.%s", key);
            if ((rc = choice_str(c, line, v, name, &f->choice[i]))) return rc;
            f->n = i + 1;
        }
        if (f->n == 0 || (size_t)f->n != nkeys)
            return ds_fail(DS_EDATA, "%s:%d: field \"options\" must map the letters A, B, C, ... to choices", c->file,
                           line);
        return get_answer(c, line, obj, "answer_idx", f, false);
    }
    if (!list && opts) list = opts;                          /* options given as a list */
    const char *lname = list == opts ? "options" : "choices";
    if (!list) return ds_fail(DS_EDATA, "%s:%d: missing field \"choices\" (or MedMCQA's opa..opd, MedQA's options)",
                              c->file, line);
    if (!json_is_array(list)) return wrong_type(c, line, lname, "a list of strings", list);
    size_t n = json_array_size(list);
    if (n < 1 || n > MAX_CHOICES)
        return ds_fail(DS_EDATA, "%s:%d: field \"%s\" holds %zu choices (1 to %d)", c->file, line, lname, n,
                       MAX_CHOICES);
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s[%zu]", lname, i);
        if ((rc = choice_str(c, line, json_array_get(list, i), name, &f->choice[i]))) return rc;
    }
    f->n = (int)n;
    return get_answer(c, line, obj, json_object_get(obj, "answer") || !json_object_get(obj, "label") ? "answer" : "label",
                      f, true);
}

/* "Question: {q}\nA. {c0}\n...\nAnswer:" (letters) or "Question: {q}\nAnswer:" (cloze).
 * NULL when out of memory (message set). */
static char *mcq_prompt(const mcq_fields *f, bool cloze)
{
    ds_buf b = {0};
    int rc = ds_buf_printf(&b, "Question: %s\n", f->q);
    for (int i = 0; i < f->n && !cloze && !rc; i++) rc = ds_buf_printf(&b, "%c. %s\n", 'A' + i, f->choice[i]);
    if (!rc) rc = ds_buf_puts(&b, "Answer:");
    if (rc) {
        ds_buf_free(&b);
        return NULL;
    }
    return ds_buf_take(&b);
}

static char *mcq_continuation(const mcq_fields *f, int i, bool cloze)
{
    return cloze ? ds_strdupf(" %s", f->choice[i]) : ds_strdupf(" %c", 'A' + i);
}

static int render_mcq(const ds_render_ctx *c, const json_t *obj, int line, ds_rendered *out)
{
    mcq_fields f;
    int rc = get_mcq(c, obj, line, &f);
    if (rc) return rc;
    char *prompt = mcq_prompt(&f, c->cloze);
    if (!prompt) return DS_ENOMEM;
    if (c->kind == EX_MCQ) {
        rc = ct_push(&out->prompt, prompt, strlen(prompt), false, false);
        if (!rc && !(out->choice = ds_calloc((size_t)f.n, sizeof *out->choice, "a record's choices"))) rc = DS_ENOMEM;
        for (int i = 0; i < f.n && !rc; i++) {
            out->choice[i] = mcq_continuation(&f, i, c->cloze);
            out->nchoices = i + 1;
            if (!out->choice[i]) rc = DS_ENOMEM;
        }
        out->answer = f.answer;
    } else {                                           /* SFT: the prompt and the right answer */
        char *cont = mcq_continuation(&f, f.answer, c->cloze);
        rc = cont ? ct_render_raw(c->tmpl, prompt, strlen(prompt), cont, strlen(cont), &out->seq) : DS_ENOMEM;
        free(cont);
    }
    free(prompt);
    return rc;
}

int ds_render_record(const ds_render_ctx *c, const json_t *obj, int line, ds_rendered *out)
{
    memset(out, 0, sizeof *out);
    out->kind = c->kind;
    int rc;
    switch (c->type) {
    case DT_ALPACA: rc = render_alpaca(c, obj, line, out); break;
    case DT_MESSAGES: rc = render_messages(c, obj, line, out); break;
    case DT_PROMPT_COMPLETION: rc = render_prompt_completion(c, obj, line, out); break;
    case DT_TEXT: rc = render_text(c, obj, line, out); break;
    case DT_PREFERENCE: rc = render_preference(c, obj, line, out); break;
    case DT_MCQ: rc = render_mcq(c, obj, line, out); break;
    default: rc = ds_fail(DS_EINTERNAL, "unknown dataset type %d", (int)c->type);
    }
    /* every sequence starts with BOS where the template writes one */
    bool bos = chat_template_wants_bos(c->tmpl);
    out->seq.bos = out->prompt.bos = bos;
    out->chosen.bos = out->rejected.bos = false;
    if (rc) ds_rendered_free(out);
    return rc;
}

/* The record's fields as pieces, for data cleaning (dataset.h). Every type
 * but mcq goes through the plain template, whose pieces are the fields'
 * texts as they are; mcq takes its fields directly, so that the prompt's
 * scaffolding does not count as text of the record. */
int dataset_record_text(const char *type, const json_t *obj, const char *file, int line, ct_render *out)
{
    data_source s = {(char *)file, (char *)type, NULL, -1, 0, NULL, NULL};
    ds_type t = DT_TEXT;
    bool cloze;
    int rc = ds_source_type(&s, EX_SFT, &t, &cloze);
    if (rc) return rc;
    const chat_template *plain;
    if ((rc = chat_template_find("plain", &plain))) return rc;
    ds_render_ctx c = {t, false, plain, t == DT_PREFERENCE ? EX_PREF : EX_SFT, file, ANSWER_BASE_ANY};
    if (t == DT_MCQ) {
        mcq_fields f;
        if ((rc = get_mcq(&c, obj, line, &f))) return rc;
        rc = ct_push(out, f.q, strlen(f.q), false, false);
        for (int i = 0; i < f.n && !rc; i++) rc = ct_push(out, f.choice[i], strlen(f.choice[i]), true, false);
        return rc;
    }
    ds_rendered r;
    if ((rc = ds_render_record(&c, obj, line, &r))) return rc;
    const ct_render *parts[3] = {&r.seq, NULL, NULL};
    if (c.kind == EX_PREF) parts[0] = &r.prompt, parts[1] = &r.chosen, parts[2] = &r.rejected;
    for (int k = 0; k < 3 && !rc; k++)
        for (int i = 0; parts[k] && i < parts[k]->n && !rc; i++)
            rc = ct_push(out, parts[k]->p[i].text, parts[k]->p[i].len, parts[k]->p[i].train, false);
    ds_rendered_free(&r);
    return rc;
}
