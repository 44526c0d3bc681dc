/* data/pyjson.h - JSON text byte for byte as Python's json.dumps writes it
 * (ensure_ascii=True, floats as repr()), so that the files ds-ft writes for
 * other tools (config.json, bitsandbytes' quant_state) are the ones
 * transformers and bitsandbytes would have written.
 */
#ifndef DS_DATA_PYJSON_H
#define DS_DATA_PYJSON_H

#include <jansson.h>
#include <stddef.h>

/* Python's repr() of a float: the shortest digits that read back to x,
 * positional for exponents -4..15 ("0.0001", "6.0"), else "1e-06", "1e+16";
 * "NaN", "Infinity", "-Infinity". Returns the length written. */
int pyjson_repr_double(double x, char *buf, size_t n);

/* json.dumps(v) for indent < 0 (", " and ": " separators, one line), or
 * json.dumps(v, indent=indent) (one member per line, "," at line ends).
 * Objects keep their insertion order. malloc'd; NULL: out of memory
 * (message set, status DS_ENOMEM). */
char *pyjson_dumps(json_t *v, int indent);

#endif
