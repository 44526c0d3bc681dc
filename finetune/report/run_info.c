/* finetune/report/run_info.c - run_info.json: what the trainer records about
 * a run that its other files do not say (see report.h), and report_update(),
 * which writes it and the run's report.html. */
#include "report_internal.h"

#include "core/clock.h"
#include "core/files.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "core/status.h"
#include "data/json_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifndef DSFT_VERSION
#define DSFT_VERSION "dev"
#endif

#define RUN_INFO_FORMAT "ds-ft run_info 1"

struct report_info {
    char *output_dir;
    json_t *doc;
    double mark;    /* ds_now() at the last phase boundary */
};


static void utc_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

/* "Intel(R) Xeon(R) ..." from /proc/cpuinfo, else the architecture. */
static char *cpu_model(const char *arch)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512], *found = NULL;
    while (f && !found && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0 && strncmp(line, "Model", 5) != 0) continue;
        char *v = strchr(line, ':');
        if (!v) continue;
        v += 1 + strspn(v + 1, " \t");
        v[strcspn(v, "\n")] = '\0';
        if (*v) found = ds_strdup(v);
    }
    if (f) fclose(f);
    return found ? found : ds_strdup(arch);
}

static json_t *machine(void)
{
    struct utsname u;
    if (uname(&u) != 0) memset(&u, 0, sizeof u);
    char *cpu = cpu_model(u.machine);
    char os[512];
    snprintf(os, sizeof os, "%s %s %s", u.sysname, u.release, u.machine);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    json_t *m = json_pack("{s:s, s:s, s:s?, s:I, s:I}", "host", u.nodename, "os", os, "cpu", cpu, "cores",
                          (json_int_t)sysconf(_SC_NPROCESSORS_ONLN),
                          "memory_bytes", (json_int_t)(pages > 0 && page > 0 ? (long long)pages * page : 0));
    free(cpu);
    return m;
}

int report_info_open(const char *output_dir, bool resume, report_info **out)
{
    *out = NULL;
    report_info *ri = ds_calloc(1, sizeof *ri, "run_info");
    if (!ri || !(ri->output_dir = ds_strdup(output_dir))) {
        free(ri);
        return DS_ENOMEM;
    }
    char now[32];
    utc_now(now, sizeof now);
#ifdef DS_HAVE_CUDA
    const char *build = "cpu+cuda";
#else
    const char *build = "cpu only";
#endif
    ri->doc = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:s, s:i, s:o, s:n, s:n, s:[], s:{}}", "format",
                        RUN_INFO_FORMAT, "state", "running", "ds_ft", "version", DSFT_VERSION, "build", build,
                        "started", now, "updated", now, "sessions", 1, "machine", machine(), "device", "model",
                        "data", "phases");
    if (!ri->doc) {
        report_info_free(ri);
        return ds_oom(0, "run_info");
    }
    if (resume) {   /* carry the earlier sessions' start and phase times */
        char *path = ds_path_join(output_dir, "run_info.json");
        json_t *old = NULL;
        if (ds_exists(path) && json_file_load(path, 0, &old) == DS_OK && json_is_object(old)) {
            json_t *started = json_object_get(old, "started"), *phases = json_object_get(old, "phases");
            json_t *sessions = json_object_get(old, "sessions");
            if (json_is_string(started)) json_object_set(ri->doc, "started", started);
            if (json_is_object(phases)) json_object_set(ri->doc, "phases", phases);
            if (json_is_integer(sessions))
                json_object_set_new(ri->doc, "sessions", json_integer(json_integer_value(sessions) + 1));
        }
        ds_clear_error();   /* an unreadable earlier record only loses its times */
        json_decref(old);
        free(path);
    }
    ri->mark = ds_now();
    *out = ri;
    return DS_OK;
}

void report_info_phase(report_info *ri, const char *name)
{
    if (!ri) return;
    double now = ds_now();
    json_t *phases = json_object_get(ri->doc, "phases");
    json_object_set_new(phases, name, json_real(json_number_value(json_object_get(phases, name)) + (now - ri->mark)));
    ri->mark = now;
}

void report_info_device(report_info *ri, const char *backend, const char *name)
{
    if (ri) json_object_set_new(ri->doc, "device", json_pack("{s:s, s:s}", "backend", backend, "name", name));
}

int report_info_model(report_info *ri, const char *model_dir, const char *tokenizer_dir)
{
    if (!ri) return DS_OK;
    json_t *fp = NULL;
    int rc = fingerprint_dir(model_dir, &fp);
    if (!rc) json_object_set_new(ri->doc, "model", fp);
    if (!rc && tokenizer_dir && strcmp(tokenizer_dir, model_dir) != 0) {
        rc = fingerprint_dir(tokenizer_dir, &fp);
        if (!rc) json_object_set_new(ri->doc, "tokenizer", fp);
    }
    return rc;
}

int report_info_data(report_info *ri, const char *role, const char *path)
{
    if (!ri) return DS_OK;
    json_t *f = NULL;
    int rc = fingerprint_file(path, &f);
    if (!rc) {
        json_object_set_new(f, "role", json_string(role));
        json_array_append_new(json_object_get(ri->doc, "data"), f);
    }
    return rc;
}

void report_info_clean(report_info *ri, const char *json)
{
    json_t *v = ri && json ? json_loads(json, 0, NULL) : NULL;
    if (json_is_object(v)) json_object_set(ri->doc, "clean", v);
    json_decref(v);
}

int report_update(report_info *ri, const char *state)
{
    char now[32];
    utc_now(now, sizeof now);
    json_object_set_new(ri->doc, "state", json_string(state));
    json_object_set_new(ri->doc, "updated", json_string(now));
    char *text = json_dumps(ri->doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    char *path = ds_path_join(ri->output_dir, "run_info.json");
    char *html = ds_path_join(ri->output_dir, "report.html");
    int rc = text && path && html ? ds_write_file(path, text, strlen(text)) : ds_oom(0, "run_info.json");
    const char *dir = ri->output_dir;
    if (!rc) rc = report_write_html(&dir, 1, html);
    free(text);
    free(path);
    free(html);
    return rc;
}

void report_info_free(report_info *ri)
{
    if (!ri) return;
    json_decref(ri->doc);
    free(ri->output_dir);
    free(ri);
}
