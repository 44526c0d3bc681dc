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

/* jansson allocates through core/mem.h (json_set_alloc_funcs, set when the
 * program starts), so running out of memory inside jansson is an allocation
 * failure with its message. jansson itself does not always notice one (a
 * lost byte of a number while lexing, a member that could not be added), so
 * every allocation made for it is also recorded on the thread, and whatever
 * was parsed or built while one failed is thrown away. Within a parse the
 * first failure fails every later allocation, which stops jansson's lexer
 * before it reads back a damaged token; one case remains where jansson
 * (2.14) asserts instead: memory running out just as it grows its token
 * buffer past the longest token so far, inside a number whose kept part
 * then ends in its exponent ("1.234567890123e" of "1.234567890123e-05"). */

/* json_parse() : json_loadb(text, len, flags, err), with out of memory
 * anywhere inside jansson reported. @return DS_OK (*root set), DS_ENOMEM
 * (message set), or DS_EDATA with *err describing the malformed text and no
 * message set yet: the caller words it, naming its file. */
int json_parse(const char *text, size_t len, size_t flags, json_t **root, json_error_t *err);
/* json_parse_fast() : the same result as json_parse() for what it accepts,
 * quicker (json_fast.c); DS_EDATA, with no message, where it declines: then
 * json_parse() gives the verdict and the message. DS_ENOMEM when out of memory. */
int json_parse_fast(const char *text, size_t len, json_t **root);

/* json_alloc_reset(), json_alloc_failed() : whether an allocation made for
 * jansson failed on this thread since the reset. For code that builds JSON
 * (json_object(), json_object_set_new(), json_dumps(), ...):
 *
 *     json_alloc_reset();
 *     json_t *o = json_object();
 *     json_object_set_new(o, "r", json_integer(8));   // NULLs are safe: they make it fail
 *     char *text = json_dumps(o, 0);
 *     json_decref(o);
 *     if (json_alloc_failed()) { free(text); return DS_ENOMEM; }   // the message is set
 */
void json_alloc_reset(void);
bool json_alloc_failed(void);

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
