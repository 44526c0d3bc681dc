/* data/clean/clean_run.c - a cleaning run: the passes over the inputs.
 *
 *   1. every record: PII, the per-record rules, exact duplicates (a hash
 *      map, first seen kept), fingerprints into the record list
 *   -  near duplicates over all fingerprints at once (clean_lsh.c)
 *   2. with keep_fraction: the survivors scored by the scorer, then cut
 *   3. with an output: the survivors written, PII masked, as compact JSONL
 *      (zstd when the name ends in .zst), under a temporary name renamed
 *      at the end
 * A later pass checks that it meets the same records at the same lines: a
 * file that changes during the run is an error, never a silent mix.
 */
#include "clean_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/jsonl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* ---- the output: plain or zstd, atomically ---- */

typedef struct {
    ds_out o;
    bool open;
    ZSTD_CCtx *z;
    unsigned char *buf;
    size_t cap;
} writer;

static int writer_open(writer *w, const char *path)
{
    memset(w, 0, sizeof *w);
    int rc = ds_out_open(&w->o, path);
    if (rc) return rc;
    w->open = true;
    size_t n = strlen(path);
    if (n > 4 && !strcmp(path + n - 4, ".zst")) {
        w->z = ZSTD_createCCtx();
        if (!w->z) return ds_fail(DS_ENOMEM, "%s: out of memory creating a zstd compressor", path);
        w->cap = ZSTD_CStreamOutSize();
        if (!(w->buf = ds_malloc(w->cap, "zstd output"))) return DS_ENOMEM;
    }
    return DS_OK;
}

static int writer_put(writer *w, const void *data, size_t len, ZSTD_EndDirective end)
{
    if (!w->z) return ds_out_write(&w->o, data, len);
    ZSTD_inBuffer in = {data, len, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->buf, w->cap, 0};
        size_t left = ZSTD_compressStream2(w->z, &out, &in, end);
        if (ZSTD_isError(left)) return ds_fail(DS_EIO, "%s: zstd: %s", w->o.path, ZSTD_getErrorName(left));
        int rc = ds_out_write(&w->o, w->buf, out.pos);
        if (rc) return rc;
        if (end == ZSTD_e_end ? left == 0 : in.pos == in.size) return DS_OK;
    }
}

static void writer_close(writer *w, bool commit, int *rc)
{
    if (w->open) {
        if (commit && !*rc && w->z) *rc = writer_put(w, "", 0, ZSTD_e_end);
        if (commit && !*rc) *rc = ds_out_commit(&w->o);
        else ds_out_abort(&w->o);
    }
    ZSTD_freeCCtx(w->z);
    free(w->buf);
    memset(w, 0, sizeof *w);
}

/* ---- the report's bookkeeping ---- */

#define RULE_NAME(name) #name
static const char *const rule_names[] = {CLEAN_RULES(RULE_NAME, DS_COMMA)};
#undef RULE_NAME
const char *clean_rule_name(clean_rule r) { return rule_names[r]; }

void clean_report_drop(clean_report *r, uint32_t record, clean_rule rule, const char *why)
{
    r->rec[record].fate = (uint8_t)rule;
    r->dropped[rule]++;
    int k = 0;
    while (k < r->nwhy && !(r->why[k].rule == rule_names[rule] && r->why[k].why == why)) k++;
    if (k == r->nwhy && k < (int)(sizeof r->why / sizeof r->why[0])) r->why[r->nwhy++] = (typeof(r->why[0])){rule_names[rule], why, 0};
    if (k < r->nwhy) r->why[k].n++;
}

const char *clean_report_where(const clean_report *r, uint32_t record, char *buf, size_t n)
{
    const clean_rec *x = &r->rec[record];
    snprintf(buf, n, "%s:%d", r->inputs[x->file], x->line);
    return buf;
}

/* ---- reading the inputs ---- */

static int grow_records(clean_report *r)
{
    if (ds_grow(&r->rec, &r->cap, r->n + 1, sizeof *r->rec)) return DS_ENOMEM;
    if (r->nhash && ds_grow(&r->sig, &r->sig_cap, (r->n + 1) * (size_t)r->nhash, sizeof *r->sig)) return DS_ENOMEM;
    return DS_OK;
}

/* The type of input f, from the config or its first record, and the same for all inputs. */
static int input_type(clean_state *s, int f, const json_t *obj, int line)
{
    clean_report *r = s->rep;
    const char *type = s->cfg->type ? s->cfg->type : clean_guess_type(obj);
    if (!type)
        return ds_fail(DS_EDATA, "%s:%d: cannot tell the dataset type from the fields (alpaca, messages, "
                       "prompt_completion, text, preference or mcq); pass --type", r->inputs[f], line);
    for (int g = 0; g < f; g++)
        if (r->types[g] && strcmp(r->types[g], type))
            return ds_fail(DS_EDATA, "%s is %s data but %s is %s: the output is one dataset, clean them apart",
                           r->inputs[g], r->types[g], r->inputs[f], type);
    if (!(r->types[f] = ds_strdup(type))) return DS_ENOMEM;
    clean_type_word_limits(type, &s->min_words, &s->max_words);
    if (s->cfg->min_words >= 0) s->min_words = s->cfg->min_words;
    if (s->cfg->max_words >= 0) s->max_words = s->cfg->max_words;
    return DS_OK;
}

/* Score the records waiting in the queue, in one call. */
static int score_queued(clean_state *s)
{
    clean_report *r = s->rep;
    if (!s->q_n) return DS_OK;
    for (int i = 0; i < s->q_n; i++) s->q_nll[i] = NAN;
    int rc = s->job->scorer->score(s->job->scorer->ctx, s->q_n, (const char *const *)s->q_text, s->q_len, s->q_nll);
    for (int i = 0; !rc && i < s->q_n; i++) {
        double nll = s->q_nll[i];
        if (!isfinite(nll)) return ds_fail(DS_EINTERNAL, "the scorer gave %g for record %u", nll, s->q_id[i] + 1);
        r->rec[s->q_id[i]].score = (float)nll;
        r->scored++;
        int b = nll < 0 ? 0 : (int)(nll * 2);
        r->score_hist[b < CLEAN_SCORE_BINS ? b : CLEAN_SCORE_BINS - 1]++;
    }
    s->q_n = 0;
    return rc;
}

/* Queue a record's counted text for the scorer; a full queue is scored. */
static int score_record(clean_state *s, json_t *obj, uint32_t id, int line)
{
    clean_report *r = s->rep;
    bool drop;
    int rc = r->rec[id].pii ? clean_scrub(s, obj, false, &drop) : DS_OK;
    if (!rc) rc = clean_text_of(r->types[r->rec[id].file], s->all_text, obj, r->inputs[r->rec[id].file], line, &s->text);
    if (rc) return rc;
    int k = s->q_n;
    if (ds_grow(&s->q_text[k], &s->q_cap[k], s->text.counted_len + 1, 1)) return DS_ENOMEM;
    memcpy(s->q_text[k], s->text.counted, s->text.counted_len);
    s->q_text[k][s->text.counted_len] = '\0';
    s->q_len[k] = s->text.counted_len;
    s->q_id[k] = id;
    s->q_n++;
    return s->q_n == s->q_max ? score_queued(s) : DS_OK;
}

static int queue_open(clean_state *s)
{
    int n = s->job->scorer->batch > 0 ? s->job->scorer->batch : 1;
    s->q_text = ds_calloc((size_t)n, sizeof *s->q_text, "the scorer's queue");
    s->q_len = ds_calloc((size_t)n, sizeof *s->q_len, "the scorer's queue");
    s->q_cap = ds_calloc((size_t)n, sizeof *s->q_cap, "the scorer's queue");
    s->q_id = ds_calloc((size_t)n, sizeof *s->q_id, "the scorer's queue");
    s->q_nll = ds_calloc((size_t)n, sizeof *s->q_nll, "the scorer's queue");
    if (!s->q_text || !s->q_len || !s->q_cap || !s->q_id || !s->q_nll) return DS_ENOMEM;
    s->q_max = n;
    return DS_OK;
}

static int write_record(clean_state *s, json_t *obj, uint32_t id, writer *w)
{
    bool drop;
    int rc = s->rep->rec[id].pii ? clean_scrub(s, obj, false, &drop) : DS_OK;
    if (rc) return rc;
    char *line = json_dumps(obj, JSON_COMPACT);
    if (!line) return ds_fail(DS_ENOMEM, "out of memory");
    rc = writer_put(w, line, strlen(line), ZSTD_e_continue);
    if (!rc) rc = writer_put(w, "\n", 1, ZSTD_e_continue);
    free(line);
    s->rep->records_out++;
    return rc;
}

/* One pass over input f: 1 = first pass, 2 = scoring, 3 = writing. */
static int read_input(clean_state *s, int f, int pass, writer *w)
{
    clean_report *r = s->rep;
    const char *path = r->inputs[f];
    jsonl_reader *jr;
    int rc = jsonl_open(path, 0, &jr);
    if (rc) return rc;
    uint32_t id = pass == 1 ? (uint32_t)r->n : r->first_record[f], end = r->first_record[f + 1];
    for (;;) {
        json_t *obj;
        int line;
        rc = jsonl_next(jr, &obj, &line);
        if (rc == DS_OK && !obj) break;
        if (pass == 1) {
            int grc = r->n == UINT32_MAX - 1 ? ds_fail(DS_EDATA, "%s: more than %u records", path, UINT32_MAX - 1)
                                             : grow_records(r);
            if (grc) {
                json_decref(obj);
                rc = grc;
                break;
            }
            r->rec[id] = (clean_rec){0, 0, 0, CLEAN_NONE, line, (uint16_t)f, RULE_kept, false, NAN};
            r->n++;
        } else if (id >= end || (obj && r->rec[id].line != line)) {
            json_decref(obj);
            rc = ds_fail(DS_EDATA, "%s:%d: the file changed while it was being cleaned", path, line);
            break;
        }
        if (rc == DS_OK) {
            if (pass == 1 && !r->types[f]) rc = input_type(s, f, obj, line);
            if (rc) {
                json_decref(obj);
                break;
            }
            if (pass == 1) rc = clean_first_pass(s, obj, r->types[f], path, line, id);
            else if (r->rec[id].fate == RULE_kept) rc = pass == 2 ? score_record(s, obj, id, line) : write_record(s, obj, id, w);
            json_decref(obj);
        }
        if (rc == DS_EDATA && s->cfg->skip_bad_lines && jsonl_can_continue(jr) &&
            (pass == 1 || r->rec[id].fate == RULE_malformed)) {
            if (pass == 1) clean_report_drop(r, id, RULE_malformed, NULL);
            ds_clear_error();
            rc = DS_OK;
        }
        if (rc) break;
        id++;
    }
    if (pass == 1) r->first_record[f + 1] = id;
    else if (!rc && id != end) rc = ds_fail(DS_EDATA, "%s: the file changed while it was being cleaned", path);
    jsonl_close(jr);
    return rc;
}

/* ---- near duplicates ---- */

static int near_duplicates(clean_state *s)
{
    clean_report *r = s->rep;
    if (!s->simhash && !s->minhash) return DS_OK;
    bool *alive = ds_calloc(r->n + 1, sizeof *alive, "finding near duplicates");
    uint32_t *dup = ds_calloc(r->n + 1, sizeof *dup, "finding near duplicates");
    uint64_t *fp = s->simhash ? ds_calloc(r->n + 1, sizeof *fp, "finding near duplicates") : NULL;
    int rc = !alive || !dup || (s->simhash && !fp) ? DS_ENOMEM : DS_OK;
    for (size_t i = 0; !rc && i < r->n; i++) {
        alive[i] = r->rec[i].fate == RULE_kept;
        if (fp) fp[i] = r->rec[i].simhash;
    }
    if (!rc && s->simhash) {
        clean_simhash_tables(r->max_distance, r->n, &r->blocks, &r->per_table);
        rc = clean_near_simhash(fp, alive, r->n, r->max_distance, dup);
    } else if (!rc) {
        clean_minhash_bands(r->nhash, r->similarity, &r->bands, &r->rows);
        rc = clean_near_minhash(r->sig, r->nhash, alive, r->n, r->similarity, dup);
    }
    for (size_t i = 0; !rc && i < r->n; i++)
        if (dup[i] != CLEAN_NONE) {
            r->rec[i].dup_of = dup[i];
            clean_report_drop(r, (uint32_t)i, RULE_near_duplicate, NULL);
        }
    free(alive);
    free(dup);
    free(fp);
    return rc;
}

/* ---- the run ---- */

static int setup(const clean_config *cfg, const clean_job *job, clean_report *r, clean_state *s)
{
    s->cfg = r->cfg = cfg;
    s->job = job;
    s->rep = r;
    for (int c = 0; c < CLEAN_PII_NCAT; c++) {
        s->mask[c] = !strcmp(cfg->pii[c], "mask");
        s->drop[c] = !strcmp(cfg->pii[c], "drop");
        s->any_pii |= s->mask[c] || s->drop[c];
        if (!(r->pii_action[c] = ds_strdup(cfg->pii[c]))) return DS_ENOMEM;
    }
    s->all_text = !strcmp(cfg->text, "all");
    s->simhash = !strcmp(cfg->near, "simhash");
    s->minhash = !strcmp(cfg->near, "minhash");
    r->similarity = cfg->similarity;
    r->max_distance = clean_simhash_max_distance(cfg->similarity);
    r->nhash = s->minhash ? (int)cfg->minhash_hashes : 0;
    r->ngram = (int)cfg->ngram;
    r->keep_fraction = cfg->keep_fraction;
    r->max_examples = (int)cfg->examples;
    r->near = ds_strdup(cfg->near);
    r->text_mode = ds_strdup(cfg->text);
    r->contam_action = ds_strdup(cfg->contamination);
    r->inputs = ds_calloc((size_t)job->ninputs, sizeof *r->inputs, "the report");
    r->types = ds_calloc((size_t)job->ninputs, sizeof *r->types, "the report");
    r->first_record = ds_calloc((size_t)job->ninputs + 1, sizeof *r->first_record, "the report");
    r->evals = ds_calloc((size_t)(job->nevals + cfg->eval.n) + 1, sizeof *r->evals, "the report");
    if (!r->near || !r->text_mode || !r->contam_action || !r->inputs || !r->types || !r->first_record || !r->evals)
        return DS_ENOMEM;
    r->ninputs = job->ninputs;
    for (int i = 0; i < job->ninputs; i++)
        if (!(r->inputs[i] = ds_strdup(job->inputs[i]))) return DS_ENOMEM;
    for (int i = 0; i < job->nevals + cfg->eval.n; i++)
        if (!(r->evals[r->nevals++] = ds_strdup(i < job->nevals ? job->evals[i] : cfg->eval.items[i - job->nevals])))
            return DS_ENOMEM;
    if (job->out && !(r->out = ds_strdup(job->out))) return DS_ENOMEM;
    if (strcmp(cfg->contamination, "off") && r->nevals) {
        int rc = clean_contam_load((const char *const *)r->evals, r->nevals, (int)cfg->ngram, cfg->skip_bad_lines,
                                   &r->contam);
        if (rc) return rc;
        r->eval_items = clean_contam_items(r->contam);
        r->item_hit = ds_calloc(r->eval_items + 1, 1, "the contamination report");
        r->examples = ds_calloc((size_t)r->max_examples + 1, sizeof *r->examples, "the contamination report");
        if (!r->item_hit || !r->examples) return DS_ENOMEM;
    }
    s->text.no_all = !r->contam;   /* only contamination reads every field */
    return DS_OK;
}

static void state_free(clean_state *s)
{
    clean_text_free(&s->text);
    clean_words_free(&s->words);
    clean_words_free(&s->all_words);
    clean_scratch_free(&s->scratch);
    clean_pii_matches_free(&s->pii);
    tok_ids_free(&s->ids);
    clean_map_free(&s->exact);
    for (int i = 0; s->q_text && i < s->q_max; i++) free(s->q_text[i]);
    free(s->q_text);
    free(s->q_len);
    free(s->q_cap);
    free(s->q_id);
    free(s->q_nll);
}

int clean_run(const clean_config *cfg, const clean_job *job, clean_report **report)
{
    *report = NULL;
    int rc = clean_config_check(cfg);
    if (rc) return rc;
    if (job->ninputs < 1) return ds_fail(DS_EUSAGE, "clean: no input files");
    if (job->ninputs > UINT16_MAX) return ds_fail(DS_EUSAGE, "clean: more than %d input files", UINT16_MAX);
    if ((cfg->min_tokens > 0 || cfg->max_tokens > 0) && !job->tok)
        return ds_fail(DS_ECONFIG, "clean.length.min_tokens/max_tokens need a tokenizer (--tokenizer DIR)");
    if (cfg->keep_fraction > 0 && !job->scorer)
        return ds_fail(DS_ECONFIG, "clean.quality.keep_fraction needs a language-model scorer (ds-ft clean "
                       "--model DIR, or quality.model)");
    if (job->out && ds_exists(job->out) && !job->force)
        return ds_fail(DS_EEXISTS, "%s exists; pass --force to replace it", job->out);
    clean_report *r = ds_calloc(1, sizeof *r, "the report");
    if (!r) return DS_ENOMEM;
    *report = r;
    clean_state s = {0};
    rc = setup(cfg, job, r, &s);
    for (int f = 0; f < job->ninputs && !rc; f++) rc = read_input(&s, f, 1, NULL);
    if (!rc) rc = near_duplicates(&s);
    if (!rc && cfg->keep_fraction > 0) {
        if (!(r->scorer = ds_strdup(job->scorer->name ? job->scorer->name : "scorer"))) rc = DS_ENOMEM;
        if (!rc) rc = queue_open(&s);
        for (int f = 0; f < job->ninputs && !rc; f++) rc = read_input(&s, f, 2, NULL);
        if (!rc) rc = score_queued(&s);
        if (!rc) rc = clean_quality_cut(r, cfg->keep_fraction);
    }
    if (!rc && job->out) {
        writer w;
        rc = writer_open(&w, job->out);
        for (int f = 0; f < job->ninputs && !rc; f++) rc = read_input(&s, f, 3, &w);
        writer_close(&w, true, &rc);
    } else if (!rc) {
        r->records_out = 0;
        for (size_t i = 0; i < r->n; i++) r->records_out += r->rec[i].fate == RULE_kept;
    }
    state_free(&s);
    r->cfg = NULL;
    return rc;
}
