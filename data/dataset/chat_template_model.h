/* data/dataset/chat_template_model.h - a model's own chat template (data/template/
 * jinja.h) as text pieces that carry their training mask; what
 * chat_template.c calls for data.chat_template "auto".
 */
#ifndef DS_DATA_CHAT_TEMPLATE_MODEL_H
#define DS_DATA_CHAT_TEMPLATE_MODEL_H

#include "chat_template.h"
#include "data/template/jinja.h"

/* The whole conversation: the messages before the reply being trained
 * (those up to the last user turn, and at least the first `context`)
 * rendered with add_generation_prompt=true are masked, the rest of the
 * conversation's rendering trained. Appends to out. */
int ctm_render_chat(const jinja_chat *c, const chat_msg *m, int n, int context, ct_render *out);
/* The messages with add_generation_prompt=true, masked. */
int ctm_render_prompt(const jinja_chat *c, const chat_msg *m, int n, ct_render *out);
/* What the conversation prompt + one assistant reply renders after the prompt, trained. */
int ctm_render_answer(const jinja_chat *c, const chat_msg *p, int np, const char *content, size_t len, ct_render *out);

#endif
