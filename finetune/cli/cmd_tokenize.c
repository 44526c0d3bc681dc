/* finetune/cli/cmd_tokenize.c - `ds-ft tokenize --tokenizer DIR (--text TEXT | --jsonl FILE) [--special]`.
 *
 * Prints the token ids of each input as a JSON array, one line per input:
 * the one --text, or the "text" field of every record of --jsonl (blank
 * lines skipped; a record without a "text" string stops with file:line).
 * --special adds BOS/EOS as transformers does with add_special_tokens=True;
 * when the folder is a model folder, its config.json / generation_config.json
 * give the ids the tokenizer does not name, as in training.
 */
#include "commands.h"

#include "core/files.h"
#include "core/status.h"
#include "data/jsonl.h"
#include "data/model_config.h"
#include "data/tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int print_ids(const tokenizer *t, const char *text, size_t len, bool special, tok_ids *ids)
{
    ids->n = 0;
    int rc = tok_encode(t, text, len, special, ids);
    if (rc) return rc;
    putchar('[');
    for (size_t i = 0; i < ids->n; i++) printf(i ? ", %d" : "%d", ids->ids[i]);
    putchar(']');
    putchar('\n');
    return ferror(stdout) ? ds_fail(DS_EIO, "tokenize: cannot write the output") : DS_OK;
}

static int tokenize_jsonl(const tokenizer *t, const char *path, bool special, tok_ids *ids)
{
    jsonl_reader *r;
    int rc = jsonl_open(path, 0, &r);
    if (rc) return rc;
    for (;;) {
        json_t *obj;
        int line;
        if ((rc = jsonl_next(r, &obj, &line)) || !obj) break;
        json_t *text = json_object_get(obj, "text");
        if (!json_is_string(text))
            rc = ds_fail(DS_EDATA, "%s:%d: no \"text\" string in this record", jsonl_name(r), line);
        else if ((rc = print_ids(t, json_string_value(text), json_string_length(text), special, ids)))
            ds_fail_context(rc, "%s:%d: ", jsonl_name(r), line);
        json_decref(obj);
        if (rc) break;
    }
    jsonl_close(r);
    return rc;
}

typedef struct {
    const char *tokenizer, *text, *jsonl;
    bool special;
} tokenize_opts;

static const cli_opt TOKENIZE_OPTS[] = {
    CLI_TOKENIZER(tokenize_opts, tokenizer, true, NULL,
                  "a folder with tokenizer.json (a model folder), or a Hugging Face model id found in the local Hub cache"),
    {"--text", ARG_TEXT, offsetof(tokenize_opts, text), "TEXT", NULL, 0, 0, NULL, false,
     "one text to encode (this or --jsonl)"},
    {"--jsonl", ARG_TEXT, offsetof(tokenize_opts, jsonl), "FILE", NULL, 0, 0, NULL, false,
     "encode the \"text\" field of every record (this or --text)"},
    {"--special", ARG_FLAG, offsetof(tokenize_opts, special), NULL, "off", 0, 0, NULL, false,
     "add BOS/EOS as transformers does with add_special_tokens=True"},
    CLI_END,
};

const cli_spec TOKENIZE_SPEC = {"tokenize", "", 0, 0, "--tokenizer DIR|ID (--text TEXT | --jsonl FILE) [--special]",
                                "token ids as JSON, one line per input", TOKENIZE_OPTS, NULL};

int cmd_tokenize(int argc, char **argv)
{
    tokenize_opts o;
    cli_parsed p;
    int rc = cli_parse(&TOKENIZE_SPEC, argc, argv, &o, &p);
    if (!rc && !o.text == !o.jsonl) rc = cli_fail(&TOKENIZE_SPEC, "give exactly one of --text TEXT and --jsonl FILE");
    tokenizer *t = NULL;
    if (!rc) rc = tok_load(o.tokenizer, &t);
    if (rc) {
        cli_parsed_free(&p);
        return rc;
    }
    const char *dir = o.tokenizer, *text = o.text, *jsonl = o.jsonl;
    bool special = o.special;
    char *config = ds_path_join(dir, "config.json");
    model_config mc;
    if (ds_exists(config)) {
        if (model_config_load(dir, &mc) == DS_OK) tok_set_default_ids(t, mc.bos_id, mc.eos_id, mc.pad_id);
        else ds_clear_error();   /* a config.json ds-ft cannot train leaves the tokenizer as it is */
    }
    free(config);
    tok_ids ids = {0};
    if (text) {
        if ((rc = print_ids(t, text, strlen(text), special, &ids))) ds_fail_context(rc, "--text: ");
    } else
        rc = tokenize_jsonl(t, jsonl, special, &ids);
    if (!rc && fflush(stdout)) rc = ds_fail(DS_EIO, "tokenize: cannot write the output");
    tok_ids_free(&ids);
    tok_free(t);
    cli_parsed_free(&p);
    return rc;
}
