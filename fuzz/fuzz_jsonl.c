/* Fuzz the dataset record reader and the record parsing: arbitrary bytes
 * are read as a dataset file (JSONL, a JSON array, or zstd of either), each
 * record is rendered as every dataset type through every chat template,
 * and, where the tiny tokenizer of the shared fixtures can be loaded, the
 * bytes are loaded as a dataset for one type chosen by the input, then split
 * and planned into batches. Every failure must be a clean status with a
 * message; the sanitizers catch the rest. */
#include "fixture_dir.h"
#include "core/files.h"
#include "core/status.h"
#include "data/dataset/dataset_internal.h"
#include "data/jsonl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *types[] = {"alpaca", "messages", "prompt_completion", "text", "preference", "mcq"};
static const char *templates[] = {"deepseek", "llama3", "chatml", "alpaca", "plain"};

static tokenizer *g_tok;
static char *g_path;

static void remove_tmp(void) { unlink(g_path); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char *dir = fuzz_fixture_dir("tiny-llama");
    if (tok_load(dir, &g_tok) != DS_OK) g_tok = NULL;   /* parsing is still fuzzed without it */
    free(dir);
    const char *tmp = getenv("TMPDIR");
    g_path = ds_strdupf("%s/fuzz_jsonl_%d.jsonl", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    atexit(remove_tmp);
    return 0;
}

static void render_all(const json_t *obj, int line)
{
    for (int t = 0; t < 6; t++)
        for (int k = 0; k < 5; k++)
            for (int kind = EX_SFT; kind <= EX_MCQ; kind++) {
                data_source s = {"fuzz.jsonl", (char *)types[t], (k & 1) ? "cloze" : "letters", -1, 0, NULL, NULL};
                ds_type type;
                bool cloze;
                if (ds_source_type(&s, (example_kind)kind, &type, &cloze) != DS_OK) continue;
                const chat_template *ct;
                if (chat_template_find(templates[k], &ct) != DS_OK) abort();
                ds_render_ctx ctx = {type, cloze, ct, (example_kind)kind, "fuzz.jsonl", 0};
                ds_rendered r;
                ds_clear_error();
                if (ds_render_record(&ctx, obj, line, &r) == DS_OK) {
                    char *text = ct_render_text(kind == EX_SFT ? &r.seq : &r.prompt, "</s>");
                    free(text);
                    ds_rendered_free(&r);
                } else if (!ds_errmsg()[0]) {
                    abort();                      /* a failure without a message */
                }
            }
}

static void load_and_plan(const uint8_t *data, size_t size)
{
    FILE *f = fopen(g_path, "wb");       /* a scratch file: no atomic write (fsync) needed */
    if (!f) return;
    bool ok = fwrite(data, 1, size, f) == size;
    if (fclose(f) != 0 || !ok) return;
    uint8_t sel = size ? data[size - 1] : 0;
    example_kind kind = (sel & 0x30) == 0x10 ? EX_PREF : (sel & 0x30) == 0x20 ? EX_MCQ : EX_SFT;
    data_source s = {g_path, (char *)types[sel % 6], (sel & 0x40) ? "cloze" : NULL, (sel & 0x80) ? 3 : -1, 0, NULL, NULL};
    if (kind == EX_PREF) s.type = "preference";
    if (kind == EX_MCQ) s.type = "mcq";
    data_options o = {templates[(sel >> 3) % 5], 8 + (sel & 0x3f), (sel & 2) != 0, (sel & 4) != 0};
    dataset d;
    if (dataset_load(&s, 1, kind, g_tok, &o, &d) != DS_OK) return;
    dataset tr, va;
    if (dataset_split(&d, 0.25, sel, &tr, &va) == DS_OK) {
        epoch_plan p;
        if (epoch_plan_make(&tr, 1, sel, true, true, o.sequence_len, 2, &p) == DS_OK) {
            for (int b = 0; b < p.nbatches; b++) {
                batch bt;
                if (epoch_plan_batch(&p, b, &tr, 0, &bt) == DS_OK) batch_free(&bt);
            }
            epoch_plan_free(&p);
        }
        dataset_free(&tr);
        dataset_free(&va);
    }
    dataset_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    jsonl_reader *r;
    if (jsonl_open_mem(data, size, "fuzz.jsonl", 1 << 16, &r) != DS_OK) return 0;
    for (int n = 0; n < 64; n++) {
        json_t *obj;
        int line;
        ds_clear_error();
        int rc = jsonl_next(r, &obj, &line);
        if (rc != DS_OK) {
            if (!ds_errmsg()[0]) abort();
            if (!jsonl_can_continue(r)) break;
            continue;
        }
        if (!obj) break;
        render_all(obj, line);
        json_decref(obj);
    }
    jsonl_close(r);
    if (g_tok) load_and_plan(data, size);
    return 0;
}
