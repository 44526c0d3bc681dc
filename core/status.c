#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[4096];

int ds_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return code;
}

int ds_fail_context(int code, const char *fmt, ...)
{
    char prefix[1024], old[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    size_t np = strlen(prefix);
    if (np >= sizeof g_msg) np = sizeof g_msg - 1;
    memcpy(g_msg, prefix, np);
    size_t rest = sizeof g_msg - 1 - np, no = strlen(old);
    if (no > rest) no = rest;
    memcpy(g_msg + np, old, no);
    g_msg[np + no] = '\0';
    return code;
}

const char *ds_errmsg(void) { return g_msg; }

void ds_clear_error(void) { g_msg[0] = '\0'; }

const char *ds_status_name(int code)
{
    switch (code) {
    case DS_OK: return "ok";
    case DS_ETRAIN: return "training failed";
    case DS_EUSAGE: return "usage error";
    case DS_EDATA: return "bad data";
    case DS_ENOINPUT: return "missing input";
    case DS_EINTERNAL: return "internal error";
    case DS_EEXIST: return "output exists";
    case DS_EIO: return "I/O error";
    case DS_ECONFIG: return "bad recipe";
    case DS_EINTERRUPTED: return "interrupted";
    default: return "error";
    }
}
