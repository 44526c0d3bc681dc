/* finetune/cli/cmd_inspect.c - `ds-ft inspect PATH`: what a model folder,
 * adapter folder, training checkpoint or safetensors file holds. */
#include "commands.h"
#include "finetune/model/model.h"

#include "adapters/lora.h"
#include "core/files.h"
#include "core/status.h"
#include "core/units.h"
#include "data/hub/hub.h"
#include "data/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_bytes(const char *label, double bytes)
{
    char buf[32];
    printf("%-22s %s\n", label, ds_bytes_str(bytes, buf, sizeof buf));
}

static int inspect_file(const char *path)
{
    st_file *f;
    int rc = st_file_open(path, &f);
    if (rc) return rc;
    size_t total = 0;
    printf("safetensors file      %s\n", path);
    printf("tensors               %d\n", st_file_count(f));
    for (int i = 0; i < st_file_count(f); i++) {
        const st_tensor *t = st_file_at(f, i);
        char shape[128];
        printf("  %-64s %-5s %-18s %zu bytes\n", t->name, st_dtype_name(t->dtype), st_shape_str(t, shape, sizeof shape),
               t->nbytes);
        total += t->nbytes;
    }
    print_bytes("data", (double)total);
    const char *fmt = st_file_meta(f, "format");
    if (fmt) printf("metadata format       %s\n", fmt);
    st_file_close(f);
    return DS_OK;
}

static int inspect_model(const char *dir)
{
    llama_model *m;
    int rc = model_load(dir, NULL, &m);
    if (rc) return rc;
    const model_config *c = &m->cfg;
    long long params = model_config_params(c);
    printf("model folder          %s\n", dir);
    printf("architecture          %s\n", c->architecture);
    printf("layers                %d\n", c->num_layers);
    printf("hidden / intermediate %d / %d\n", c->hidden_size, c->intermediate_size);
    printf("heads / kv heads      %d / %d (head_dim %d)\n", c->num_heads, c->num_kv_heads, c->head_dim);
    printf("vocabulary            %d\n", c->vocab_size);
    printf("rope                  theta %g%s", c->rope_theta, c->rope_factor != 1.0 ? "" : "\n");
    if (c->rope_factor != 1.0) printf(", linear scaling x%g\n", c->rope_factor);
    printf("tied embeddings       %s\n", c->tie_word_embeddings ? "yes" : "no");
    printf("dtype                 %s\n", *c->dtype ? c->dtype : "(not stated)");
    printf("weights               %s\n", m->prequantized ? "NF4 4-bit (bitsandbytes checkpoint)" : "16-bit");
    printf("parameters            %lld (%.2f B)\n", params, params / 1e9);
    size_t file_bytes = 0;
    for (int i = 0; i < st_set_count(m->st); i++) file_bytes += st_set_at(m->st, i)->nbytes;
    print_bytes("file data", (double)file_bytes);
    size_t resident = model_resident_bytes(m);
    print_bytes("resident weights", (double)resident);
    printf("bytes per parameter   %.3f\n", (double)resident / (double)params);
    printf("files                 %d safetensors\n", st_set_nfiles(m->st));
    printf("tensors               %d\n", st_set_count(m->st));
    for (int i = 0; i < st_set_count(m->st); i++) {
        const st_tensor *t = st_set_at(m->st, i);
        char shape[128];
        printf("  %-64s %-5s %s\n", t->name, st_dtype_name(t->dtype), st_shape_str(t, shape, sizeof shape));
    }
    model_free(m);
    return DS_OK;
}

static int inspect_adapter(const char *dir)
{
    /* Read the config without a model: shapes come from the tensors. */
    char *st_path = ds_path_join(dir, "adapter_model.safetensors");
    char *cfg_path = ds_path_join(dir, "adapter_config.json");
    char *text = NULL;
    size_t len;
    int rc = ds_read_file(cfg_path, &text, &len);
    if (!rc) {
        printf("adapter folder        %s\n", dir);
        printf("adapter_config.json   %s\n", text);
        rc = inspect_file(st_path);
    }
    free(text);
    free(st_path);
    free(cfg_path);
    return rc;
}

static const cli_opt INSPECT_OPTS[] = {CLI_END};

const cli_spec INSPECT_SPEC = {"inspect", "PATH|ORG/NAME[@REV]", 1, 1, NULL,
                               "describe a model folder (or a Hugging Face model id in the local cache), adapter, "
                               "checkpoint, safetensors or GGUF file",
                               INSPECT_OPTS, NULL};

static int inspect_path(const char *path)
{
    if (!ds_is_dir(path)) return is_gguf_file(path) ? inspect_gguf(path) : inspect_file(path);
    char *probe = ds_path_join(path, "config.json");
    bool model = ds_exists(probe);
    free(probe);
    if (model) return inspect_model(path);
    probe = ds_path_join(path, "adapter_config.json");
    bool adapter = ds_exists(probe);
    free(probe);
    if (adapter) {
        char *state = ds_path_join(path, "trainer_state.json");
        if (ds_exists(state)) {
            char *text;
            size_t len;
            if (ds_read_file(state, &text, &len) == DS_OK) {
                printf("training checkpoint   %s\n%s\n", path, text);
                free(text);
            }
        }
        free(state);
        return inspect_adapter(path);
    }
    return ds_fail(DS_ENOINPUT, "%s: neither a model folder (config.json), an adapter (adapter_config.json) nor a "
                                "safetensors file", path);
}

int cmd_inspect(int argc, char **argv)
{
    cli_parsed p;
    int rc = cli_parse(&INSPECT_SPEC, argc, argv, NULL, &p);
    const char *path = rc ? NULL : p.args[0];
    char *dir = NULL;
    if (!rc && !ds_exists(path)) {   /* a Hugging Face model id in the local cache, or nothing */
        rc = hub_is_model_id(path) ? hub_resolve(path, "inspect", HUB_MODEL, &dir, NULL)
                                   : ds_fail(DS_ENOINPUT, "%s: no such file or folder", path);
        path = dir;
    }
    if (!rc) rc = inspect_path(path);
    free(dir);
    cli_parsed_free(&p);
    return rc;
}
