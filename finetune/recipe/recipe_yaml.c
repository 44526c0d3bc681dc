/* finetune/recipe/recipe_yaml.c - libyaml events into a small tree of scalars,
 * sequences and mappings that remembers the line of every key and value,
 * so that every later message can say file:line.
 *
 * Duplicate keys are refused here (libyaml accepts them), as are aliases
 * (*name: a few bytes could otherwise expand into an enormous tree) and
 * nesting deeper than any recipe needs. */
#include "recipe_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 32

ynode *ynode_new(ynode_kind kind, int line)
{
    ynode *n = ds_calloc(1, sizeof *n, "a YAML node");
    if (!n) return NULL;
    n->kind = kind;
    n->line = line;
    return n;
}

ynode *ynode_scalar(const char *text, bool quoted, int line)
{
    ynode *n = ynode_new(YN_SCALAR, line);
    char *copy = n ? ds_strdup(text) : NULL;
    if (!copy) {
        free(n);
        return NULL;
    }
    n->text = copy;
    n->quoted = quoted;
    return n;
}

void ynode_free(ynode *n)
{
    if (!n) return;
    for (int i = 0; i < n->n; i++) {
        ynode_free(n->kids[i]);
        if (n->keys) free(n->keys[i]);
    }
    free(n->kids);
    free(n->keys);
    free(n->key_lines);
    free(n->text);
    free(n);
}

int ynode_append(ynode *c, const char *key, int key_line, ynode *value)
{
    if (!value) return DS_ENOMEM;   /* making it failed: the message is set */
    /* the three arrays grow alike; c->cap changes once all three have */
    size_t need = (size_t)c->n + 1, kids_cap = (size_t)c->cap, keys_cap = kids_cap, lines_cap = kids_cap;
    char *key_copy = c->kind == YN_MAP ? ds_strdup(key) : NULL;
    bool ok = (c->kind != YN_MAP || key_copy) && !ds_grow(&c->kids, &kids_cap, need, sizeof *c->kids);
    if (ok && c->kind == YN_MAP)
        ok = !ds_grow(&c->keys, &keys_cap, need, sizeof *c->keys) &&
             !ds_grow(&c->key_lines, &lines_cap, need, sizeof *c->key_lines);
    if (!ok) {
        free(key_copy);
        ynode_free(value);
        return DS_ENOMEM;
    }
    c->cap = (int)kids_cap;
    c->kids[c->n] = value;
    if (c->kind == YN_MAP) {
        c->keys[c->n] = key_copy;
        c->key_lines[c->n] = key_line;
    }
    c->n++;
    return DS_OK;
}

int ynode_find(const ynode *map, const char *key)
{
    if (!map || map->kind != YN_MAP) return -1;
    for (int i = 0; i < map->n; i++)
        if (!strcmp(map->keys[i], key)) return i;
    return -1;
}

ynode *ynode_take(ynode *map, int i)
{
    ynode *v = map->kids[i];
    free(map->keys[i]);
    memmove(map->kids + i, map->kids + i + 1, (size_t)(map->n - i - 1) * sizeof *map->kids);
    memmove(map->keys + i, map->keys + i + 1, (size_t)(map->n - i - 1) * sizeof *map->keys);
    memmove(map->key_lines + i, map->key_lines + i + 1, (size_t)(map->n - i - 1) * sizeof *map->key_lines);
    map->n--;
    return v;
}

bool ynode_is_null(const ynode *n)
{
    if (!n || n->kind != YN_SCALAR || n->quoted) return false;
    const char *t = n->text;
    return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

/* ---- the parser ---- */

typedef struct {
    const char *src;
    bool cmdline;
    const char *text;
    size_t len;
    ynode *root;
    int depth;
    ynode *stack[MAX_DEPTH];
    char *key[MAX_DEPTH];       /* a mapping's key waiting for its value */
    int key_line[MAX_DEPTH];
    char name[MAX_DEPTH][64];   /* each open container's key or [index], for messages */
    char last[64];              /* the name of the node attached last */
} builder;

static int line_of(const builder *b, const yaml_mark_t *m)
{
    return b->cmdline ? RLINE_CMDLINE : (int)m->line + 1;
}

/* "file:12" or the command-line label. */
static void where(const builder *b, int line, char *buf, size_t n)
{
    if (line > 0) snprintf(buf, n, "%s:%d", b->src, line);
    else snprintf(buf, n, "%s", b->src);
}

/* The dotted path of the container on top of the stack, plus `key`. */
static void path_of(const builder *b, const char *key, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int d = 1; d <= b->depth; d++) {
        const char *name = d < b->depth ? b->name[d] : key;
        int w = snprintf(buf + k, n - k, "%s%s", (k && name[0] != '[') ? "." : "", name);
        if (w < 0 || (size_t)w >= n - k) break;
        k += (size_t)w;
    }
}

/* Attach a fresh node to the open container (or make it the root).
 * Takes ownership of `node` in every case. */
static int attach(builder *b, ynode *node, const yaml_mark_t *mark)
{
    if (!node) return DS_ENOMEM;   /* making it failed: the message is set */
    b->last[0] = '\0';
    if (b->depth == 0) {
        b->root = node;
        return DS_OK;
    }
    ynode *top = b->stack[b->depth - 1];
    if (top->kind == YN_SEQ) {
        int rc = ynode_append(top, NULL, 0, node);
        if (rc) return rc;
        snprintf(b->last, sizeof b->last, "[%d]", top->n - 1);
        return DS_OK;
    }
    char at[600], path[512];
    int d = b->depth - 1;
    if (!b->key[d]) {   /* this node is a key */
        if (node->kind != YN_SCALAR) {
            const char *what = node->kind == YN_SEQ ? "list" : "mapping";
            where(b, line_of(b, mark), at, sizeof at);
            ynode_free(node);
            return ds_fail(DS_ECONFIG, "%s: a key must be a plain name, not a %s", at, what);
        }
        int dup = ynode_find(top, node->text);
        if (dup >= 0) {
            path_of(b, node->text, path, sizeof path);
            where(b, node->line, at, sizeof at);
            int first = top->key_lines[dup];
            ynode_free(node);
            if (first > 0)
                return ds_fail(DS_ECONFIG, "%s: %s: duplicate key (first set on line %d)", at, path, first);
            return ds_fail(DS_ECONFIG, "%s: %s: duplicate key", at, path);
        }
        b->key[d] = node->text;
        b->key_line[d] = node->line;
        node->text = NULL;
        ynode_free(node);
        return DS_OK;
    }
    int rc = ynode_append(top, b->key[d], b->key_line[d], node);
    snprintf(b->last, sizeof b->last, "%s", b->key[d]);
    free(b->key[d]);
    b->key[d] = NULL;
    return rc;
}

static int syntax_error(const builder *b, const yaml_parser_t *p)
{
    char at[600];
    if (p->error == YAML_MEMORY_ERROR) return ds_fail(DS_ENOMEM, "%s: out of memory reading YAML", b->src);
    int line;
    if (p->error == YAML_READER_ERROR) {   /* bad encoding: only a byte offset is known */
        line = 1;
        for (size_t i = 0; i < p->problem_offset && i < b->len; i++) line += b->text[i] == '\n';
    } else {
        line = (int)p->problem_mark.line + 1;
    }
    where(b, b->cmdline ? RLINE_CMDLINE : line, at, sizeof at);
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->context && !b->cmdline)
        return ds_fail(DS_ECONFIG, "%s: YAML syntax error: %s (%s on line %d)", at, problem, p->context,
                       (int)p->context_mark.line + 1);
    return ds_fail(DS_ECONFIG, "%s: YAML syntax error: %s", at, problem);
}

int ynode_parse(const char *text, size_t len, const char *src, bool cmdline, ynode **root)
{
    *root = NULL;
    builder b;
    memset(&b, 0, sizeof b);
    b.src = src;
    b.cmdline = cmdline;
    b.text = text;
    b.len = len;

    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))   /* its only failure: allocating its buffers */
        return ds_fail(DS_ENOMEM, "%s: out of memory starting the YAML parser", src);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);

    int rc = DS_OK, docs = 0;
    char at[600];
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = syntax_error(&b, &p);
            break;
        }
        yaml_event_type_t type = ev.type;
        int line = line_of(&b, &ev.start_mark);
        switch (type) {
        case YAML_DOCUMENT_START_EVENT:
            if (docs++ > 0) {
                where(&b, line, at, sizeof at);
                rc = ds_fail(DS_ECONFIG, "%s: a recipe is one YAML document; found a second one", at);
            }
            break;
        case YAML_ALIAS_EVENT:
            where(&b, line, at, sizeof at);
            rc = ds_fail(DS_ECONFIG, "%s: YAML aliases (*%s) are not supported in recipes; write the value out", at,
                         ev.data.alias.anchor ? (const char *)ev.data.alias.anchor : "");
            break;
        case YAML_SCALAR_EVENT: {
            const char *v = (const char *)ev.data.scalar.value;
            size_t n = ev.data.scalar.length;
            if (memchr(v, '\0', n)) {
                where(&b, line, at, sizeof at);
                rc = ds_fail(DS_ECONFIG, "%s: a value contains a NUL character", at);
                break;
            }
            const char *tag = (const char *)ev.data.scalar.tag;
            bool quoted = ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                          (tag && (!strcmp(tag, "!") || !strcmp(tag, YAML_STR_TAG)));
            rc = attach(&b, ynode_scalar(v, quoted, line), &ev.start_mark);
            break;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            if (b.depth == MAX_DEPTH) {
                where(&b, line, at, sizeof at);
                rc = ds_fail(DS_ECONFIG, "%s: nested more than %d levels deep", at, MAX_DEPTH);
                break;
            }
            ynode *c = ynode_new(type == YAML_SEQUENCE_START_EVENT ? YN_SEQ : YN_MAP, line);
            rc = attach(&b, c, &ev.start_mark);
            if (!rc) {
                b.stack[b.depth] = c;
                b.key[b.depth] = NULL;
                memcpy(b.name[b.depth], b.last, sizeof b.last);
                b.depth++;
            }
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (b.depth > 0) {
                b.depth--;
                free(b.key[b.depth]);
                b.key[b.depth] = NULL;
            }
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (rc || type == YAML_STREAM_END_EVENT) break;
    }
    yaml_parser_delete(&p);
    for (int d = 0; d < b.depth; d++) free(b.key[d]);
    if (rc) {
        ynode_free(b.root);
        return rc;
    }
    *root = b.root;
    return DS_OK;
}
