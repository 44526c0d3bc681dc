/* data/model_folder.c - model folders derived from another (quantized, merged):
 * the side files that travel with the weights, and config.json as transformers
 * writes it. */
#include "model_config.h"
#include "json_util.h"
#include "pyjson.h"

#include "core/files.h"
#include "core/status.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int model_copy_side_files(const char *src_dir, const char *dst_dir)
{
    static const char *const SIDE_FILES[] = {
        "tokenizer.json",    "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
        "added_tokens.json", "chat_template.jinja",   "generation_config.json",
    };
    for (size_t i = 0; i < sizeof SIDE_FILES / sizeof *SIDE_FILES; i++) {
        char *from = ds_path_join(src_dir, SIDE_FILES[i]), *to = ds_path_join(dst_dir, SIDE_FILES[i]);
        int rc = !from || !to ? DS_ENOMEM : ds_exists(from) ? ds_copy_file(from, to) : DS_OK;
        free(from);
        free(to);
        if (rc) return rc;
    }
    return DS_OK;
}

int model_config_rewrite_json(const json_t *config, const char *dst_dir, json_t *quantization)
{
    static const char QKEY[] = "quantization_config";
    if (!json_is_object(config)) return ds_fail(DS_EINTERNAL, "model_config_rewrite: config.json is not an object");
    const char *key, *prev = NULL;
    json_t *v;
    bool sorted = true;
    json_object_foreach((json_t *)config, key, v) {
        if (prev && strcmp(prev, key) > 0) sorted = false;
        prev = key;
    }
    json_alloc_reset();   /* a member that could not be allocated makes the rewrite fail */
    json_t *out = json_object(), *bf16 = json_string("bfloat16");
    json_t *q = quantization;   /* still to be placed */
    bool has_dtype = false, has_torch_dtype = false;
    json_object_foreach((json_t *)config, key, v) {
        if (!strcmp(key, QKEY)) {
            if (q) json_object_set(out, QKEY, q);
            q = NULL;
            continue;
        }
        if (sorted && q && strcmp(key, QKEY) > 0) {
            json_object_set(out, QKEY, q);
            q = NULL;
        }
        bool dtype = !strcmp(key, "dtype"), torch_dtype = !strcmp(key, "torch_dtype");
        has_dtype |= dtype;
        has_torch_dtype |= torch_dtype;
        /* merged weights are written in bf16 */
        json_object_set(out, key, !quantization && (dtype || torch_dtype) ? bf16 : v);
    }
    if (q) json_object_set(out, QKEY, q);
    if (!quantization && !has_dtype && !has_torch_dtype) json_object_set(out, "dtype", bf16);
    json_decref(bf16);
    char *body = json_alloc_failed() ? NULL : pyjson_dumps(out, 2);
    json_decref(out);
    if (!body) return ds_fail_context(DS_ENOMEM, "%s: writing config.json: ", dst_dir);
    size_t len = strlen(body);
    body[len] = '\n';   /* the file ends with a newline: it takes the NUL's place (written by length) */
    char *dst = ds_path_join(dst_dir, "config.json");
    int rc = dst ? ds_write_file(dst, body, len + 1) : DS_ENOMEM;
    free(dst);
    free(body);
    return rc;
}

int model_config_rewrite(const char *src_dir, const char *dst_dir, json_t *quantization)
{
    char *path = ds_path_join(src_dir, "config.json");
    json_t *config = NULL;
    int rc = path ? json_file_load(path, 0, &config) : DS_ENOMEM;
    if (!rc && !json_is_object(config)) rc = ds_fail(DS_EDATA, "%s: not a JSON object", path);
    if (!rc) rc = model_config_rewrite_json(config, dst_dir, quantization);
    json_decref(config);
    free(path);
    return rc;
}

