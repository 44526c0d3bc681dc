/* finetune/recipe/recipe_alias.c - the names other tools use, and `a.b=value`
 * overrides from the command line. Both work on the YAML tree before it is
 * read into the struct, so every check applies to them unchanged.
 *
 * An alias is read at the top level (LLaMA-Factory, torchtune and axolotl
 * configs are flat) and inside the section of the key it stands for. Besides
 * the table, a flat top-level name that is the name of exactly one grouped key
 * (axolotl's lora_r, micro_batch_size, sequence_len, ...) is read as that key. */
#include "recipe_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

const recipe_alias RECIPE_ALIASES[] = {
    {"lora_rank", "adapter.lora_r", "LLaMA-Factory, torchtune"},
    {"lora_target", "adapter.lora_target_modules", "LLaMA-Factory"},
    {"lora_attn_modules", "adapter.lora_target_modules", "torchtune"},
    {"cutoff_len", "data.sequence_len", "LLaMA-Factory"},
    {"max_seq_length", "data.sequence_len", "TRL"},
    {"max_seq_len", "data.sequence_len", "torchtune"},
    {"num_train_epochs", "train.num_epochs", "transformers, LLaMA-Factory"},
    {"epochs", "train.num_epochs", "torchtune"},
    {"per_device_train_batch_size", "train.micro_batch_size", "transformers, LLaMA-Factory"},
    {"batch_size", "train.micro_batch_size", "torchtune"},
    {"lr", "train.learning_rate", "torchtune"},
    {"lr_scheduler_type", "train.lr_scheduler", "transformers, LLaMA-Factory"},
    {"enable_activation_checkpointing", "train.gradient_checkpointing", "torchtune"},
    {"clip_grad_norm", "train.max_grad_norm", "torchtune"},
    {"datasets", "data.datasets", "axolotl"},
    {"test_datasets", "eval.datasets", "axolotl"},
    {NULL, NULL, NULL},
};

static const recipe_section *find_section(const char *name)
{
    for (const recipe_section *s = RECIPE_SECTIONS; s->name; s++)
        if (!strcmp(s->name, name)) return s;
    return NULL;
}

static bool section_has(const recipe_section *s, const char *key)
{
    for (int i = 0; s->keys && s->keys[i].name; i++)
        if (!strcmp(s->keys[i].name, key)) return true;
    for (int i = 0; s->extra && s->extra[i]; i++)
        if (!strcmp(s->extra[i], key)) return true;
    return false;
}

/* What `key` in `section` ("" = top level) stands for: "adapter.lora_r"
 * into `to`, or false when it is no alias. */
static bool resolve_alias(const char *section, const char *key, char *to, size_t n)
{
    const recipe_section *here = find_section(section);
    if (!here || section_has(here, key)) return false;
    if (!*section && find_section(key)) return false;   /* a section name */
    for (const recipe_alias *a = RECIPE_ALIASES; a->from; a++) {
        if (strcmp(a->from, key)) continue;
        size_t sl = strlen(section);
        if (!*section || (!strncmp(a->to, section, sl) && a->to[sl] == '.')) {
            snprintf(to, n, "%s", a->to);
            return true;
        }
    }
    if (*section) return false;
    /* a flat name that names exactly one grouped key */
    const recipe_section *only = NULL;
    int count = 0;
    for (const recipe_section *s = RECIPE_SECTIONS; s->name; s++)
        if (*s->name && s->keys && section_has(s, key)) {
            only = s;
            count++;
        }
    if (count != 1) return false;
    snprintf(to, n, "%s.%s", only->name, key);
    return true;
}

static int conflict(const rctx *c, int line, const char *key, const char *to, int other_line)
{
    return rctx_fail(c, line, key, "is read as %s, which line %d sets too; keep one of them", to, other_line);
}

int recipe_resolve_aliases(rctx *c, ynode *root)
{
    char to[160];
    /* inside the sections: rename in place */
    for (int s = 0; s < root->n; s++) {
        ynode *sec = root->kids[s];
        if (sec->kind != YN_MAP || !find_section(root->keys[s]) || !*root->keys[s]) continue;
        for (int i = 0; i < sec->n; i++) {
            if (!resolve_alias(root->keys[s], sec->keys[i], to, sizeof to)) continue;
            const char *leaf = strchr(to, '.') + 1;
            int there = ynode_find(sec, leaf);
            if (there >= 0) {
                char dotted[200];
                snprintf(dotted, sizeof dotted, "%s.%s", root->keys[s], sec->keys[i]);
                return conflict(c, sec->key_lines[i], dotted, to, sec->key_lines[there]);
            }
            char *renamed = ds_strdup(leaf);
            if (!renamed) return DS_ENOMEM;
            rctx_notice(c, sec->key_lines[i], "'%s' is read as %s", sec->keys[i], to);
            free(sec->keys[i]);
            sec->keys[i] = renamed;
        }
    }
    /* at the top level: move into the section */
    for (int i = 0; i < root->n;) {
        if (!resolve_alias("", root->keys[i], to, sizeof to)) {
            i++;
            continue;
        }
        char section[64];
        const char *dot = strchr(to, '.');
        snprintf(section, sizeof section, "%.*s", (int)(dot - to), to);
        int si = ynode_find(root, section);
        if (si >= 0 && root->kids[si]->kind != YN_MAP && !ynode_is_null(root->kids[si])) {
            i++;   /* the section is malformed: reading it reports that */
            continue;
        }
        if (si >= 0 && root->kids[si]->kind != YN_MAP) {   /* `train:` left empty */
            ynode *empty = ynode_new(YN_MAP, root->key_lines[si]);
            if (!empty) return DS_ENOMEM;
            ynode_free(root->kids[si]);
            root->kids[si] = empty;
        }
        if (si < 0) {
            if (ynode_append(root, section, root->key_lines[i], ynode_new(YN_MAP, root->key_lines[i]))) return DS_ENOMEM;
            si = root->n - 1;
        }
        ynode *sec = root->kids[si];
        int there = ynode_find(sec, dot + 1);
        if (there >= 0) return conflict(c, root->key_lines[i], root->keys[i], to, sec->key_lines[there]);
        rctx_notice(c, root->key_lines[i], "'%s' is read as %s", root->keys[i], to);
        int key_line = root->key_lines[i];
        ynode *v = ynode_take(root, i);
        if (ynode_append(sec, dot + 1, key_line, v)) return DS_ENOMEM;
    }
    return DS_OK;
}

/* ---- overrides ---- */

typedef struct {
    char name[128];
    int index;            /* [N], or -1 */
} segment;

#define MAX_SEGMENTS 8

static int split_path(const rctx *c, const char *key, size_t len, segment *seg, int *nseg)
{
    *nseg = 0;
    const char *p = key, *end = key + len;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *stop = dot ? dot : end;
        if (*nseg == MAX_SEGMENTS) return rctx_fail(c, RLINE_CMDLINE, NULL, "'%.*s': too many parts", (int)len, key);
        segment *s = &seg[(*nseg)++];
        s->index = -1;
        const char *br = memchr(p, '[', (size_t)(stop - p));
        const char *name_end = br ? br : stop;
        if (name_end == p || (size_t)(name_end - p) >= sizeof s->name)
            return rctx_fail(c, RLINE_CMDLINE, NULL, "'%.*s' is not a key (expected section.key=value)", (int)len,
                             key);
        memcpy(s->name, p, (size_t)(name_end - p));
        s->name[name_end - p] = '\0';
        if (br) {   /* name[N] */
            char *after;
            long idx = strtol(br + 1, &after, 10);
            if (after == br + 1 || *after != ']' || after + 1 != stop || idx < 0 || idx > 1000000)
                return rctx_fail(c, RLINE_CMDLINE, NULL, "'%.*s': expected name[N] with a number N", (int)len, key);
            s->index = (int)idx;
        }
        if (!dot) break;
        p = dot + 1;
    }
    return DS_OK;
}

/* The path so far, for messages. */
static const char *path_text(const segment *seg, int n, char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && k < size; i++) {
        int w = seg[i].index >= 0 ? snprintf(buf + k, size - k, "%s%s[%d]", i ? "." : "", seg[i].name, seg[i].index)
                                  : snprintf(buf + k, size - k, "%s%s", i ? "." : "", seg[i].name);
        if (w < 0) break;
        k += (size_t)w;
    }
    return buf;
}

/* Rewrite an aliased path (lora_rank, train.lr) to its grouped key. */
static void alias_path(rctx *c, segment *seg, int *nseg)
{
    char to[160];
    if (*nseg == 1 && seg[0].index < 0 && resolve_alias("", seg[0].name, to, sizeof to)) {
        rctx_notice(c, RLINE_CMDLINE, "'%s' is read as %s", seg[0].name, to);
        const char *dot = strchr(to, '.');
        seg[1].index = -1;
        snprintf(seg[1].name, sizeof seg[1].name, "%s", dot + 1);
        snprintf(seg[0].name, sizeof seg[0].name, "%.*s", (int)(dot - to), to);
        *nseg = 2;
    } else if (*nseg >= 2 && seg[0].index < 0 && resolve_alias(seg[0].name, seg[1].name, to, sizeof to)) {
        rctx_notice(c, RLINE_CMDLINE, "'%s.%s' is read as %s", seg[0].name, seg[1].name, to);
        snprintf(seg[1].name, sizeof seg[1].name, "%s", strchr(to, '.') + 1);
    }
}

int recipe_apply_override(rctx *c, ynode *root, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return rctx_fail(c, RLINE_CMDLINE, NULL, "'%s': expected key=value (e.g. train.learning_rate=1e-4)", arg);
    segment seg[MAX_SEGMENTS + 1];
    int nseg;
    int rc = split_path(c, arg, (size_t)(eq - arg), seg, &nseg);
    if (rc) return rc;
    alias_path(c, seg, &nseg);

    char label[300], path[400];
    snprintf(label, sizeof label, "command line: '%s'", arg);
    ynode *value = NULL;
    rc = ynode_parse(eq + 1, strlen(eq + 1), label, true, &value);
    if (rc) return rc;
    if (!value) value = ynode_scalar("", false, RLINE_CMDLINE);
    if (!value) return DS_ENOMEM;

    ynode *node = root;
    for (int i = 0; i < nseg; i++) {
        const segment *s = &seg[i];
        bool last = i == nseg - 1;
        if (node->kind != YN_MAP) {
            ynode_free(value);
            return rctx_fail(c, RLINE_CMDLINE, path_text(seg, i, path, sizeof path),
                             "is not a mapping, so '%s' cannot be set inside it", s->name);
        }
        int k = ynode_find(node, s->name);
        if (last && s->index < 0) {   /* set or replace the value */
            if (k >= 0) {
                ynode_free(node->kids[k]);
                node->kids[k] = value;
                node->key_lines[k] = RLINE_CMDLINE;
                return DS_OK;
            }
            return ynode_append(node, s->name, RLINE_CMDLINE, value);
        }
        if (k < 0 || (s->index < 0 && ynode_is_null(node->kids[k]))) {
            if (s->index >= 0) {
                ynode_free(value);
                return rctx_fail(c, RLINE_CMDLINE, path_text(seg, i + 1, path, sizeof path), "there is no such entry");
            }
            ynode *map = ynode_new(YN_MAP, RLINE_CMDLINE);
            if (!map) {
                ynode_free(value);
                return DS_ENOMEM;
            }
            if (k < 0) {
                if (ynode_append(node, s->name, RLINE_CMDLINE, map)) {
                    ynode_free(value);
                    return DS_ENOMEM;
                }
                k = node->n - 1;
            } else {
                ynode_free(node->kids[k]);
                node->kids[k] = map;
            }
        }
        node = node->kids[k];
        if (s->index >= 0) {
            if (node->kind != YN_SEQ || s->index >= node->n) {
                int n = node->kind == YN_SEQ ? node->n : 0;
                ynode_free(value);
                return rctx_fail(c, RLINE_CMDLINE, path_text(seg, i + 1, path, sizeof path),
                                 "there is no such entry (%s has %d)", s->name, n);
            }
            if (last) {
                ynode_free(node->kids[s->index]);
                node->kids[s->index] = value;
                return DS_OK;
            }
            node = node->kids[s->index];
        }
    }
    ynode_free(value);
    return ds_fail(DS_EINTERNAL, "override '%s' was not applied", arg);
}
