/* finetune/cli/cmd_generate.c - `ds-ft generate`: continue prompts with a
 * key/value cache (finetune/engine/engine_decode.h), greedy or sampled
 * (finetune/run/generate.h), with or without an adapter.
 *
 *   ds-ft generate --model DIR [--adapter DIR] (--prompt TEXT | --prompts FILE | --chat) [options]
 *   (the options: GENERATE_OPTS)
 * One prompt prints the prompt and its continuation (with --chat: the reply);
 * --prompts FILE generates for every line of FILE, --batch-size at a time, and
 * prints one JSON object per prompt. --chat with no prompt on a terminal is an
 * interactive conversation (cmd_generate_chat.c). Speeds go to stderr.
 * --recompute runs the model over the whole sequence for every new token
 * instead (no cache): the check the cache is measured against. */
#include "cmd_generate.h"

#include "core/mem.h"
#include "core/status.h"
#include "data/json_util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const cli_opt GENERATE_OPTS[] = {
    CLI_MODEL(generate_opts, model, true),
    CLI_ADAPTER(generate_opts, adapter, "a PEFT adapter to add to the model"),
    {"--prompt", ARG_TEXT, offsetof(generate_opts, prompt), "TEXT", NULL, 0, 0, NULL, false,
     "the text to continue (with --chat: the user's message)"},
    {"--prompts", ARG_TEXT, offsetof(generate_opts, prompts), "FILE", NULL, 0, 0, NULL, false,
     "one prompt per line, generated in batches; prints one JSON object per prompt"},
    {"--chat", ARG_FLAG, offsetof(generate_opts, chat), NULL, "off", 0, 0, NULL, false,
     "wrap each prompt in the model's chat template as a user message; without --prompt(s), on a terminal: "
     "a conversation"},
    {"--system", ARG_TEXT, offsetof(generate_opts, system), "TEXT", NULL, 0, 0, NULL, false,
     "with --chat: a system message first"},
    {"--max-new-tokens", ARG_INT, offsetof(generate_opts, max_new), "N", "64", 1, 1 << 20, NULL, false,
     "stop after this many new tokens (or at EOS or a stop string)"},
    {"--temperature", ARG_NUM, offsetof(generate_opts, temperature), "T", "0", 0, 100, NULL, false,
     "0 = greedy; otherwise sample from softmax(logits / T)"},
    {"--top-k", ARG_INT, offsetof(generate_opts, top_k), "K", "0", 0, INT_MAX, NULL, false,
     "sample among the K likeliest tokens only (0 = all)"},
    {"--top-p", ARG_NUM, offsetof(generate_opts, top_p), "P", "1", 1e-9, 1, NULL, false,
     "sample from the smallest set of likeliest tokens whose probability reaches P"},
    {"--min-p", ARG_NUM, offsetof(generate_opts, min_p), "P", "0", 0, 1, NULL, false,
     "drop tokens less likely than P times the likeliest"},
    {"--repetition-penalty", ARG_NUM, offsetof(generate_opts, rep_penalty), "R", "1", 1e-3, 100, NULL, false,
     "divide the positive logits (multiply the negative ones) of tokens already in the sequence by R"},
    {"--stop", ARG_FILES, offsetof(generate_opts, stop), "TEXT", NULL, 0, 0, NULL, false,
     "stop strings: generation ends where the text contains one, and it is cut before it"},
    {"--seed", ARG_INT, offsetof(generate_opts, seed), "S", "0", 0, LONG_MAX, NULL, false,
     "seed of the sampling (prompt i of a batch draws from its own stream)"},
    {"--batch-size", ARG_INT, offsetof(generate_opts, batch), "N", "8", 1, 256, NULL, false,
     "with --prompts: prompts generated together"},
    {"--context", ARG_INT, offsetof(generate_opts, context), "N", "0", 0, 1 << 24, NULL, false,
     "positions of the key/value cache per prompt (0 = prompt + max-new-tokens; a conversation: the model's "
     "maximum, at most 4096)"},
    {"--recompute", ARG_FLAG, offsetof(generate_opts, recompute), NULL, "off", 0, 0, NULL, false,
     "no key/value cache: run the model over the whole sequence for every new token (one --prompt only)"},
    CLI_4BIT(generate_opts, four),
    CLI_DEVICE(generate_opts, device),
    CLI_END,
};

const cli_spec GENERATE_SPEC = {"generate", "", 0, 0, NULL,
                                "generate text with a key/value cache (greedy, or sampled with temperature, top-k, "
                                "top-p, min-p and a repetition penalty)", GENERATE_OPTS, NULL};

void gen_print_stats(const ds_run *x, const gen_stats *st)
{
    fprintf(stderr, "generate: %ld prompt tokens in %.3f s (%.1f tokens/s), %ld new tokens, %.1f tokens/s decoding "
                    "(%s)\n", st->prompt_tokens, st->prefill_s,
            st->prefill_s > 0 ? st->prompt_tokens / st->prefill_s : 0.0, st->new_tokens,
            st->decode_s > 0 ? st->new_tokens / st->decode_s : 0.0, be_name(x->be));
}

/* The sampling and stopping rules of the options. */
gen_opts gen_options(const generate_opts *o, const ds_run *x, int32_t stop_ids[2])
{
    gen_opts g = {.max_new = (int)o->max_new, .seed = (uint64_t)o->seed, .stop_ids = stop_ids,
                  .stop = o->stop.items, .nstop = o->stop.n};
    g.sample = (sampler_opts){.temperature = (float)o->temperature, .top_k = (int)o->top_k, .top_p = (float)o->top_p,
                              .min_p = (float)o->min_p, .repetition_penalty = (float)o->rep_penalty};
    int eos = tok_eos_id(x->tok), cfg_eos = x->model->cfg.eos_id;
    if (eos >= 0) stop_ids[g.nstop_ids++] = eos;
    if (cfg_eos >= 0 && cfg_eos != eos) stop_ids[g.nstop_ids++] = cfg_eos;
    return g;
}

/* The tokens of one prompt: the text as it is, or (--chat) the chat template's
 * rendering of [system,] user + the generation prompt. */
int gen_encode(const generate_opts *o, const ds_run *x, const jinja_chat *chat, const char *text, tok_ids *ids)
{
    if (!chat) return tok_encode(x->tok, text, strlen(text), true, ids);
    json_t *msgs = json_array();
    if (o->system) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", o->system));
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", text));
    char *rendered = NULL;
    size_t len = 0;
    int rc = json_alloc_failed() ? DS_ENOMEM : jinja_chat_render(chat, msgs, true, &rendered, &len);
    json_decref(msgs);
    /* the template writes the special tokens itself, as apply_chat_template(tokenize=True) leaves them */
    if (!rc) rc = tok_encode(x->tok, rendered, len, false, ids);
    free(rendered);
    return rc;
}

int gen_decoder(const generate_opts *o, ds_run *x, int rows, int ctx, engine_decoder **d)
{
    const int maxpos = x->model->cfg.max_position;
    if (o->context) ctx = (int)o->context;
    if (ctx > maxpos)
        return ds_fail(DS_EUSAGE, "generate: %d positions exceed the model's %d (shorten the prompt or "
                                  "--max-new-tokens)", ctx, maxpos);
    /* the decoder has its own buffers; DeepSeek's layer runs in the engine's, a step of up to 256 tokens */
    const long long all = (long long)rows * ctx;
    engine_opts eo = {.max_B = 1, .max_T = x->model->cfg.ds.on ? (int)(all < 256 ? all : 256) : 1};
    int rc = ds_run_start(x, &eo);
    decoder_opts dopts = {.max_B = rows, .ctx = ctx, .lora = x->adapter != NULL};
    if (!rc) rc = decoder_create(x->eng, &dopts, d);
    return rc;
}

void gen_print_piece(void *ctx, int b, const char *piece, size_t len)
{
    gen_printer *p = ctx;
    if (!p->started) fputs(p->before, stdout);
    p->started = true;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
}

void gen_print_end(gen_printer *p)
{
    if (!p->started) fputs(p->before, stdout);
    p->started = true;
    putchar('\n');
    fflush(stdout);
}

/* One prompt: the prompt and its continuation (with --chat, the reply alone). */
static int one_prompt(const generate_opts *o, ds_run *x, const jinja_chat *chat)
{
    tok_ids ids = {0};
    int32_t stop_ids[2];
    gen_opts g = gen_options(o, x, stop_ids);
    gen_result res = {0};
    gen_stats st = {0};
    engine_decoder *d = NULL;
    gen_printer out = {.before = chat ? "" : o->prompt};
    int rc = gen_encode(o, x, chat, o->prompt, &ids);
    const int V = x->model->cfg.vocab_size, need = (int)ids.n + g.max_new;
    if (!rc && o->recompute) {
        if (need > x->model->cfg.max_position)
            rc = ds_fail(DS_EUSAGE, "generate: %d tokens exceed the model's %d positions", need,
                         x->model->cfg.max_position);
        engine_opts eo = {.max_B = 1, .max_T = need};
        if (!rc) rc = ds_run_start(x, &eo);
        if (!rc) rc = generate_recompute(x->eng, x->adapter != NULL, x->tok, V, &ids, &g, &res, &st);
    } else if (!rc) {   /* streamed as it comes */
        g.on_text = gen_print_piece, g.on_text_ctx = &out;
        rc = gen_decoder(o, x, 1, need, &d);
        if (!rc) rc = generate(d, x->tok, V, 1, &ids, &g, &res, &st);
    }
    if (!rc || rc == DS_EINTERRUPTED) {   /* interrupted: what was generated so far, then exit 130 */
        if (o->recompute) gen_print_piece(&out, 0, res.text ? res.text : "", res.text ? strlen(res.text) : 0);
        gen_print_end(&out);
        gen_print_stats(x, &st);
    }
    gen_result_free(&res);
    decoder_free(d);
    tok_ids_free(&ids);
    return rc;
}

/* The lines of FILE (without their line ends; empty lines skipped). */
static int read_prompts(const char *path, char ***lines, int *n)
{
    *lines = NULL, *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ds_fail(DS_ENOINPUT, "%s: cannot open the prompts file", path);
    char *line = NULL;
    size_t cap = 0, have = 0;
    ssize_t len;
    int rc = DS_OK;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) continue;
        rc = ds_grow(lines, &have, (size_t)*n + 1, sizeof **lines);
        char *copy = rc ? NULL : ds_strdup(line);
        if (!rc && !copy) rc = DS_ENOMEM;
        if (!rc) (*lines)[(*n)++] = copy;
    }
    free(line);
    fclose(f);
    if (!rc && !*n) rc = ds_fail(DS_EDATA, "%s: no prompts (one per line)", path);
    return rc;
}

static int print_result(const char *prompt, const gen_result *r)
{
    json_t *j = json_pack("{s:s,s:s,s:I,s:s}", "prompt", prompt, "completion", r->text ? r->text : "", "tokens",
                          (json_int_t)r->ids.n, "end", gen_end_name(r->end));
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(j);
    if (!s) return ds_fail(DS_ENOMEM, "out of memory writing a result");
    printf("%s\n", s);
    free(s);
    return DS_OK;
}

/* --prompts FILE: batches of --batch-size prompts; one JSON line each. */
static int many_prompts(const generate_opts *o, ds_run *x, const jinja_chat *chat)
{
    char **lines = NULL;
    int n = 0;
    int rc = read_prompts(o->prompts, &lines, &n);
    const int B = n < (int)o->batch ? n : (int)o->batch, V = x->model->cfg.vocab_size;
    tok_ids *ids = rc ? NULL : ds_calloc((size_t)n, sizeof *ids, "the prompts' tokens");
    gen_result *res = rc ? NULL : ds_calloc((size_t)B, sizeof *res, "the results");
    if (!rc && (!ids || !res)) rc = DS_ENOMEM;
    int longest = 0;
    for (int i = 0; !rc && i < n; i++) {
        rc = gen_encode(o, x, chat, lines[i], &ids[i]);
        if ((int)ids[i].n > longest) longest = (int)ids[i].n;
    }
    int32_t stop_ids[2];
    gen_opts g = rc ? (gen_opts){0} : gen_options(o, x, stop_ids);
    engine_decoder *d = NULL;
    if (!rc) rc = gen_decoder(o, x, B, longest + g.max_new, &d);
    gen_stats all = {0};
    for (int i0 = 0; !rc && i0 < n; i0 += B) {
        const int k = n - i0 < B ? n - i0 : B;
        for (int r = 0; r < k; r++) decoder_truncate(d, r, 0);
        g.first_stream = (uint64_t)i0;   /* prompt i draws from stream i, whatever the batch size */
        gen_stats st;
        rc = generate(d, x->tok, V, k, ids + i0, &g, res, &st);
        for (int r = 0; (!rc || rc == DS_EINTERRUPTED) && r < k; r++) {
            int prc = print_result(lines[i0 + r], &res[r]);
            if (!rc) rc = prc;
        }
        for (int r = 0; r < k; r++) gen_result_free(&res[r]);
        all.prompt_tokens += st.prompt_tokens, all.new_tokens += st.new_tokens;
        all.prefill_s += st.prefill_s, all.decode_s += st.decode_s;
    }
    if (!rc) gen_print_stats(x, &all);
    decoder_free(d);
    for (int i = 0; ids && i < n; i++) tok_ids_free(&ids[i]);
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines), free(ids), free(res);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    generate_opts o;
    cli_parsed p;
    int rc = cli_parse(&GENERATE_SPEC, argc, argv, &o, &p);
    bool interactive = !rc && o.chat && !o.prompt && !o.prompts;
    if (!rc && o.prompt && o.prompts) rc = cli_fail(&GENERATE_SPEC, "--prompt and --prompts: give one");
    if (!rc && !o.prompt && !o.prompts && !o.chat) rc = cli_fail(&GENERATE_SPEC, "--prompt, --prompts or --chat is required");
    if (!rc && interactive && !isatty(0))
        rc = cli_fail(&GENERATE_SPEC, "--chat without --prompt is a conversation on a terminal, and stdin is not one");
    if (!rc && o.recompute && !o.prompt) rc = cli_fail(&GENERATE_SPEC, "--recompute takes one --prompt");
    if (!rc && o.system && !o.chat) rc = cli_fail(&GENERATE_SPEC, "--system goes with --chat");
    ds_run x = {0};
    jinja_chat *chat = NULL;
    ds_run_opts ro = {.device = BE_AUTO, .model_dir = o.model, .adapter_dir = o.adapter, .load_in_4bit = o.four,
                      .double_quant = true};
    if (!rc) rc = be_kind_parse(o.device, &ro.device);
    if (!rc) rc = ds_run_open(&ro, &x);
    if (!rc && o.chat) {
        rc = jinja_chat_load(o.model, &chat);
        if (!rc && !chat) rc = ds_fail(DS_EUSAGE, "%s: --chat: the model has no chat template", o.model);
    }
    if (!rc) {
        if (interactive) rc = gen_conversation(&o, &x, chat);
        else if (o.prompts) rc = many_prompts(&o, &x, chat);
        else rc = one_prompt(&o, &x, chat);
    }
    jinja_chat_free(chat);
    ds_run_close(&x);
    cli_parsed_free(&p);
    return rc;
}
