/* finetune/cmd_export_gguf.c - `ds-ft export --format gguf|gguf-lora`.
 *
 *   ds-ft export --format gguf --model DIR [--adapter DIR] --out FILE.gguf
 *       [--type f32|f16|bf16|q8_0|q4_0|q4_k_m] [--source dequantized|original] [--pre NAME] [--force]
 *   ds-ft export --format gguf-lora --adapter DIR --model DIR --out FILE.gguf [--force]
 *
 * An existing --out is refused (exit 73) unless --force; the file is written
 * under a temporary name and renamed, so a failure leaves nothing behind. */
#include "commands.h"
#include "finetune/run/run.h"

#include "finetune/export/gguf_export.h"

#include "core/files.h"
#include "core/status.h"

#include <stdio.h>
#include <string.h>

static int check_out(const char *out, bool force)
{
    if (ds_is_dir(out)) return ds_fail(DS_EUSAGE, "--out %s is a folder; give the file to write", out);
    if (ds_exists(out) && !force) return ds_fail(DS_EEXISTS, "%s exists (pass --force to replace it)", out);
    return DS_OK;
}

static int check_dir(const char *dir, const char *what)
{
    return ds_is_dir(dir) ? DS_OK : ds_fail(DS_ENOINPUT, "%s: no such %s folder", dir, what);
}

static void print_report(const char *out, const char *type, const gguf_export_report *r)
{
    printf("wrote %s: %s, %s, %d tensors (", out, r->arch, type, r->ntensors);
    bool first = true;
    for (int t = 0; t < GGML_NTYPES; t++)
        if (r->per_type[t]) {
            printf("%s%d %s", first ? "" : ", ", r->per_type[t], ggml_type_get(t)->name);
            first = false;
        }
    printf("), %.1f MB of tensor data", (double)r->data_bytes / 1e6);
    if (*r->pre) printf(", pre-tokenizer %s", r->pre);
    printf("\n");
    if (r->fallbacks)
        printf("%d tensor(s) have rows that are not a whole number of their type's blocks and took llama.cpp's "
               "fallback type (q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, else f16)\n", r->fallbacks);
}

int cmd_export_gguf(const export_opts *a)
{
    bool lora = !strcmp(a->format, "gguf-lora");
    gguf_export_opts o = {.adapter_dir = a->adapter, .pre = lora ? NULL : a->pre};
    const char *type = lora ? "f32 adapter" : a->type;
    merge_source src = MERGE_DEQUANTIZED;
    int rc = a->model ? DS_OK : cli_fail(&EXPORT_SPEC, "--format %s: missing --model DIR", a->format);
    if (!rc && lora && !a->adapter) rc = cli_fail(&EXPORT_SPEC, "--format gguf-lora: missing --adapter DIR");
    if (!rc && !lora) rc = gguf_export_type_parse(type, &o.type);
    if (!rc && !lora) rc = merge_source_parse(a->source, &src);
    if (!rc) rc = check_dir(a->model, "model");
    if (!rc && a->adapter) rc = check_dir(a->adapter, "adapter");
    if (!rc) rc = check_out(a->out, a->force);
    if (rc) return rc;
    o.merge_original = src == MERGE_ORIGINAL;
    gguf_export_report r;
    rc = lora ? gguf_export_lora(a->model, a->adapter, a->out, &r) : gguf_export_model(a->model, &o, a->out, &r);
    if (!rc) print_report(a->out, type, &r);
    return rc;
}
