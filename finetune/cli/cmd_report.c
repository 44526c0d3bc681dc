/* finetune/cli/cmd_report.c - `ds-ft report RUN_DIR [RUN_DIR...] [--out FILE]
 * [--force]`: write the HTML report of a run folder (RUN_DIR/report.html by
 * default, the page a run writes itself) or compare several runs on the same
 * axes (./report.html by default). */
#include "commands.h"
#include "finetune/report/report.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An existing file is replaced only when it is a page ds-ft wrote, or with --force. */
static int check_output(const char *path, bool force)
{
    if (force || !ds_exists(path)) return DS_OK;
    char head[4096] = "";
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(head, 1, sizeof head - 1, f) : 0;
    if (f) fclose(f);
    head[got] = '\0';
    if (strstr(head, "<h1>ds-ft training report</h1>")) return DS_OK;
    return ds_fail(DS_EEXISTS, "report: %s exists and is not a ds-ft report (--force replaces it)", path);
}

typedef struct {
    const char *out;
    bool force;
} report_opts;

static const cli_opt REPORT_OPTS[] = {
    {"--out", ARG_TEXT, offsetof(report_opts, out), "FILE", "RUN_DIR/report.html for one run, ./report.html for several",
     0, 0, NULL, false, "the page to write"},
    {"--force", ARG_FLAG, offsetof(report_opts, force), NULL, "off", 0, 0, NULL, false,
     "replace an existing --out even when it is not a page ds-ft wrote"},
    CLI_END,
};

const cli_spec REPORT_SPEC = {"report", "RUN_DIR [RUN_DIR...]", 1, -1, NULL,
                              "the HTML report of a run (RUN_DIR/report.html), or several runs compared (--out, default "
                              "./report.html)",
                              REPORT_OPTS, NULL};

int cmd_report(int argc, char **argv)
{
    report_opts o;
    cli_parsed p;
    int rc = cli_parse(&REPORT_SPEC, argc, argv, &o, &p);
    const char **dirs = (const char **)p.args;
    int n = p.nargs;
    char *path = NULL;
    if (!rc) path = o.out ? ds_strdup(o.out) : n == 1 ? ds_path_join(dirs[0], "report.html") : ds_strdup("report.html");
    if (!rc && !path) rc = DS_ENOMEM;
    if (!rc) rc = check_output(path, o.force);
    if (!rc) rc = report_write_html(dirs, n, path);
    if (!rc) fprintf(stderr, "report: %s (%d run%s)\n", path, n, n == 1 ? "" : "s");
    free(path);
    cli_parsed_free(&p);
    return rc;
}
