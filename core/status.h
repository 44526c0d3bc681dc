/* core/status.h - status codes and error messages shared by every library.
 *
 * Library code never exits: a function that can fail returns an int status
 * (DS_OK = 0, otherwise one of the codes below) and, on failure, leaves a
 * message in a thread-local buffer with ds_fail(). Only main() turns the
 * status into a process exit code, and the codes are the exit codes that
 * SPEC.md documents, so that mapping is the identity.
 */
#ifndef DS_CORE_STATUS_H
#define DS_CORE_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
    DS_OK = 0,
    DS_ETRAIN = 1,       /* training failed: NaN/divergence, device error, out of memory */
    DS_EUSAGE = 64,      /* bad command line */
    DS_EDATA = 65,       /* bad data (file:line) */
    DS_ENOINPUT = 66,    /* missing input file */
    DS_EINTERNAL = 70,   /* internal error (a bug) */
    DS_EEXIST = 73,      /* the output exists (pass --force to replace it) */
    DS_EIO = 74,         /* I/O error */
    DS_ECONFIG = 78,     /* bad recipe or config (file:line:key) */
    DS_EINTERRUPTED = 130,
};

/* Record a message for `code` and return `code`, so callers can write
 * `return ds_fail(DS_EDATA, "%s:%d: ...", file, line);`. */
int ds_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepend context ("loading model: ") to the current message; returns code. */
int ds_fail_context(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The message of the last failure on this thread ("" if none). */
const char *ds_errmsg(void);
void ds_clear_error(void);

/* Short name of a status code ("bad data", "I/O error", ...). */
const char *ds_status_name(int code);

#ifdef __cplusplus
}
#endif

#endif
