/* core/files_replace.c - replacing and removing outputs so that a kill at any
 * instant leaves either the old thing or the new one, complete, under the
 * final name (see files.h: ds_replace, ds_remove_atomic, ds_check_output). */
#define _GNU_SOURCE
#include "files.h"
#include "mem.h"
#include "status.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ds_check_output(const char *path, bool replace, const char *flag)
{
    struct stat st;
    if (lstat(path, &st) != 0 || replace) return DS_OK;
    return ds_fail(DS_EEXISTS, "%s: exists; pass %s to replace", path, flag);
}

bool ds_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Where rename(2) cannot swap two names in one step (a filesystem without
 * RENAME_EXCHANGE): move the old aside, the new in, and back on failure.
 * Between the two renames the final name is empty for an instant. */
static int replace_in_two_steps(const char *tmp, const char *final)
{
    char *old = ds_strdupf("%s.old-%d", final, (int)getpid());
    if (!old) return DS_ENOMEM;
    ds_remove_tree(old);
    int rc = DS_OK;
    if (rename(final, old) != 0) {
        rc = ds_fail(DS_EIO, "%s: cannot replace: %s", final, strerror(errno));
    } else if (rename(tmp, final) != 0) {
        rc = ds_fail(DS_EIO, "%s: rename failed: %s", final, strerror(errno));
        rename(old, final);
    } else {
        ds_remove_tree(old);
    }
    free(old);
    return rc;
}

int ds_replace(const char *tmp, const char *final)
{
    struct stat st;
    bool exists = lstat(final, &st) == 0;
    /* A file onto a file (or onto nothing): rename() is atomic and replaces. */
    if (!exists || (!S_ISDIR(st.st_mode) && lstat(tmp, &st) == 0 && !S_ISDIR(st.st_mode))) {
        if (rename(tmp, final) == 0) return DS_OK;
        return ds_fail(DS_EIO, "%s: rename failed: %s", final, strerror(errno));
    }
    /* A folder (or a file onto a folder): swap the two names in one step; the
     * old one, now under the temporary name, is removed once the new one is in. */
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) == 0) {
        ds_remove_tree(tmp);
        return DS_OK;
    }
    if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) return replace_in_two_steps(tmp, final);
    return ds_fail(DS_EIO, "%s: cannot replace: %s", final, strerror(errno));
}

int ds_remove_atomic(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return DS_OK;
    char *gone = ds_strdupf("%s.del-%d", path, (int)getpid());
    if (!gone) return DS_ENOMEM;
    ds_remove_tree(gone);
    int rc = DS_OK;
    if (rename(path, gone) != 0) rc = ds_fail(DS_EIO, "%s: cannot remove: %s", path, strerror(errno));
    else rc = ds_remove_tree(gone);
    free(gone);
    return rc;
}

/* Whether `name` is `base` followed by ".tmp-N", ".old-N" or ".del-N" (base
 * NULL: any name so followed); *pid gets N. */
static bool debris_name(const char *name, const char *base, long *pid)
{
    static const char *const tags[] = {".tmp-", ".old-", ".del-"};
    size_t nb = base ? strlen(base) : 0;
    if (base && (strncmp(name, base, nb) || !name[nb])) return false;
    for (int i = 0; i < 3; i++) {
        const char *at = base ? name + nb : strstr(name, tags[i]);
        if (!at || strncmp(at, tags[i], 5)) continue;
        const char *digits = at + 5;
        char *end;
        if (*digits < '0' || *digits > '9') continue;
        *pid = strtol(digits, &end, 10);
        if (*end == '\0' && end - digits < 10) return true;
    }
    return false;
}

/* A process id that no process has now (kill(pid, 0) answers ESRCH). */
static bool pid_gone(long pid) { return pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH; }

/* Remove the debris in `dir` named after `base` (or any, base NULL). Debris
 * that cannot be removed stays (the next run tries again); only running out
 * of memory is an error. */
static int clean_dir(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d) return DS_OK;
    int rc = DS_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        long pid;
        if (!debris_name(e->d_name, base, &pid) || !pid_gone(pid)) continue;
        char *p = ds_path_join(dir, e->d_name);
        if (p) ds_remove_tree(p);
        else rc = DS_ENOMEM;
        free(p);
    }
    closedir(d);
    return rc;
}

int ds_clean_debris(const char *path)
{
    char *copy = ds_strdup(path);
    if (!copy) return DS_ENOMEM;
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') copy[--n] = '\0';
    char *slash = strrchr(copy, '/');
    const char *dir = ".", *base = copy;
    if (slash == copy) {
        dir = "/";
        base = copy + 1;
    } else if (slash) {
        *slash = '\0';
        dir = copy;
        base = slash + 1;
    }
    int rc = *base ? clean_dir(dir, base) : DS_OK;
    free(copy);
    return rc;
}

int ds_clean_debris_in(const char *dir) { return clean_dir(dir, NULL); }
