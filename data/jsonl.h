/* data/jsonl.h - the record reader: JSON objects out of a dataset file.
 *
 * A file is JSONL (one object per line; blank lines skipped) or JSON (one
 * top-level array of objects), told apart by its first non-blank byte ('['
 * = array). Either may be zstd-compressed (recognised by the zstd magic; a
 * .zst name without it is an error). Both are read as a stream: only the
 * record being parsed is held in memory, at most max_record bytes of it, so
 * a file of any size loads in bounded memory.
 *
 * Every record comes with its line number (for an array element, the line
 * where the element starts). Errors are DS_EDATA with "name:line: ...".
 * After a bad record, jsonl_can_continue() says whether the reader can go
 * on to the next one (a bad line of JSONL, a bad element of an array) or
 * the file is unusable from there (truncated zstd, a broken array).
 */
#ifndef DS_DATA_JSONL_H
#define DS_DATA_JSONL_H

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>

typedef struct jsonl_reader jsonl_reader;

#define JSONL_MAX_RECORD_DEFAULT ((size_t)64 << 20)   /* 64 MiB */

/* Open a file. Missing file: DS_ENOINPUT. max_record 0 = the default. */
int jsonl_open(const char *path, size_t max_record, jsonl_reader **out);
/* Read from memory (tests, fuzzing); `name` names the data in messages.
 * The bytes must outlive the reader. */
int jsonl_open_mem(const void *data, size_t len, const char *name, size_t max_record, jsonl_reader **out);
void jsonl_close(jsonl_reader *r);

/* The next record: *obj (an object; the caller json_decref()s it) and its
 * line. At the end DS_OK with *obj = NULL. */
int jsonl_next(jsonl_reader *r, json_t **obj, int *line);
/* After a failed jsonl_next: whether the next call reads the next record. */
bool jsonl_can_continue(const jsonl_reader *r);
/* The file name used in messages. */
const char *jsonl_name(const jsonl_reader *r);

/* "an object", "a string", ...: a JSON value's kind, for messages. */
const char *jsonl_kind(const json_t *j);

#endif
