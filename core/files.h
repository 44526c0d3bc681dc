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
 * (an existing DIR is replaced through ds_replace, so DIR always holds the old
 * folder or the new one, whole). `tmp` receives the path to write into.
 * ds_dir_begin first removes what killed runs left beside DIR (ds_clean_debris). */
int ds_dir_begin(const char *dir, char **tmp);
int ds_dir_commit(const char *tmp, const char *dir);
void ds_dir_abort(const char *tmp);

/* ---- never destroying what exists (files_replace.c) ----
 * An output that exists is refused unless the user asked to replace it; a
 * replaced output is swapped for the new one in one step, and removed only
 * after that; a removal renames first. A kill at any instant leaves the old
 * thing or the new one, complete, under the final name, and at most debris
 * under a temporary name ("NAME.tmp-PID", ".old-PID", ".del-PID"), which the
 * next run writing NAME removes. */

/* ds_check_output() : refuse an output path that exists unless `replace`.
 * @return DS_OK, or DS_EEXISTS "PATH: exists; pass FLAG to replace". */
int ds_check_output(const char *path, bool replace, const char *flag);
/* ds_replace() : put tmp (a file or folder, complete) at final. When final
 * exists the two names are swapped in one step (renameat2 RENAME_EXCHANGE)
 * and the old one, now under tmp's name, is removed afterwards; a file onto
 * a file is one rename(). @return DS_OK or DS_EIO (final unchanged). */
int ds_replace(const char *tmp, const char *final);
/* ds_remove_atomic() : remove a file or folder: renamed to "PATH.del-PID",
 * then removed, so a kill never leaves it half-removed under its name.
 * A missing PATH is DS_OK. @return DS_OK or DS_EIO. */
int ds_remove_atomic(const char *path);
/* ds_clean_debris() : remove PATH.tmp-N, PATH.old-N and PATH.del-N left by
 * processes N that no longer run. ds_clean_debris_in() : the same for every
 * such name in folder DIR (only for folders ds-ft owns: checkpoints/).
 * What cannot be removed stays. @return DS_OK or DS_ENOMEM. */
int ds_clean_debris(const char *path);
int ds_clean_debris_in(const char *dir);
/* ds_same_file() : whether two existing paths are the same file or folder. */
bool ds_same_file(const char *a, const char *b);

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
