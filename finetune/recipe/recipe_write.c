/* finetune/recipe/recipe_write.c - the resolved recipe as YAML (every key, defaults
 * and the loss modules' keys included), and the key list of `ds-ft --help`.
 *
 * What is written reads back into an identical struct: numbers in their
 * shortest exact form, strings plain only where YAML reads them back as the
 * same string, double-quoted with escapes otherwise. */
#define _GNU_SOURCE
#include "recipe_internal.h"

#include "core/files.h"
#include "core/status.h"
#include "core/utf8.h"
#include "data/pyjson.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Python's repr(): the shortest digits, "32.0" (it reads as what it is), "1e-08". */
void recipe_fmt_double(char *buf, size_t n, double v) { pyjson_repr_double(v, buf, n); }

/* Plain where nothing can read it as another type or as YAML syntax. */
static bool plain_ok(const char *s)
{
    static const char *const words[] = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", NULL};
    if (!*s) return false;
    unsigned char c0 = (unsigned char)s[0];
    bool start = (c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || c0 == '_' || c0 == '/' ||
                 (c0 == '.' && (s[1] == '/' || s[1] == '.'));
    if (!start) return false;
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                  ch == '.' || ch == '/' || ch == '-';
        if (!ok) return false;
    }
    for (int i = 0; words[i]; i++)
        if (!strcasecmp(s, words[i])) return false;
    return true;
}

void recipe_put_string(FILE *f, const char *s)
{
    if (plain_ok(s)) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    size_t n = strlen(s);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t used;
        uint32_t cp = ds_utf8_decode((const char *)p, n - (size_t)(p - (const unsigned char *)s), &used);
        if (cp == DS_UTF8_BAD) {   /* not UTF-8: cannot come from YAML */
            fprintf(f, "\\x%02x", *p++);
            continue;
        }
        if (cp == '"') fputs("\\\"", f);
        else if (cp == '\\') fputs("\\\\", f);
        else if (cp == '\n') fputs("\\n", f);
        else if (cp == '\t') fputs("\\t", f);
        else if (cp == '\r') fputs("\\r", f);
        else if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) fprintf(f, "\\x%02x", (unsigned)cp);
        else if (cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF)
            fprintf(f, "\\u%04x", (unsigned)cp);   /* line breaks and non-characters to YAML */
        else fwrite(p, 1, used, f);
        p += used;
    }
    fputc('"', f);
}

static void put_value(FILE *f, const opt_key *k, const void *base)
{
    const void *field = (const char *)base + k->offset;
    char num[40];
    switch (k->type) {
    case OPT_BOOL:
        fputs(*(const bool *)field ? "true" : "false", f);
        break;
    case OPT_INT: {
        int64_t v = *(const int64_t *)field;
        if ((k->flags & OPT_NULLABLE) && v == -1) fputs("null", f);
        else fprintf(f, "%" PRId64, v);
        break;
    }
    case OPT_FLOAT:
        recipe_fmt_double(num, sizeof num, *(const double *)field);
        fputs(num, f);
        break;
    case OPT_STRING:
    case OPT_CHOICE: {
        const char *s = *(char *const *)field;
        if (s) recipe_put_string(f, s);
        else fputs("null", f);
        break;
    }
    case OPT_STRING_LIST: {
        const opt_strings *l = field;
        fputc('[', f);
        for (int i = 0; i < l->n; i++) {
            if (i) fputs(", ", f);
            recipe_put_string(f, l->items[i]);
        }
        fputc(']', f);
        break;
    }
    case OPT_INT_LIST: {
        const opt_ints *l = field;
        fputc('[', f);
        for (int i = 0; i < l->n; i++) fprintf(f, "%s%" PRId64, i ? ", " : "", l->items[i]);
        fputc(']', f);
        break;
    }
    }
}

/* Whether a key has a value worth writing (mcq_format of a non-mcq dataset has none). */
static bool has_value(const opt_key *k, const void *base)
{
    if (k->type != OPT_STRING && k->type != OPT_CHOICE) return true;
    return *(char *const *)((const char *)base + k->offset) || (k->flags & OPT_NULLABLE);
}

static void put_keys(FILE *f, const opt_key *keys, const void *base, const char *indent, const char *first)
{
    for (const opt_key *k = keys; k && k->name; k++) {
        if (!has_value(k, base)) continue;
        fprintf(f, "%s%s: ", first ? first : indent, k->name);
        first = NULL;
        put_value(f, k, base);
        fputc('\n', f);
    }
}

void recipe_put_keys(FILE *f, const opt_key *keys, const void *base, const char *indent, const char *first)
{
    put_keys(f, keys, base, indent, first);
}

static void put_datasets(FILE *f, const recipe_dataset *d, int n)
{
    if (!n) {
        fputs("  datasets: []\n", f);
        return;
    }
    fputs("  datasets:\n", f);
    for (int i = 0; i < n; i++) put_keys(f, RECIPE_DATASET_KEYS, &d[i], "      ", "    - ");
}

static void put_loss(FILE *f, const recipe *r)
{
    const recipe_loss *m = &r->loss.main;
    fputs("  type: ", f);
    recipe_put_string(f, m->module ? m->module->name : "sft");
    fputc('\n', f);
    if (m->module) put_keys(f, m->module->keys, m->cfg, "  ", NULL);
    if (!r->loss.n_penalties) {
        fputs("  penalties: []\n", f);
        return;
    }
    fputs("  penalties:\n", f);
    for (int i = 0; i < r->loss.n_penalties; i++) {
        const recipe_loss *p = &r->loss.penalties[i];
        fputs("    - type: ", f);
        recipe_put_string(f, p->module->name);
        fputc('\n', f);
        put_keys(f, p->module->keys, p->cfg, "      ", NULL);
    }
}

int recipe_print(const recipe *r, FILE *f)
{
    fputs("# ds-ft recipe, resolved: every key with its value, defaults included.\n"
          "# Paths are relative to the folder ds-ft runs in.\n",
          f);
    for (const recipe_section *s = RECIPE_SECTIONS; s->name; s++) {
        if (!*s->name) {
            put_keys(f, s->keys, r, "", NULL);
            continue;
        }
        fprintf(f, "\n%s:\n", s->name);
        if (!strcmp(s->name, "loss")) {
            put_loss(f, r);
            continue;
        }
        put_keys(f, s->keys, r, "  ", NULL);
        if (!strcmp(s->name, "data")) put_datasets(f, r->data.datasets, r->data.n_datasets);
        if (!strcmp(s->name, "eval")) put_datasets(f, r->eval.datasets, r->eval.n_datasets);
    }
    recipe_clean_put(f, r);
    if (ferror(f)) return ds_fail(DS_EIO, "writing the recipe failed");
    return DS_OK;
}

int recipe_write(const recipe *r, const char *path)
{
    ds_out o;
    int rc = ds_out_open(&o, path);
    if (rc) return rc;
    if ((rc = recipe_print(r, o.f))) {
        ds_out_abort(&o);
        return ds_fail_context(rc, "%s: ", path);
    }
    return ds_out_commit(&o);
}

/* ---- ds-ft --help ---- */

static void print_default(FILE *f, const opt_key *k)
{
    char num[40];
    if (!k->def) fputs(k->flags & OPT_REQUIRED ? "(required)" : "null", f);
    else if (k->type == OPT_FLOAT) {
        recipe_fmt_double(num, sizeof num, strtod(k->def, NULL));
        fputs(num, f);
    } else fputs(k->def, f);
}

static void print_key(FILE *f, const char *indent, const char *prefix, const opt_key *k)
{
    fprintf(f, "%s%s%s%s: ", indent, prefix, *prefix ? "." : "", k->name);
    print_default(f, k);
    fprintf(f, " - %s", k->help ? k->help : "");
    if (k->choices) fprintf(f, " (%s)", k->choices);
    fputc('\n', f);
}

void recipe_print_keys(FILE *f)
{
    char names[256];
    for (const recipe_section *s = RECIPE_SECTIONS; s->name; s++) {
        fprintf(f, "  %s\n", *s->name ? s->name : "top level");
        if (!strcmp(s->name, "loss")) {
            fprintf(f, "    loss.type: sft - %s (%s)\n", recipe_extra_help("loss", "type"),
                    loss_names(names, sizeof names, false));
            fprintf(f, "    loss.penalties: [] - %s (%s)\n", recipe_extra_help("loss", "penalties"),
                    loss_names(names, sizeof names, true));
            for (int i = 0; i < loss_count(); i++) {
                const loss_module *m = loss_at(i);
                bool any = m->keys && m->keys[0].name;
                fprintf(f, "    %s %s: %s%s\n", m->is_penalty ? "penalty" : "type", m->name, m->summary,
                        any ? "" : " (no options)");
                for (const opt_key *k = m->keys; k && k->name; k++)
                    print_key(f, "      ", m->is_penalty ? "loss.penalties[]" : "loss", k);
            }
            continue;
        }
        for (const opt_key *k = s->keys; k && k->name; k++) print_key(f, "    ", s->name, k);
        for (int i = 0; s->extra && *s->name && s->extra[i]; i++) {
            char sub[64];
            fprintf(f, "    %s.%s: %s - %s\n", s->name, s->extra[i], strcmp(s->name, "data") ? "[]" : "(required)",
                    recipe_extra_help(s->name, s->extra[i]));
            snprintf(sub, sizeof sub, "%s.%s[]", s->name, s->extra[i]);
            for (const opt_key *k = RECIPE_DATASET_KEYS; k->name; k++) print_key(f, "      ", sub, k);
        }
    }
    recipe_clean_print_keys(f);
    fputs("\n  Other names, read with a notice:\n", f);
    for (const recipe_alias *a = RECIPE_ALIASES; a->from; a++)
        fprintf(f, "    %s -> %s (%s)\n", a->from, a->to, a->origin);
    fputs("    and at the top level any key's own name when one section has it (axolotl's flat\n"
          "    lora_r, micro_batch_size, sequence_len, learning_rate, ...)\n",
          f);
    fputs("\n  Overrides: ds-ft RECIPE section.key=value ... sets a key after the file, e.g.\n"
          "    train.max_steps=100 train.max_steps=null loss.beta=0.2\n"
          "    adapter.lora_target_modules=[q_proj,k_proj] data.datasets[0].limit=50\n",
          f);
}
