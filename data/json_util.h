/* data/json_util.h - reading the JSON files of a model folder (config.json,
 * tokenizer.json, tokenizer_config.json, a safetensors index, ...) with one
 * message format, and the optional members they carry.
 *
 * A malformed file is DS_EDATA "NAME:LINE:COLUMN: invalid JSON: what jansson
 * says"; a member of the wrong type is DS_EDATA "WHERE: \"KEY\" must be ...",
 * where WHERE is the caller's label ("config.json", "tokenizer.json:
 * normalizer", ...).
 */
#ifndef DS_DATA_JSON_UTIL_H
#define DS_DATA_JSON_UTIL_H

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>

/* Parse text[0..len) with jansson's `flags`; `name` names it in messages. */
int json_text_load(const char *text, size_t len, const char *name, size_t flags, json_t **root);
/* Read and parse a file: missing DS_ENOINPUT, unreadable DS_EIO, malformed
 * DS_EDATA. The caller json_decref()s *root. */
int json_file_load(const char *path, size_t flags, json_t **root);

/* Optional members of obj: absent or null gives dflt; a value of another type
 * is DS_EDATA. Strings point into obj (*out may be NULL when dflt is). */
int json_get_bool(const json_t *obj, const char *key, bool dflt, const char *where, bool *out);
int json_get_str(const json_t *obj, const char *key, const char *dflt, const char *where, const char **out);
int json_get_int(const json_t *obj, const char *key, long long dflt, const char *where, long long *out);
int json_get_num(const json_t *obj, const char *key, double dflt, const char *where, double *out);   /* int or real */

#endif
