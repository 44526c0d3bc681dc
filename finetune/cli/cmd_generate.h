/* finetune/cli/cmd_generate.h - the parts of `ds-ft generate` shared by
 * cmd_generate.c and cmd_generate_chat.c. Private to finetune/cli/. */
#ifndef DS_FINETUNE_CLI_CMD_GENERATE_H
#define DS_FINETUNE_CLI_CMD_GENERATE_H

#include "commands.h"
#include "finetune/run/generate.h"
#include "finetune/run/run.h"

#include "data/template/jinja.h"

typedef struct {
    const char *model, *adapter, *prompt, *prompts, *system, *device;
    long max_new, seed, top_k, batch, context;
    double temperature, top_p, min_p, rep_penalty;
    cli_list stop;
    bool four, chat, recompute;
} generate_opts;

/* The sampling and stopping rules of the options (stop_ids: room for 2). */
gen_opts gen_options(const generate_opts *o, const ds_run *x, int32_t stop_ids[2]);
/* The tokens of one prompt, through the chat template when chat is set. */
int gen_encode(const generate_opts *o, const ds_run *x, const jinja_chat *chat, const char *text, tok_ids *ids);
/* The engine (smallest shape) and a decoder of `rows` rows of ctx positions (--context wins). */
int gen_decoder(const generate_opts *o, ds_run *x, int rows, int ctx, engine_decoder **d);
/* "generate: N prompt tokens in ... tokens/s decoding (cpu)" on stderr. */
void gen_print_stats(const ds_run *x, const gen_stats *st);
/* Streaming to stdout: `before` (the prompt, or "") printed ahead of the first piece. */
typedef struct {
    const char *before;
    bool started;
} gen_printer;
void gen_print_piece(void *ctx, int b, const char *piece, size_t len);
/* After a generation: the newline (and `before` if no piece came). */
void gen_print_end(gen_printer *p);
/* --chat on a terminal: a conversation (cmd_generate_chat.c). */
int gen_conversation(const generate_opts *o, ds_run *x, const jinja_chat *chat);

#endif
