/* data/clean/clean_yaml.c - clean.yaml, or a recipe's `clean:` value, read
 * with libyaml's document API: a mapping of sections, each a mapping of
 * keys (clean_config.c's tables). Unknown sections and keys, duplicate
 * keys and values of the wrong kind are errors naming file:line: key.
 * A file whose only top-level key is `clean` is read as that section, so a
 * recipe's section can be tried out as a file of its own.
 */
#include "clean_internal.h"

#include "core/files.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

static int line_of(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

/* A mapping's keys must be plain, distinct scalars. */
static int check_keys(yaml_document_t *doc, yaml_node_t *map, const char *src, const char *prefix)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (!k || k->type != YAML_SCALAR_NODE)
            return ds_fail(DS_ECONFIG, "%s:%d: %s: a key must be a plain name", src, k ? line_of(k) : 0, prefix);
        if (memchr(k->data.scalar.value, '\0', k->data.scalar.length))
            return ds_fail(DS_ECONFIG, "%s:%d: %s: a key holds a NUL character", src, line_of(k), prefix);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *e = yaml_document_get_node(doc, q->key);
            if (!strcmp(scalar(e), scalar(k)))
                return ds_fail(DS_ECONFIG, "%s:%d: %s%s%s: duplicate key (first on line %d)", src, line_of(k), prefix,
                               *prefix ? "." : "", scalar(k), line_of(e));
        }
    }
    return DS_OK;
}

static bool plain_null(const yaml_node_t *v)
{
    if (v->type != YAML_SCALAR_NODE || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *t = scalar(v);
    return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

/* One key's value: a scalar, or for a list key a sequence of scalars. */
static int read_value(clean_config *cfg, yaml_document_t *doc, const char *dotted, yaml_node_t *v, const char *src)
{
    if (v->type == YAML_SCALAR_NODE) {
        if (memchr(v->data.scalar.value, '\0', v->data.scalar.length))
            return ds_fail(DS_ECONFIG, "%s:%d: clean.%s: the value holds a NUL character", src, line_of(v), dotted);
        return clean_config_set(cfg, dotted, scalar(v), src, line_of(v));
    }
    if (v->type == YAML_SEQUENCE_NODE && !strcmp(dotted, "contamination.eval")) {
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *x = yaml_document_get_node(doc, *it);
            if (!x || x->type != YAML_SCALAR_NODE)
                return ds_fail(DS_ECONFIG, "%s:%d: clean.%s: expected a list of file names", src, line_of(v), dotted);
            int rc = read_value(cfg, doc, dotted, x, src);
            if (rc) return rc;
        }
        return DS_OK;
    }
    return ds_fail(DS_ECONFIG, "%s:%d: clean.%s: expected a single value, got a %s", src, line_of(v), dotted,
                   v->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
}

int clean_config_from_yaml_node(clean_config *cfg, yaml_document_t *doc, yaml_node_t *map, const char *src)
{
    if (!map || plain_null(map)) return DS_OK;
    if (map->type != YAML_MAPPING_NODE)
        return ds_fail(DS_ECONFIG, "%s:%d: clean: expected a mapping of sections (dedup, length, pii, ...)", src,
                       line_of(map));
    int rc = check_keys(doc, map, src, "clean");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; !rc && p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *sk = yaml_document_get_node(doc, p->key), *sv = yaml_document_get_node(doc, p->value);
        const clean_section *sec = NULL;
        for (const clean_section *s = clean_config_sections(); s->name; s++)
            if (!strcmp(s->name, scalar(sk))) sec = s;
        if (!sec) return clean_config_set(cfg, scalar(sk), "", src, line_of(sk));   /* names the unknown section */
        if (plain_null(sv)) continue;
        if (sv->type != YAML_MAPPING_NODE)
            return ds_fail(DS_ECONFIG, "%s:%d: clean.%s: expected a mapping of keys", src, line_of(sv), sec->name);
        if ((rc = check_keys(doc, sv, src, sec->name))) break;
        for (yaml_node_pair_t *q = sv->data.mapping.pairs.start; !rc && q < sv->data.mapping.pairs.top; q++) {
            yaml_node_t *k = yaml_document_get_node(doc, q->key), *v = yaml_document_get_node(doc, q->value);
            char dotted[200];
            snprintf(dotted, sizeof dotted, "%s.%.120s", sec->name, scalar(k));
            const opt_key *key = opt_find(sec->keys, scalar(k));
            if (key && key->type == OPT_STRING_LIST) {   /* a list given here replaces the default */
                opt_strings *l = (opt_strings *)((char *)cfg + key->offset);
                for (int i = 0; i < l->n; i++) free(l->items[i]);
                l->n = 0;
            }
            if (!key) rc = clean_config_set(cfg, dotted, "", src, line_of(k));   /* names the unknown key */
            else rc = read_value(cfg, doc, dotted, v, src);
        }
    }
    return rc;
}

int clean_config_load(const char *path, clean_config *cfg)
{
    int rc = clean_config_defaults(cfg);
    if (rc) return rc;
    char *text;
    size_t len;
    if ((rc = ds_read_file(path, &text, &len))) return rc;
    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p)) {
        free(text);
        return ds_fail(DS_EINTERNAL, "%s: cannot start the YAML parser", path);
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &doc)) {
        int line = (int)(p.problem_mark.line + 1);
        rc = ds_fail(p.error == YAML_MEMORY_ERROR ? DS_ENOMEM : DS_ECONFIG, "%s:%d: YAML syntax error: %s", path,
                     line, p.problem ? p.problem : "malformed YAML");
        yaml_parser_delete(&p);
        free(text);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE &&
        root->data.mapping.pairs.top - root->data.mapping.pairs.start == 1) {
        yaml_node_t *k = yaml_document_get_node(&doc, root->data.mapping.pairs.start->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp(scalar(k), "clean"))   /* clean: {...} */
            root = yaml_document_get_node(&doc, root->data.mapping.pairs.start->value);
    }
    rc = clean_config_from_yaml_node(cfg, &doc, root, path);
    if (!rc) rc = clean_config_check(cfg);
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    free(text);
    return rc;
}
