/* finetune/cmd_inspect_gguf.c - `ds-ft inspect FILE.gguf`: the key/values
 * (arrays shortened) and every tensor with its ggml type and shape (ne,
 * innermost first, as llama.cpp prints them). */
#include "commands.h"
#include "core/units.h"

#include "core/status.h"
#include "data/gguf/gguf.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

bool is_gguf_file(const char *path)
{
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    bool yes = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    fclose(f);
    return yes;
}

int inspect_gguf(const char *path)
{
    gguf_file *f;
    int rc = gguf_open(path, &f);
    if (rc) return rc;
    printf("GGUF file             %s\n", path);
    printf("version               %u\n", gguf_version(f));
    printf("alignment             %zu\n", gguf_alignment(f));
    printf("key/values            %d\n", gguf_kv_count(f));
    char buf[512];
    for (int i = 0; i < gguf_kv_count(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        printf("  %-44s %-7s %s\n", kv->key, gguf_vtype_name(kv->type), gguf_kv_format(kv, buf, sizeof buf));
    }
    printf("tensors               %d\n", gguf_tensor_count(f));
    size_t total = 0;
    for (int i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char shape[96];
        int k = snprintf(shape, sizeof shape, "{");
        for (int d = 0; d < t->ndim; d++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%" PRId64, d ? ", " : "", t->ne[d]);
        snprintf(shape + k, sizeof shape - (size_t)k, "}");
        printf("  %-44s %-5s %-18s %zu bytes\n", t->name, ggml_type_get(t->type)->name, shape, t->nbytes);
        total += t->nbytes;
    }
    char size[32];
    printf("%-22s %s\n", "data", ds_bytes_str((double)total, size, sizeof size));
    gguf_close(f);
    return DS_OK;
}
