/* data/dataset/chat_template_model.c - a model's chat template as masked and
 * trained pieces (see chat_template_model.h). The cut between prompt and
 * completion is where the prompt's own rendering (add_generation_prompt=
 * true) ends inside the whole conversation's rendering, checked to be a
 * prefix of it (jinja_chat_split), so the masking is exact.
 */
#include "chat_template_model.h"

#include "data/json_util.h"

#include "core/buf.h"
#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

/* Messages as the JSON list transformers takes: [{"role", "content"}]. An
 * alpaca "input" joins the content after a blank line, as in the built-ins. */
static int messages_json(const chat_msg *m, int n, json_t **out)
{
    static const char *const roles[] = {"system", "user", "assistant"};
    json_alloc_reset();   /* a member that could not be allocated makes it fail */
    json_t *list = json_array();
    ds_buf text = {0};
    int rc = ds_buf_reserve(&text, 0);   /* text.p is not NULL even for an empty message */
    for (int i = 0; i < n && !rc; i++) {
        text.len = 0;
        rc = ds_buf_append(&text, m[i].content, m[i].len);
        if (!rc && m[i].input_len) rc = ds_buf_puts(&text, "\n\n");
        if (!rc && m[i].input_len) rc = ds_buf_append(&text, m[i].input, m[i].input_len);
        json_t *content = rc ? NULL : json_stringn(text.p, text.len);
        json_t *msg = content ? json_pack("{s:s, s:o}", "role", roles[m[i].role], "content", content) : NULL;
        if (!rc && (!msg || json_array_append_new(list, msg)))
            rc = json_alloc_failed() ? DS_ENOMEM : ds_fail(DS_EDATA, "message %d is not UTF-8 text", i + 1);
    }
    ds_buf_free(&text);
    if (!rc && json_alloc_failed()) rc = DS_ENOMEM;
    if (rc) json_decref(list);
    else *out = list;
    return rc;
}

static int push_split(const jinja_chat *c, const json_t *msgs, size_t k, bool prompt_piece, ct_render *out)
{
    char *p, *rest;
    size_t pn, rn;
    int rc = jinja_chat_split(c, msgs, k, &p, &pn, &rest, &rn);
    if (rc) return rc;
    if (prompt_piece) rc = ct_push(out, p, pn, false, false);
    if (!rc) rc = ct_push(out, rest, rn, true, false);
    free(p);
    free(rest);
    out->own_bos = true;
    return rc;
}

int ctm_render_chat(const jinja_chat *c, const chat_msg *m, int n, int context, ct_render *out)
{
    int k = context;
    for (int i = 0; i < n; i++)
        if (m[i].role == CT_USER && i + 1 > k) k = i + 1;
    json_t *msgs;
    int rc = messages_json(m, n, &msgs);
    if (rc) return rc;
    if (k >= n) {                   /* nothing after the prompt: all of it context */
        char *text;
        size_t len;
        rc = jinja_chat_render(c, msgs, false, &text, &len);
        if (!rc) {
            rc = ct_push(out, text, len, false, false);
            free(text);
        }
        out->own_bos = true;
    } else {
        rc = push_split(c, msgs, (size_t)k, true, out);
    }
    json_decref(msgs);
    return rc;
}

int ctm_render_prompt(const jinja_chat *c, const chat_msg *m, int n, ct_render *out)
{
    json_t *msgs;
    char *text;
    size_t len;
    int rc = messages_json(m, n, &msgs);
    if (rc) return rc;
    rc = jinja_chat_render(c, msgs, true, &text, &len);
    json_decref(msgs);
    if (rc) return rc;
    rc = ct_push(out, text, len, false, false);
    free(text);
    out->own_bos = true;
    return rc;
}

int ctm_render_answer(const jinja_chat *c, const chat_msg *p, int np, const char *content, size_t len, ct_render *out)
{
    chat_msg *all = ds_calloc((size_t)np + 1, sizeof *all, "a conversation");
    if (!all) return DS_ENOMEM;
    memcpy(all, p, (size_t)np * sizeof *all);
    all[np] = (chat_msg){CT_ASSISTANT, content, len, NULL, 0};
    json_t *msgs;
    int rc = messages_json(all, np + 1, &msgs);
    free(all);
    if (rc) return rc;
    rc = push_split(c, msgs, (size_t)np, false, out);
    json_decref(msgs);
    return rc;
}
