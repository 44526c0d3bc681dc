/* data/hub/hub.c - Hub model ids in the local Hugging Face cache (see hub.h).
 *
 * The lookup is huggingface_hub's try_to_load_from_cache: the repo folder
 * models--ORG--NAME, the ref file refs/REVISION (which may hold slashes:
 * refs/refs/pr/3) giving a commit, or the revision taken as the commit, then
 * snapshots/COMMIT. Everything that can go wrong on the way gets the same
 * message: what was asked, where it was looked for, and the download command.
 */
#include "hub.h"

#include "core/buf.h"
#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

/* Models whose main branch holds PyTorch .bin weights only, and the revision
 * where the Hub's safetensors conversion bot put safetensors: ds-ft reads
 * only safetensors, so for these the download command names that revision. */
static const struct {
    const char *id, *revision;
} SAFETENSORS_REVISION[] = {
    {"deepseek-ai/deepseek-llm-7b-base", "refs/pr/3"},
};

/* ---- names ---- */

static bool id_char(char c) { return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.'; }

/* A part of an id: [A-Za-z0-9._-]{1,96}, not starting with '.'. */
static bool id_part(const char *s, size_t n)
{
    if (n == 0 || n > 96 || s[0] == '.') return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char(s[i])) return false;
    return true;
}

/* A revision: a ref name ("main", "refs/pr/3", "v1.0") or a commit hash. */
static bool revision_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 100 || s[0] == '/' || s[n - 1] == '/' || strstr(s, "..") || strstr(s, "//")) return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char(s[i]) && s[i] != '/') return false;
    return true;
}

bool hub_is_model_id(const char *s)
{
    const char *slash = strchr(s, '/'), *at = strchr(s, '@');
    if (!slash || (at && at < slash)) return false;
    const char *end = at ? at : s + strlen(s);
    if (memchr(slash + 1, '/', (size_t)(end - slash - 1))) return false;
    if (!id_part(s, (size_t)(slash - s)) || !id_part(slash + 1, (size_t)(end - slash - 1))) return false;
    return !at || revision_ok(at + 1);
}

/* ---- the cache folder ---- */

/* "~/x" -> "$HOME/x"; anything else as it is. */
static char *expand_home(const char *p)
{
    const char *home = getenv("HOME");
    if (p[0] == '~' && (p[1] == '/' || !p[1]) && home) return ds_strdupf("%s%s", home, p + 1);
    return ds_strdup(p);
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

char *hub_cache_dir(const char **from)
{
    const char *v;
    char *dir;
    if ((v = env("HF_HUB_CACHE"))) *from = "HF_HUB_CACHE", dir = expand_home(v);
    else if ((v = env("HUGGINGFACE_HUB_CACHE"))) *from = "HUGGINGFACE_HUB_CACHE", dir = expand_home(v);
    else if ((v = env("HF_HOME"))) {
        *from = "HF_HOME";
        char *home = expand_home(v);
        dir = home ? ds_path_join(home, "hub") : NULL;
        free(home);
    } else if ((v = env("XDG_CACHE_HOME"))) {
        *from = "XDG_CACHE_HOME";
        dir = ds_strdupf("%s/huggingface/hub", v);
    } else {
        *from = "HOME";
        dir = expand_home("~/.cache/huggingface/hub");
    }
    if (!dir) ds_oom(0, "the Hub cache path");
    return dir;
}

/* ---- the message ---- */

/* What went wrong, for the one message every failure gets. */
typedef struct {
    const char *key, *name;       /* what pointed at it, as written */
    char id[200], revision[128];  /* the id without its revision; the revision ("" = none given) */
    bool is_id;
    char *cache, *repo;           /* the cache folder and the repo folder in it */
    const char *cache_from;
    const char *what;             /* "model" or "tokenizer" */
} lookup;

/* The download command for the lookup's id (with the revision ds-ft needs). */
static void put_download(ds_buf *b, const lookup *l)
{
    const char *rev = l->revision;
    bool known = false;
    for (size_t i = 0; i < sizeof SAFETENSORS_REVISION / sizeof *SAFETENSORS_REVISION && !*rev; i++)
        if (!strcmp(l->id, SAFETENSORS_REVISION[i].id)) rev = SAFETENSORS_REVISION[i].revision, known = true;
    const char *tools[] = {"huggingface-cli", "hf"};
    for (int t = 0; t < 2; t++) {
        ds_buf_printf(b, t ? "  (or: %s download %s" : "\n  download it with:  %s download %s", tools[t], l->id);
        if (*rev) ds_buf_printf(b, " --revision %s", rev);
        ds_buf_puts(b, " --include '*.json' '*.safetensors'");
        if (t) ds_buf_puts(b, ")");
    }
    if (known)
        ds_buf_printf(b, "\n  then %s %s%s%s@%s (its main branch holds PyTorch .bin weights only; revision %s has "
                         "the safetensors ds-ft reads)", l->key[0] == '-' ? "give" : "write", l->key,
                      l->key[0] == '-' ? " " : ": ", l->id, rev, rev);
}

/* DS_ENOINPUT: "KEY: NAME: PROBLEM", the places looked, the download command. */
static int not_found(const lookup *l, const char *problem, const char *cache_detail)
{
    ds_buf b = {0};
    ds_buf_printf(&b, "%s: %s: %s", l->key, l->name, problem);
    if (l->is_id) {
        ds_buf_printf(&b, "\n  looked for a folder:  %s (none)", l->name);
        ds_buf_printf(&b, "\n  looked in the Hugging Face cache:  %s (%s; the cache folder comes from %s%s)", l->repo,
                      cache_detail, strcmp(l->cache_from, "HOME") ? "$" : "",
                      strcmp(l->cache_from, "HOME") ? l->cache_from : "the default ~/.cache/huggingface/hub: set "
                                                                       "HF_HUB_CACHE or HF_HOME for another");
        put_download(&b, l);
    }
    int rc = b.p ? ds_fail(DS_ENOINPUT, "%s", b.p) : ds_fail(DS_ENOINPUT, "%s: %s: %s", l->key, l->name, problem);
    ds_buf_free(&b);
    return rc;
}

/* ---- the cache ---- */

/* The revisions cached for a repo ("main, refs/pr/3"), for messages. */
static void list_refs(const char *dir, const char *prefix, ds_buf *out, int depth)
{
    DIR *d = depth < 4 ? opendir(dir) : NULL;
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char *path = ds_path_join(dir, e->d_name);
        char *name = *prefix ? ds_strdupf("%s/%s", prefix, e->d_name) : ds_strdup(e->d_name);
        if (path && name && ds_is_dir(path)) list_refs(path, name, out, depth + 1);
        else if (name) ds_buf_printf(out, "%s%s", out->len ? ", " : "", name);
        free(path);
        free(name);
    }
    closedir(d);
}

/* The commit a ref names: the first line of refs/REVISION. */
static bool read_ref(const char *repo, const char *revision, char commit[64])
{
    char *path = ds_strdupf("%s/refs/%s", repo, revision), *text = NULL;
    size_t len = 0;
    bool ok = path && !ds_is_dir(path) && ds_read_file(path, &text, &len) == DS_OK;
    if (!ok) ds_clear_error();
    size_t n = 0;
    while (ok && n < len && n < 63 && isxdigit((unsigned char)text[n])) n++;
    if (ok) memcpy(commit, text, n), commit[n] = '\0';
    free(path);
    free(text);
    return ok && n > 0;
}

/* The snapshot folder of the lookup's id in the cache, or a not_found(). */
static int find_snapshot(lookup *l, char **dir, hub_found *found)
{
    const char *rev = *l->revision ? l->revision : "main";
    char *org_name = ds_strdup(l->id);
    if (!org_name) return DS_ENOMEM;
    *strchr(org_name, '/') = '\0';
    l->repo = ds_strdupf("%s/models--%s--%s", l->cache, org_name, org_name + strlen(org_name) + 1);
    free(org_name);
    if (!l->repo) return DS_ENOMEM;
    char problem[200];
    snprintf(problem, sizeof problem, "no such %s folder, and not in the Hugging Face cache", l->what);
    if (!ds_is_dir(l->repo)) return not_found(l, problem, "not there");
    char commit[64];
    if (!read_ref(l->repo, rev, commit)) snprintf(commit, sizeof commit, "%.63s", rev);   /* a commit hash itself */
    char *snap = ds_strdupf("%s/snapshots/%s", l->repo, commit);
    if (!snap) return DS_ENOMEM;
    if (!ds_is_dir(snap)) {
        ds_buf refs = {0}, detail = {0};
        char *refs_dir = ds_path_join(l->repo, "refs");
        if (refs_dir) list_refs(refs_dir, "", &refs, 0);
        free(refs_dir);
        ds_buf_printf(&detail, "there, but without revision %s; revisions there: %s", rev, refs.len ? refs.p : "none");
        snprintf(problem, sizeof problem, "revision %s is not in the Hugging Face cache", rev);
        int rc = not_found(l, problem, detail.p ? detail.p : "there, without that revision");
        ds_buf_free(&refs);
        ds_buf_free(&detail);
        free(snap);
        return rc;
    }
    /* a snapshot without the files a download starts with was cut short */
    char *probe = ds_path_join(snap, strcmp(l->what, "model") ? "tokenizer.json" : "config.json");
    bool complete = probe && ds_exists(probe);
    free(probe);
    if (!complete) {
        char detail[300];
        snprintf(detail, sizeof detail, "snapshot %s has no %s: the download did not finish; run it again", commit,
                 strcmp(l->what, "model") ? "tokenizer.json" : "config.json");
        snprintf(problem, sizeof problem, "the Hugging Face cache holds an unfinished download");
        free(snap);
        return not_found(l, problem, detail);
    }
    if (found) {
        found->from_cache = true;
        snprintf(found->revision, sizeof found->revision, "%s", rev);
        snprintf(found->commit, sizeof found->commit, "%s", commit);
    }
    *dir = snap;
    return DS_OK;
}

/* ---- weights ---- */

/* Whether the folder has a file whose name ends in `suffix`. */
static bool has_suffix_file(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d) return false;
    size_t ns = strlen(suffix);
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        found = n > ns && !strcmp(e->d_name + n - ns, suffix);
    }
    closedir(d);
    return found;
}

/* A model folder with .bin weights and no safetensors cannot be read: say how to get safetensors. */
static int check_weights(const lookup *l, const char *dir)
{
    if (strcmp(l->what, "model") || has_suffix_file(dir, ".safetensors") || !has_suffix_file(dir, ".bin")) return DS_OK;
    ds_buf b = {0};
    ds_buf_printf(&b, "%s: %s: %s holds PyTorch .bin weights and no .safetensors; ds-ft reads only safetensors",
                  l->key, l->name, dir);
    if (l->is_id) {
        lookup wanted = *l;
        wanted.revision[0] = '\0';   /* the known safetensors revision, where there is one */
        put_download(&b, &wanted);
    }
    ds_buf_puts(&b, "\n  or look on the model's Hub page for a safetensors revision (a pull request \"Adding "
                    "`safetensors` variant\"), or save the model with transformers' save_pretrained (safetensors "
                    "by default)");
    int rc = b.p ? ds_fail(DS_ENOINPUT, "%s", b.p) : ds_fail(DS_ENOINPUT, "%s: %s: no safetensors", l->key, l->name);
    ds_buf_free(&b);
    return rc;
}

/* ---- resolving ---- */

int hub_resolve(const char *name, const char *key, hub_kind what, char **dir, hub_found *found)
{
    *dir = NULL;
    if (found) memset(found, 0, sizeof *found);
    lookup l = {.key = key, .name = name, .what = what == HUB_MODEL ? "model" : "tokenizer"};
    l.is_id = hub_is_model_id(name);
    int rc = DS_OK;
    if (ds_exists(name)) {                         /* a path that exists wins over an id */
        l.is_id = false;
        *dir = ds_strdup(name);
        rc = *dir ? check_weights(&l, name) : DS_ENOMEM;
    } else if (!l.is_id) {
        char problem[64];
        snprintf(problem, sizeof problem, "no such %s folder", l.what);
        rc = not_found(&l, problem, NULL);
    } else {
        const char *at = strchr(name, '@');
        size_t n = at ? (size_t)(at - name) : strlen(name);
        snprintf(l.id, sizeof l.id, "%.*s", (int)n, name);
        snprintf(l.revision, sizeof l.revision, "%s", at ? at + 1 : "");
        l.cache = hub_cache_dir(&l.cache_from);
        rc = l.cache ? find_snapshot(&l, dir, found) : DS_ENOMEM;
        if (!rc) rc = check_weights(&l, *dir);
    }
    if (rc) {
        free(*dir);
        *dir = NULL;
    }
    free(l.cache);
    free(l.repo);
    return rc;
}
