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

int cmd_report(int argc, char **argv)
{
    ds_args a;
    args_init(&a, argc, argv);
    const char *out = arg_value(&a, "--out");
    bool force = arg_flag(&a, "--force");
    const char **dirs = ds_calloc((size_t)a.argc + 1, sizeof *dirs, "arguments");
    if (!dirs) return DS_ENOMEM;
    int n = 0;
    for (int i = 0; i < a.argc; i++)
        if (!a.used[i] && argv[i][0] != '-') {
            a.used[i] = 1;
            dirs[n++] = argv[i];
        }
    int rc = arg_check_all(&a, "report");
    if (!rc && n == 0) rc = ds_fail(DS_EUSAGE, "report: no run folder given (usage: ds-ft report %s)",
                                    ds_find_command("report")->usage);
    char *path = NULL;
    if (!rc) path = out ? ds_strdup(out) : n == 1 ? ds_path_join(dirs[0], "report.html") : ds_strdup("report.html");
    if (!rc && !path) rc = DS_ENOMEM;
    if (!rc) rc = check_output(path, force);
    if (!rc) rc = report_write_html(dirs, n, path);
    if (!rc) fprintf(stderr, "report: %s (%d run%s)\n", path, n, n == 1 ? "" : "s");
    free(path);
    free(dirs);
    return rc;
}
