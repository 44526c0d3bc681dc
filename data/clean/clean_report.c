/* data/clean/clean_report.c - what a run did, as JSON (records in and out
 * per rule, duplicate clusters, PII counts, length and score histograms,
 * contaminated items) and as a few lines for people.
 *
 * Record numbers count from 1 across the inputs in order (each input's
 * first number is in "inputs"); every record named also has its file:line.
 * A duplicate cluster is named by its root: the record its chain of
 * "duplicate of" leads back to (normally kept; the fate says otherwise).
 */
#include "clean_internal.h"
#include "data/json_util.h"

#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void clean_report_free(clean_report *r)
{
    if (!r) return;
    for (int i = 0; i < r->ninputs; i++) {
        free(r->inputs[i]);
        if (r->types) free(r->types[i]);
    }
    for (int i = 0; i < r->nevals; i++) free(r->evals[i]);
    for (int i = 0; i < r->nexamples; i++) free(r->examples[i].ngram);
    for (int c = 0; c < CLEAN_PII_NCAT; c++) free(r->pii_action[c]);
    free(r->inputs);
    free(r->types);
    free(r->first_record);
    free(r->evals);
    free(r->examples);
    free(r->item_hit);
    clean_contam_free(r->contam);
    free(r->rec);
    free(r->sig);
    free(r->near);
    free(r->text_mode);
    free(r->contam_action);
    free(r->scorer);
    free(r->out);
    free(r);
}


/* json_object_set_new that remembers running out of memory. */
static void put(json_t *o, const char *k, json_t *v, bool *oom)
{
    if (!v || json_object_set_new(o, k, v)) *oom = true;
}
static void push(json_t *a, json_t *v, bool *oom)
{
    if (!v || json_array_append_new(a, v)) *oom = true;
}

static json_t *where_json(const clean_report *r, uint32_t id)
{
    char buf[1200];
    return json_string(clean_report_where(r, id, buf, sizeof buf));
}

static int by_value(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Clusters of the records a duplicate rule dropped, by root. */
static json_t *clusters(const clean_report *r, const uint32_t *root, clean_rule rule, bool *oom)
{
    json_t *out = json_array();
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) n += r->rec[i].fate == rule;
    uint64_t *pairs = ds_calloc(n + 1, sizeof *pairs, "the report");   /* root << 32 | record, sorted */
    if (!out || !pairs) {
        *oom = true;
        free(pairs);
        return out;
    }
    n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->rec[i].fate == rule) pairs[n++] = (uint64_t)root[i] << 32 | i;
    qsort(pairs, n, sizeof *pairs, by_value);
    for (size_t s = 0; s < n && !*oom;) {
        uint32_t k = (uint32_t)(pairs[s] >> 32);
        json_t *c = json_object(), *ids = json_array(), *at = json_array();
        if (!c) *oom = true;
        else {
            put(c, "kept", json_integer(k + 1), oom);
            put(c, "at", where_json(r, k), oom);
            if (r->rec[k].fate != RULE_kept) put(c, "kept_fate", json_string(clean_rule_name(r->rec[k].fate)), oom);
        }
        for (; s < n && pairs[s] >> 32 == k; s++) {
            push(ids, json_integer((json_int_t)(uint32_t)pairs[s] + 1), oom);
            push(at, where_json(r, (uint32_t)pairs[s]), oom);
        }
        if (c) {
            put(c, "dropped", ids, oom);
            put(c, "dropped_at", at, oom);
        } else {
            json_decref(ids);
            json_decref(at);
        }
        push(out, c, oom);
    }
    free(pairs);
    return out;
}

static json_t *rules_json(const clean_report *r, bool *oom)
{
    json_t *a = json_array();
    for (int k = 1; k < RULE_COUNT && a; k++) {
        json_t *o = json_object(), *why = json_object();
        put(o, "rule", json_string(clean_rule_name(k)), oom);
        put(o, "dropped", json_integer((json_int_t)r->dropped[k]), oom);
        for (int w = 0; w < r->nwhy; w++)
            if (r->why[w].rule == clean_rule_name(k) && r->why[w].why)
                put(why, r->why[w].why, json_integer((json_int_t)r->why[w].n), oom);
        put(o, "reasons", why, oom);
        push(a, o, oom);
    }
    return a ? a : (*oom = true, NULL);
}

static json_t *pii_json(const clean_report *r, bool *oom)
{
    json_t *o = json_object();
    for (int t = 0; t < PII_NTYPES && o; t++) {
        json_t *x = json_object();
        put(x, "action", json_string(r->pii_action[clean_pii_category_of(t)]), oom);
        put(x, "placeholder", json_string(clean_pii_placeholder(t)), oom);
        put(x, "found", json_integer((json_int_t)r->pii_found[t]), oom);
        put(x, "records", json_integer((json_int_t)r->pii_records[t]), oom);
        put(o, clean_pii_type_name(t), x, oom);
    }
    return o;
}

static json_t *histogram(const size_t *bins, int nbins, double width, bool log2_bins, bool *oom)
{
    json_t *a = json_array();
    for (int b = 0; b < nbins && a; b++) {
        json_t *x = json_object();
        double lo = log2_bins ? (b ? (double)(1ULL << (b - 1)) : 0) : b * width;
        double hi = log2_bins ? (b ? (double)(1ULL << b) - 1 : 0) : (b + 1) * width;
        put(x, "from", log2_bins ? json_integer((json_int_t)lo) : json_real(lo), oom);
        if (b + 1 < nbins) put(x, "to", log2_bins ? json_integer((json_int_t)hi) : json_real(hi), oom);
        put(x, "records", json_integer((json_int_t)bins[b]), oom);
        push(a, x, oom);
    }
    return a;
}

static json_t *contamination_json(const clean_report *r, bool *oom)
{
    json_t *o = json_object(), *files = json_array(), *ex = json_array();
    put(o, "action", json_string(r->contam_action), oom);
    put(o, "ngram", json_integer(r->ngram), oom);
    for (int i = 0; i < r->nevals; i++) push(files, json_string(r->evals[i]), oom);
    put(o, "eval_files", files, oom);
    size_t hit = 0;
    for (size_t i = 0; r->item_hit && i < r->eval_items; i++) hit += r->item_hit[i];
    put(o, "eval_items", json_integer((json_int_t)r->eval_items), oom);
    put(o, "records", json_integer((json_int_t)r->contaminated), oom);
    put(o, "eval_items_hit", json_integer((json_int_t)hit), oom);
    for (int i = 0; i < r->nexamples; i++) {
        json_t *x = json_object();
        put(x, "record", json_integer(r->examples[i].record + 1), oom);
        put(x, "at", where_json(r, r->examples[i].record), oom);
        put(x, "eval_item", json_string(clean_contam_where(r->contam, r->examples[i].item)), oom);
        put(x, "ngram", json_string(r->examples[i].ngram), oom);
        push(ex, x, oom);
    }
    put(o, "examples", ex, oom);
    return o;
}

static json_t *config_json(const clean_report *r, bool *oom)
{
    json_t *o = json_object();
    put(o, "text", json_string(r->text_mode), oom);
    put(o, "near", json_string(r->near), oom);
    put(o, "similarity", json_real(r->similarity), oom);
    if (!strcmp(r->near, "simhash")) {
        put(o, "max_hamming_distance", json_integer(r->max_distance), oom);
        put(o, "lsh_blocks", json_integer(r->blocks), oom);
        put(o, "lsh_blocks_per_table", json_integer(r->per_table), oom);
    } else if (!strcmp(r->near, "minhash")) {
        put(o, "minhash_hashes", json_integer(r->nhash), oom);
        put(o, "lsh_bands", json_integer(r->bands), oom);
        put(o, "lsh_rows", json_integer(r->rows), oom);
    }
    return o;
}

char *clean_report_json(const clean_report *r)
{
    bool oom = false;
    json_alloc_reset();   /* jansson can lose an allocation without saying so (json_dumps) */
    json_t *o = json_object(), *inputs = json_array();
    uint32_t *root = ds_calloc(r->n + 1, sizeof *root, "the report");
    if (!o || !inputs || !root) oom = true;
    for (size_t i = 0; root && i < r->n; i++)   /* dup_of points back, so the root is known already */
        root[i] = r->rec[i].dup_of == CLEAN_NONE ? (uint32_t)i : root[r->rec[i].dup_of];
    for (int f = 0; f < r->ninputs && !oom; f++) {
        json_t *x = json_object();
        put(x, "path", json_string(r->inputs[f]), &oom);
        put(x, "type", r->types[f] ? json_string(r->types[f]) : json_null(), &oom);
        put(x, "records", json_integer(r->first_record[f + 1] - r->first_record[f]), &oom);
        put(x, "first_record", json_integer(r->first_record[f] + 1), &oom);
        push(inputs, x, &oom);
    }
    char *text = NULL;
    if (!oom) {
        put(o, "inputs", inputs, &oom);
        put(o, "output", r->out ? json_string(r->out) : json_null(), &oom);
        put(o, "records_in", json_integer((json_int_t)r->n), &oom);
        put(o, "records_out", json_integer((json_int_t)r->records_out), &oom);
        put(o, "rules", rules_json(r, &oom), &oom);
        put(o, "config", config_json(r, &oom), &oom);
        json_t *d = json_object();
        put(d, "exact", clusters(r, root, RULE_exact_duplicate, &oom), &oom);
        put(d, "near", clusters(r, root, RULE_near_duplicate, &oom), &oom);
        put(o, "duplicates", d, &oom);
        put(o, "pii", pii_json(r, &oom), &oom);
        json_t *h = json_object();
        put(h, "unit", json_string("words of the counted text"), &oom);
        put(h, "bins", histogram(r->hist, CLEAN_HIST_BINS, 0, true, &oom), &oom);
        put(o, "length_histogram", h, &oom);
        put(o, "contamination", r->contam ? contamination_json(r, &oom) : json_null(), &oom);
        json_t *q = json_null();
        if (r->keep_fraction > 0) {
            q = json_object();
            put(q, "keep_fraction", json_real(r->keep_fraction), &oom);
            put(q, "scorer", json_string(r->scorer ? r->scorer : ""), &oom);
            put(q, "scored", json_integer((json_int_t)r->scored), &oom);
            put(q, "score_cut", isfinite(r->score_cut) ? json_real(r->score_cut) : json_null(), &oom);
            put(q, "score_histogram", histogram(r->score_hist, CLEAN_SCORE_BINS, 0.5, false, &oom), &oom);
        }
        put(o, "quality", q, &oom);
        if (!oom) text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
    } else {
        json_decref(inputs);
    }
    json_decref(o);
    free(root);
    if (json_alloc_failed()) {
        free(text);
        return NULL;
    }
    return text;
}

void clean_report_summary(const clean_report *r, FILE *f)
{
    fprintf(f, "clean: %zu records in, %zu out", r->n, r->records_out);
    for (int i = 0; i < r->ninputs; i++) fprintf(f, "%s%s (%s)", i ? ", " : " from ", r->inputs[i], r->types[i] ? r->types[i] : "?");
    fputc('\n', f);
    for (int k = 1; k < RULE_COUNT; k++) {
        if (!r->dropped[k]) continue;
        fprintf(f, "  %-16s %8zu dropped", clean_rule_name(k), r->dropped[k]);
        const char *sep = " (";
        for (int w = 0; w < r->nwhy; w++)
            if (r->why[w].rule == clean_rule_name(k) && r->why[w].why) {
                fprintf(f, "%s%s %zu", sep, r->why[w].why, r->why[w].n);
                sep = ", ";
            }
        fputs(*sep == ',' ? ")\n" : "\n", f);
    }
    const char *sep = "  pii: ";
    for (int t = 0; t < PII_NTYPES; t++)
        if (r->pii_found[t]) {
            fprintf(f, "%s%s %zu (%s)", sep, clean_pii_type_name(t), r->pii_found[t],
                    r->pii_action[clean_pii_category_of(t)]);
            sep = ", ";
        }
    if (*sep == ',') fputc('\n', f);
    if (r->contam)
        fprintf(f, "  contamination: %zu records share a %d-word span with the %zu items of %d eval file(s) (%s)\n",
                r->contaminated, r->ngram, r->eval_items, r->nevals, r->contam_action);
    if (!strcmp(r->near, "simhash"))
        fprintf(f, "  near duplicates: SimHash, similarity %g = at most %d of 64 bits differ\n", r->similarity,
                r->max_distance);
    else if (!strcmp(r->near, "minhash"))
        fprintf(f, "  near duplicates: MinHash (%d hashes, %d bands of %d), Jaccard %g\n", r->nhash, r->bands,
                r->rows, r->similarity);
}
