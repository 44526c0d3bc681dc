#define _GNU_SOURCE
#include "files.h"
#include "buf.h"
#include "mem.h"
#include "status.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int ds_open_error(const char *path, const char *what)
{
    int code = (errno == ENOENT || errno == ENOTDIR) ? DS_ENOINPUT : DS_EIO;
    return ds_fail(code, "%s: cannot %s: %s", path, what, strerror(errno));
}

int ds_read_file(const char *path, char **data, size_t *len)
{
    *data = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ds_open_error(path, "open");
    ds_buf b = {0};
    int rc;
    for (;;) {
        if ((rc = ds_buf_reserve(&b, (size_t)1 << 16))) break;
        size_t got = fread(b.p + b.len, 1, b.cap - b.len - 1, f);
        b.len += got;
        if (got == 0) break;
    }
    if (!rc && ferror(f)) rc = ds_fail(DS_EIO, "%s: read error", path);
    fclose(f);
    size_t n = b.len;
    if (!rc && !(*data = ds_buf_take(&b))) rc = DS_ENOMEM;
    if (rc) {
        ds_buf_free(&b);
        return rc == DS_ENOMEM ? ds_fail_context(rc, "reading %s: ", path) : rc;
    }
    if (len) *len = n;
    return DS_OK;
}

int ds_map_open(const char *path, ds_map *m)
{
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ds_open_error(path, "open");
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return ds_open_error(path, "stat"); }
    if (S_ISDIR(st.st_mode)) { close(fd); return ds_fail(DS_ENOINPUT, "%s: is a directory, expected a file", path); }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { close(fd); return ds_open_error(path, "map"); }
        m->data = p;
    }
    close(fd);
    return DS_OK;
}

void ds_map_close(ds_map *m)
{
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

int ds_out_open(ds_out *o, const char *path)
{
    memset(o, 0, sizeof *o);
    if (ds_clean_debris(path)) return DS_ENOMEM;
    o->path = ds_strdup(path);
    o->tmp = o->path ? ds_strdupf("%s.tmp-%d", path, (int)getpid()) : NULL;
    if (!o->tmp) {
        free(o->path);
        memset(o, 0, sizeof *o);
        return DS_ENOMEM;
    }
    o->f = fopen(o->tmp, "wb");
    if (!o->f) {
        int rc = ds_open_error(o->tmp, "create");
        if (rc == DS_ENOINPUT) rc = DS_EIO;   /* a missing output folder is an I/O error */
        free(o->path); free(o->tmp);
        memset(o, 0, sizeof *o);
        return rc;
    }
    return DS_OK;
}

int ds_out_write(ds_out *o, const void *data, size_t len)
{
    if (o->err) return o->err;
    if (len && fwrite(data, 1, len, o->f) != len)
        o->err = ds_fail(DS_EIO, "%s: write failed: %s", o->path, strerror(errno));
    return o->err;
}

int ds_out_printf(ds_out *o, const char *fmt, ...)
{
    if (o->err) return o->err;
    va_list ap;
    va_start(ap, fmt);
    if (vfprintf(o->f, fmt, ap) < 0)
        o->err = ds_fail(DS_EIO, "%s: write failed: %s", o->path, strerror(errno));
    va_end(ap);
    return o->err;
}

static void out_free(ds_out *o)
{
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
}

int ds_out_commit(ds_out *o)
{
    int rc = o->err;
    if (!rc && fflush(o->f) != 0) rc = ds_fail(DS_EIO, "%s: write failed: %s", o->path, strerror(errno));
    if (!rc && fsync(fileno(o->f)) != 0 && errno != EINVAL)
        rc = ds_fail(DS_EIO, "%s: fsync failed: %s", o->path, strerror(errno));
    if (fclose(o->f) != 0 && !rc) rc = ds_fail(DS_EIO, "%s: close failed: %s", o->path, strerror(errno));
    o->f = NULL;
    if (!rc) rc = ds_replace(o->tmp, o->path);
    if (rc) unlink(o->tmp);
    out_free(o);
    return rc;
}

void ds_out_abort(ds_out *o)
{
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    out_free(o);
}

int ds_write_file(const char *path, const void *data, size_t len)
{
    ds_out o;
    int rc = ds_out_open(&o, path);
    if (rc) return rc;
    ds_out_write(&o, data, len);
    return ds_out_commit(&o);
}

int ds_dir_begin(const char *dir, char **tmp)
{
    *tmp = NULL;
    if (ds_clean_debris(dir)) return DS_ENOMEM;
    *tmp = ds_strdupf("%s.tmp-%d", dir, (int)getpid());
    if (!*tmp) return DS_ENOMEM;
    ds_remove_tree(*tmp);
    int rc = ds_mkdirs(*tmp);
    if (rc) { free(*tmp); *tmp = NULL; }
    return rc;
}

int ds_dir_commit(const char *tmp, const char *dir)
{
    return ds_replace(tmp, dir);
}

void ds_dir_abort(const char *tmp)
{
    if (tmp) ds_remove_tree(tmp);
}

int ds_mkdirs(const char *path)
{
    char *p = ds_strdup(path);
    if (!p) return DS_ENOMEM;
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == '\0') {
            char c = p[i];
            p[i] = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                int rc = ds_fail(DS_EIO, "%s: cannot create directory: %s", p, strerror(errno));
                free(p);
                return rc;
            }
            p[i] = c;
        }
    }
    free(p);
    return ds_is_dir(path) ? DS_OK : ds_fail(DS_EIO, "%s: exists and is not a directory", path);
}

int ds_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return DS_OK;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            int rc = DS_OK;
            while (!rc && (e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char *sub = ds_path_join(path, e->d_name);
                if (!sub) rc = DS_ENOMEM;
                else ds_remove_tree(sub);
                free(sub);
            }
            closedir(d);
            if (rc) return rc;
        }
        return rmdir(path) == 0 ? DS_OK : ds_fail(DS_EIO, "%s: cannot remove: %s", path, strerror(errno));
    }
    return unlink(path) == 0 ? DS_OK : ds_fail(DS_EIO, "%s: cannot remove: %s", path, strerror(errno));
}

bool ds_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

bool ds_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ds_copy_file(const char *src, const char *dst)
{
    char *data;
    size_t len;
    int rc = ds_read_file(src, &data, &len);
    if (rc) return rc;
    rc = ds_write_file(dst, data, len);
    free(data);
    return rc;
}

char *ds_path_join(const char *a, const char *b)
{
    size_t la = strlen(a);
    while (la > 1 && a[la - 1] == '/') la--;
    while (*b == '/') b++;
    return ds_strdupf("%.*s/%s", (int)la, a, b);
}

char *ds_strdupf(const char *fmt, ...)
{
    ds_buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    int rc = ds_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (rc) {
        ds_buf_free(&b);
        return NULL;
    }
    return ds_buf_take(&b);
}
