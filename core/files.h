/* core/files.h - reading, mapping and atomically writing files.
 *
 * Every writer in ds-ft goes through ds_out: data goes to "PATH.tmp-PID" and
 * is renamed onto PATH only by ds_out_commit(), so an interrupted run never
 * leaves a half-written file under its final name. Directories (checkpoints,
 * merged models) are built the same way with ds_dir_begin/ds_dir_commit.
 */
#ifndef DS_CORE_FILES_H
#define DS_CORE_FILES_H

#include <stddef.h>
#include <stdio.h>
#include <stdbool.h>

/* The status and message for a failed open/stat of `path` (from errno):
 * DS_ENOINPUT "PATH: cannot WHAT: No such file or directory" when it does
 * not exist, else DS_EIO. */
int ds_open_error(const char *path, const char *what);

/* Read a whole file into a malloc'd, NUL-terminated buffer.
 * Missing file -> DS_ENOINPUT, out of memory -> DS_ENOMEM, other failures -> DS_EIO. */
int ds_read_file(const char *path, char **data, size_t *len);

/* A read-only memory map of a whole file. */
typedef struct {
    const unsigned char *data;
    size_t size;
} ds_map;
int ds_map_open(const char *path, ds_map *m);
void ds_map_close(ds_map *m);

/* An output file written under a temporary name. */
typedef struct {
    FILE *f;
    char *path;     /* final name */
    char *tmp;      /* temporary name */
    int err;        /* sticky: first write error */
} ds_out;
int ds_out_open(ds_out *o, const char *path);
int ds_out_write(ds_out *o, const void *data, size_t len);
int ds_out_printf(ds_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ds_out_commit(ds_out *o);   /* flush, fsync, rename onto the final name */
void ds_out_abort(ds_out *o);   /* remove the temporary file */

/* Write a whole buffer atomically. */
int ds_write_file(const char *path, const void *data, size_t len);

/* A directory built under "DIR.tmp-PID" and renamed onto DIR at commit
 * (an existing DIR is replaced). `tmp` receives the path to write into. */
int ds_dir_begin(const char *dir, char **tmp);
int ds_dir_commit(const char *tmp, const char *dir);
void ds_dir_abort(const char *tmp);

int ds_mkdirs(const char *path);            /* mkdir -p */
int ds_remove_tree(const char *path);       /* rm -rf */
bool ds_exists(const char *path);
bool ds_is_dir(const char *path);
int ds_copy_file(const char *src, const char *dst);   /* atomic at dst */

/* malloc'd "a/b"; joins with exactly one slash. NULL: out of memory (message
 * set, status DS_ENOMEM), as for ds_strdupf. */
char *ds_path_join(const char *a, const char *b);
/* malloc'd printf. NULL: out of memory (message set, status DS_ENOMEM). */
char *ds_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
