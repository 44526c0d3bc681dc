/* finetune/cli/cmd_generate_chat.c - `ds-ft generate --chat` on a terminal: a
 * conversation. Each turn renders the whole conversation with the model's chat
 * template; the key/value cache keeps the longest prefix the new rendering
 * shares with what it holds, so a turn computes only its new tokens. An empty
 * line or end of input ends the conversation. */
#include "cmd_generate.h"

#include "core/mem.h"
#include "core/status.h"
#include "data/json_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* messages (a JSON list) rendered with the generation prompt, as tokens. */
static int render(const ds_run *x, const jinja_chat *chat, const json_t *msgs, tok_ids *ids)
{
    char *text = NULL;
    size_t len = 0;
    int rc = jinja_chat_render(chat, msgs, true, &text, &len);
    ids->n = 0;
    if (!rc) rc = tok_encode(x->tok, text, len, false, ids);
    free(text);
    return rc;
}

int gen_conversation(const generate_opts *o, ds_run *x, const jinja_chat *chat)
{
    const int maxpos = x->model->cfg.max_position, V = x->model->cfg.vocab_size;
    int32_t stop_ids[2];
    gen_opts g = gen_options(o, x, stop_ids);
    engine_decoder *d = NULL;
    int rc = gen_decoder(o, x, 1, maxpos < 4096 ? maxpos : 4096, &d);
    json_t *msgs = json_array();
    if (!rc && !msgs) rc = ds_fail(DS_ENOMEM, "out of memory starting a conversation");
    if (!rc && o->system) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", o->system));
    tok_ids cached = {0}, ids = {0};   /* the tokens the cache holds (a prefix of `cached`); this turn's prompt */
    char *line = NULL;
    size_t cap = 0;
    fprintf(stderr, "chat with %s: an empty line or Ctrl-D ends it\n", o->model);
    for (int turn = 0; !rc; turn++) {
        fprintf(stderr, "> ");
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) break;
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", line));
        if (json_alloc_failed()) rc = DS_ENOMEM;
        if (!rc) rc = render(x, chat, msgs, &ids);
        if (rc) break;
        /* keep what the cache shares with the new rendering */
        size_t keep = 0, held = (size_t)decoder_len(d, 0);
        while (keep < held && keep < ids.n && cached.ids[keep] == ids.ids[keep]) keep++;
        decoder_truncate(d, 0, (int)keep);
        gen_result res = {0};
        gen_stats st = {0};
        g.seed = (uint64_t)o->seed + (uint64_t)turn;
        gen_printer out = {.before = ""};
        g.on_text = gen_print_piece, g.on_text_ctx = &out;
        rc = generate(d, x->tok, V, 1, &ids, &g, &res, &st);
        if (!rc || rc == DS_EINTERRUPTED) {
            gen_print_end(&out);
            gen_print_stats(x, &st);
        }
        /* the cache now holds the prompt and every new token but the last */
        cached.n = 0;
        for (size_t i = 0; !rc && i < ids.n; i++)
            if (ds_grow(&cached.ids, &cached.cap, cached.n + 1, sizeof *cached.ids)) rc = DS_ENOMEM;
            else cached.ids[cached.n++] = ids.ids[i];
        for (size_t i = 0; !rc && i < res.ids.n; i++)
            if (ds_grow(&cached.ids, &cached.cap, cached.n + 1, sizeof *cached.ids)) rc = DS_ENOMEM;
            else cached.ids[cached.n++] = res.ids.ids[i];
        if (!rc) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "assistant", "content",
                                                       res.text ? res.text : ""));
        gen_result_free(&res);
    }
    free(line);
    tok_ids_free(&cached);
    tok_ids_free(&ids);
    json_decref(msgs);
    decoder_free(d);
    return rc;
}
