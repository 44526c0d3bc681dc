/* Data cleaning (data/clean): near-duplicate tables against a brute-force
 * search, planted exact and near duplicates at known Hamming distances and
 * edit counts, no false positives on distinct texts, contamination, the
 * repetition and length rules, the config reader's errors (file:line: key),
 * and the quality cut with a fake scorer. (PII: test_clean_pii.c; each
 * dataset type's text: test_clean_text.c.) */
#include "testutil.h"

#include "core/files.h"
#include "core/rng.h"
#include "core/status.h"
#include "data/clean/clean_internal.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static char *g_dir;

static char *tmp_path(const char *name)
{
    if (!g_dir) g_dir = tu_tmpdir();
    return ds_path_join(g_dir, name);
}

static char *write_tmp(const char *name, const char *text)
{
    char *p = tmp_path(name);
    cr_assert_eq(ds_write_file(p, text, strlen(text)), DS_OK, "%s", ds_errmsg());
    return p;
}

static void scan(clean_words *w, const char *text) { cr_assert_eq(clean_words_scan(w, text, strlen(text)), DS_OK); }

/* A distinct text of `n` words: clinical words and made-up ones from a seed. */
static char *text_of(uint64_t seed, int n)
{
    static const char *const base[] = {"patient", "dose", "blood", "pressure", "renal", "hepatic", "insulin", "daily",
                                       "chronic", "acute", "therapy", "infection", "cardiac", "follow", "review",
                                       "symptom", "fever", "cough", "pain", "history"};
    char *s = malloc((size_t)n * 16 + 1), *w = s;
    for (int i = 0; i < n; i++) {
        uint64_t h = ds_hash3(seed, 77, (uint64_t)i);
        if (h & 1) w += sprintf(w, "%s ", base[(h >> 8) % 20]);
        else w += sprintf(w, "w%llu ", (unsigned long long)((h >> 8) % 50000));
    }
    w[-1] = '\0';
    return s;
}

/* The text with word `at` replaced by a word no text has. */
static char *replace_word(const char *text, int at, const char *with)
{
    char *s = malloc(strlen(text) + strlen(with) + 2), *w = s;
    const char *p = text;
    for (int i = 0; *p; i++) {
        const char *e = strchr(p, ' ');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        w += i == at ? sprintf(w, "%s", with) : sprintf(w, "%.*s", (int)n, p);
        p += n;
        if (*p == ' ') *w++ = *p++;
    }
    *w = '\0';
    return s;
}

/* ---- near-duplicate tables ---- */

/* The earliest earlier alive record within d bits, by looking at every pair. */
static void brute_force(const uint64_t *fp, const bool *alive, size_t n, int d, uint32_t *dup)
{
    for (size_t i = 0; i < n; i++) {
        dup[i] = CLEAN_NONE;
        for (size_t j = 0; alive[i] && j < i && dup[i] == CLEAN_NONE; j++)
            if (alive[j] && __builtin_popcountll(fp[i] ^ fp[j]) <= d) dup[i] = (uint32_t)j;
    }
}

Test(near, simhash_tables_find_exactly_what_a_brute_force_search_finds)
{
    size_t n = 3000;
    uint64_t *fp = malloc(n * sizeof *fp);
    bool *alive = malloc(n);
    uint32_t *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
    ds_rng r = ds_rng_make(5, DS_STREAM_TEST);
    for (size_t i = 0; i < n; i++) {
        alive[i] = ds_rng_below(&r, 10) != 0;
        if (i > 0 && ds_rng_below(&r, 3) == 0) {   /* a copy of an earlier one with 0..12 bits flipped */
            fp[i] = fp[ds_rng_below(&r, i)];
            int flips = (int)ds_rng_below(&r, 13);
            for (int k = 0; k < flips; k++) fp[i] ^= 1ULL << ds_rng_below(&r, 64);
        } else {
            fp[i] = ds_rng_u64(&r);
        }
    }
    for (int d = 0; d <= 12; d += 3) {
        brute_force(fp, alive, n, d, want);
        cr_assert_eq(clean_near_simhash(fp, alive, n, d, got), DS_OK);
        size_t found = 0;
        for (size_t i = 0; i < n; i++) {
            cr_assert_eq(got[i], want[i], "d=%d record %zu: tables %u, brute force %u", d, i, got[i], want[i]);
            found += got[i] != CLEAN_NONE;
        }
        cr_expect_gt(found, 30, "d=%d: the planted copies are there to be found", d);
    }
    free(fp);
    free(alive);
    free(got);
    free(want);
}

Test(near, planted_hamming_distances_against_the_documented_threshold)
{
    cr_expect_eq(clean_simhash_max_distance(0.9), 6, "0.9 of 64 bits: at most 6 differ");
    cr_expect_eq(clean_simhash_max_distance(1.0), 0);
    cr_expect_eq(clean_simhash_max_distance(0.95), 3);
    /* 64 random fingerprints, then for each distance 0..12 a copy of one with exactly that many bits flipped */
    uint64_t fp[64 + 13];
    ds_rng r = ds_rng_make(9, DS_STREAM_TEST);
    for (int i = 0; i < 64; i++) fp[i] = ds_rng_u64(&r);
    for (int d = 0; d <= 12; d++) {
        uint64_t x = fp[d], bit = 0;
        for (int k = 0; k < d; k++) {
            do bit = 1ULL << ds_rng_below(&r, 64);
            while (!((x ^ fp[d]) & bit) == 0);
            x ^= bit;
        }
        cr_assert_eq(__builtin_popcountll(x ^ fp[d]), d);
        fp[64 + d] = x;
    }
    uint32_t dup[64 + 13];
    cr_assert_eq(clean_near_simhash(fp, NULL, 64 + 13, clean_simhash_max_distance(0.9), dup), DS_OK);
    for (int i = 0; i < 64; i++) cr_expect_eq(dup[i], CLEAN_NONE, "random fingerprint %d is nobody's duplicate", i);
    for (int d = 0; d <= 12; d++) {
        if (d <= 6) cr_expect_eq(dup[64 + d], (uint32_t)d, "distance %d is near at 0.9", d);
        else cr_expect_eq(dup[64 + d], CLEAN_NONE, "distance %d is not near at 0.9", d);
    }
}

Test(near, word_edits_in_texts_and_no_false_positives)
{
    /* 100-word texts: one replaced word is within the threshold, ten are not */
    clean_words a = {0}, b = {0};
    char *base = text_of(1, 100);
    scan(&a, base);
    uint64_t h0 = clean_simhash(&a, 3);
    char *one = replace_word(base, 50, "zzedited"), *ten = strdup(base);
    for (int k = 0; k < 10; k++) {
        char *x = replace_word(ten, 5 + 10 * k, "zzedited");
        free(ten);
        ten = x;
    }
    scan(&b, one);
    int d1 = __builtin_popcountll(h0 ^ clean_simhash(&b, 3));
    cr_expect_leq(d1, 6, "one word of 100 replaced: %d bits", d1);
    scan(&b, ten);
    int d10 = __builtin_popcountll(h0 ^ clean_simhash(&b, 3));
    cr_expect_gt(d10, 6, "ten words of 100 replaced: %d bits", d10);
    /* 400 distinct texts of 30-120 words: no two within the threshold */
    size_t n = 400;
    uint64_t *fp = malloc(n * sizeof *fp);
    uint32_t *dup = malloc(n * sizeof *dup);
    for (size_t i = 0; i < n; i++) {
        char *t = text_of(1000 + i, 30 + (int)(i % 91));
        scan(&b, t);
        fp[i] = clean_simhash(&b, 3);
        free(t);
    }
    cr_assert_eq(clean_near_simhash(fp, NULL, n, 6, dup), DS_OK);
    for (size_t i = 0; i < n; i++) cr_expect_eq(dup[i], CLEAN_NONE, "distinct text %zu marked near", i);
    free(fp);
    free(dup);
    free(base);
    free(one);
    free(ten);
    clean_words_free(&a);
    clean_words_free(&b);
}

Test(near, minhash_jaccard_option)
{
    int bands, rows;
    clean_minhash_bands(128, 0.9, &bands, &rows);
    cr_expect_leq(bands * rows, 128);
    clean_words w = {0};
    char *base = text_of(2, 100), *one = replace_word(base, 40, "zzedited"), *far = text_of(3, 100);
    char *twenty = strdup(base);
    for (int k = 0; k < 20; k++) {
        char *x = replace_word(twenty, 2 + 5 * k, "zzedited");
        free(twenty);
        twenty = x;
    }
    const char *texts[] = {base, one, far, twenty};
    uint16_t sig[4 * 128];
    for (int i = 0; i < 4; i++) {
        scan(&w, texts[i]);
        clean_minhash(&w, 3, 128, sig + i * 128);
    }
    uint32_t dup[4];
    cr_assert_eq(clean_near_minhash(sig, 128, NULL, 4, 0.9, dup), DS_OK);
    cr_expect_eq(dup[1], 0, "one replaced word of 100: Jaccard about 0.94");
    cr_expect_eq(dup[2], CLEAN_NONE, "another text");
    cr_expect_eq(dup[3], CLEAN_NONE, "twenty replaced words");
    free(base);
    free(one);
    free(far);
    free(twenty);
    clean_words_free(&w);
}

Test(exact, normalised_text_hash)
{
    clean_words w = {0};
    scan(&w, "Take 5 mg of Metformin, twice daily.");
    uint64_t a = clean_exact_hash(&w);
    scan(&w, "take 5 MG of   metformin twice daily");
    cr_expect_eq(clean_exact_hash(&w), a, "case, punctuation and spaces do not count");
    scan(&w, "take 0.5 mg of metformin twice daily");
    cr_expect_neq(clean_exact_hash(&w), a);
    scan(&w, "Étape  ÉTAPE étape");
    cr_expect_eq(w.n, 3);
    cr_expect_eq(w.hash[0], w.hash[1], "Unicode lower case");
    scan(&w, "患者男性");
    cr_expect_eq(w.n, 4, "each Han character is a word");
    scan(&w, " \n\t ");
    cr_expect_eq(clean_exact_hash(&w), 0);
    clean_words_free(&w);
}

/* ---- filters ---- */

/* The repetition of a whole text, and the rule it breaks under cfg (or NULL). */
static const char *repetition_of(const char *text, const clean_config *cfg, clean_words *w, clean_scratch *s,
                                 clean_repetition *r)
{
    scan(w, text);
    cr_assert_eq(clean_repetition_measure(text, 0, strlen(text), w, 0, w->n, s, r), DS_OK);
    return clean_repetition_broken(r, cfg);
}

Test(filters, gopher_repetition)
{
    clean_config cfg;
    cr_assert_eq(clean_config_defaults(&cfg), DS_OK);
    clean_words w = {0};
    clean_scratch s = {0};
    clean_repetition r;
    char *plain = text_of(4, 120);
    const char *why = repetition_of(plain, &cfg, &w, &s, &r);
    cr_expect_null(why, "ordinary text: %s", why);
    why = repetition_of("Call the ward now.\nCall the ward now.\nCall the ward now.\nCheck the chart.\n", &cfg, &w, &s, &r);
    cr_expect_float_eq(r.dup_line, 0.5, 1e-9);
    cr_expect_str_eq(why, "dup_line_share");
    char loop[2000] = "";
    for (int i = 0; i < 20; i++) strcat(loop, "the dose was doubled again and ");
    why = repetition_of(loop, &cfg, &w, &s, &r);
    cr_expect_gt(r.top_ngram[0], 0.2);
    cr_expect_str_eq(why, "top_ngram_share");
    clean_scratch_free(&s);
    clean_words_free(&w);
    clean_config_free(&cfg);
    free(plain);
}

Test(filters, charset_and_type_lengths)
{
    clean_config cfg;
    cr_assert_eq(clean_config_defaults(&cfg), DS_OK);
    clean_words w = {0};
    scan(&w, "Na 140 mmol/L, K 4.2 mmol/L, Cl 102 mmol/L");
    cr_expect_null(clean_charset_broken(&w, &cfg), "lab values pass the default");
    scan(&w, "120 80 72 98 6 14 3");
    cr_expect_str_eq(clean_charset_broken(&w, &cfg), "alpha_word_share");
    cr_assert_eq(clean_config_set(&cfg, "charset.script", "latin", "t", 1), DS_OK);
    scan(&w, "Пациент получил дозу insulin");
    cr_expect_str_eq(clean_charset_broken(&w, &cfg), "script_share");
    scan(&w, "text with \xef\xbf\xbd\xef\xbf\xbd broken bytes");
    cr_expect_str_eq(clean_charset_broken(&w, &cfg), "bad_char_share");
    int64_t lo, hi;
    clean_type_word_limits("text", &lo, &hi);
    cr_expect(lo == 10 && hi == 256, "text: the seeds' 10..256");
    clean_type_word_limits("mcq", &lo, &hi);
    cr_expect(lo == 5 && hi == 256);
    clean_type_word_limits("messages", &lo, &hi);
    cr_expect(lo == 1 && hi == 1024);
    clean_words_free(&w);
    clean_config_free(&cfg);
}

/* ---- config ---- */

static void config_error(const char *name, const char *yaml, const char *want)
{
    char *p = write_tmp(name, yaml);
    clean_config cfg;
    int rc = clean_config_load(p, &cfg);
    cr_expect_eq(rc, DS_ECONFIG, "%s: %s", name, ds_errmsg());
    cr_expect(strstr(ds_errmsg(), want), "%s: '%s' not in: %s", name, want, ds_errmsg());
    clean_config_free(&cfg);
    free(p);
}

Test(config, bad_keys_are_refused_with_file_line_and_key)
{
    config_error("unknown_key.yaml", "dedup:\n  exact: true\n  simlarity: 0.8\n", "unknown_key.yaml:3: clean.dedup.simlarity: unknown key");
    config_error("unknown_section.yaml", "length:\n  min_words: 3\nfilters:\n  x: 1\n",
                 "unknown_section.yaml:3: clean.filters: unknown section");
    config_error("bad_choice.yaml", "pii:\n  email: redact\n", "bad_choice.yaml:2: clean.pii.email: expected one of off|mask|drop");
    config_error("bad_number.yaml", "dedup:\n  similarity: high\n", "bad_number.yaml:2: clean.dedup.similarity: expected a number");
    config_error("range.yaml", "dedup:\n  similarity: 1.5\n", "range.yaml:2: clean.dedup.similarity: '1.5' is out of range");
    config_error("dup.yaml", "pii:\n  email: off\n  email: drop\n", "dup.yaml:3: pii.email: duplicate key (first on line 2)");
    config_error("list.yaml", "length:\n  min_words: [1, 2]\n", "list.yaml:2: clean.length.min_words: expected a single value");
    config_error("flat.yaml", "dedup: 0.9\n", "flat.yaml:1: clean.dedup: expected a mapping");
    config_error("syntax.yaml", "dedup:\n  exact: [\n", "syntax.yaml:");
    config_error("loose.yaml", "dedup:\n  similarity: 0.7\n", "below what a 64-bit SimHash tells apart");
    config_error("minmax.yaml", "length:\n  min_words: 50\n  max_words: 10\n", "min_words (50) is above");
}

Test(config, defaults_values_and_the_clean_wrapper)
{
    clean_config cfg;
    cr_assert_eq(clean_config_defaults(&cfg), DS_OK);
    cr_expect(cfg.exact && !strcmp(cfg.near, "simhash") && cfg.similarity == 0.9 && cfg.shingle == 3);
    cr_expect(cfg.min_words == -1 && cfg.max_words == -1 && cfg.ngram == 13 && cfg.keep_fraction == 0);
    cr_expect_str_eq(cfg.pii[CLEAN_PII_EMAIL], "mask");
    cr_expect_str_eq(cfg.contamination, "warn");
    clean_config_free(&cfg);
    char *p = write_tmp("wrapped.yaml", "clean:\n  dedup: {near: minhash, similarity: 0.8}\n  pii:\n    phone: drop\n"
                                        "  contamination:\n    action: drop\n    eval: [a.jsonl, b.jsonl]\n"
                                        "  length: {min_words: 0, max_words: null}\n  quality: {keep_fraction: 0.8}\n");
    cr_assert_eq(clean_config_load(p, &cfg), DS_OK, "%s", ds_errmsg());
    cr_expect_str_eq(cfg.near, "minhash");
    cr_expect_float_eq(cfg.similarity, 0.8, 1e-12);
    cr_expect_str_eq(cfg.pii[CLEAN_PII_PHONE], "drop");
    cr_expect_str_eq(cfg.contamination, "drop");
    cr_expect(cfg.eval.n == 2 && !strcmp(cfg.eval.items[1], "b.jsonl"));
    cr_expect(cfg.min_words == 0 && cfg.max_words == -1);
    cr_expect_float_eq(cfg.keep_fraction, 0.8, 1e-12);
    clean_config_free(&cfg);
    free(p);
    cr_expect_eq(clean_config_set(&cfg, "dedup.nope", "1", "command line", 0), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "command line: clean.dedup.nope: unknown key (dedup keys: exact, near"), "%s",
              ds_errmsg());
}

/* ---- whole runs ---- */

static clean_report *run(clean_config *cfg, const char *in, const char *out, const char *const *evals, int nevals,
                         const clean_scorer *scorer, int want)
{
    const char *inputs[] = {in};
    clean_job job = {inputs, 1, evals, nevals, out, true, NULL, scorer};
    clean_report *rep = NULL;
    int rc = clean_run(cfg, &job, &rep);
    cr_assert_eq(rc, want, "clean_run: %s", ds_errmsg());
    return rep;
}

static json_t *report_json(const clean_report *rep)
{
    char *s = clean_report_json(rep);
    cr_assert(s);
    json_t *j = json_loads(s, 0, NULL);
    cr_assert(j);
    free(s);
    return j;
}

static json_int_t dropped_by(json_t *rep, const char *rule)
{
    json_t *rules = json_object_get(rep, "rules");
    for (size_t i = 0; i < json_array_size(rules); i++) {
        json_t *x = json_array_get(rules, i);
        if (!strcmp(json_string_value(json_object_get(x, "rule")), rule))
            return json_integer_value(json_object_get(x, "dropped"));
    }
    cr_assert(false, "no rule %s", rule);
    return -1;
}

/* texts 0..n-1 as text records, then the planted copies */
static char *corpus(int n, bool plant)
{
    size_t cap = (size_t)n * 2000 + 10000, len = 0;
    char *s = malloc(cap);
    for (int i = 0; i < n; i++) {
        char *t = text_of(500 + (uint64_t)i, 60 + i % 40);
        len += (size_t)sprintf(s + len, "{\"text\": \"%s\"}\n", t);
        free(t);
    }
    if (plant) {
        char *t = text_of(500 + 3, 60 + 3);                  /* record 4 again: exact, once upper-cased */
        for (char *c = t; *c; c++) *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        len += (size_t)sprintf(s + len, "{\"text\": \"%s!\"}\n", t);
        free(t);
        t = text_of(500 + 7, 60 + 7);                        /* record 8 with one word replaced: near */
        char *e = replace_word(t, 30, "zzedited");
        len += (size_t)sprintf(s + len, "{\"text\": \"%s\"}\n", e);
        free(t);
        free(e);
    }
    s[len] = '\0';
    return s;
}

/* The corpus in a file NAME.jsonl, its output path, and the defaults without a word limit. */
static char *corpus_file(const char *name, int n, bool plant, char **out, clean_config *cfg)
{
    char *text = corpus(n, plant), file[64];
    snprintf(file, sizeof file, "%s.jsonl", name);
    char *in = write_tmp(file, text);
    snprintf(file, sizeof file, "%s.out.jsonl", name);
    *out = tmp_path(file);
    free(text);
    cr_assert_eq(clean_config_defaults(cfg), DS_OK);
    cr_assert_eq(clean_config_set(cfg, "length.max_words", "0", "t", 0), DS_OK);
    return in;
}

Test(run, planted_duplicates_found_and_reported)
{
    char *out;
    clean_config cfg;
    char *in = corpus_file("planted", 40, true, &out, &cfg);
    clean_report *rep = run(&cfg, in, out, NULL, 0, NULL, DS_OK);
    json_t *j = report_json(rep);
    cr_expect_eq(json_integer_value(json_object_get(j, "records_in")), 42);
    cr_expect_eq(json_integer_value(json_object_get(j, "records_out")), 40);
    cr_expect_eq(dropped_by(j, "exact_duplicate"), 1);
    cr_expect_eq(dropped_by(j, "near_duplicate"), 1);
    json_t *ex = json_array_get(json_object_get(json_object_get(j, "duplicates"), "exact"), 0);
    json_t *nr = json_array_get(json_object_get(json_object_get(j, "duplicates"), "near"), 0);
    cr_expect_eq(json_integer_value(json_object_get(ex, "kept")), 4);
    cr_expect_eq(json_integer_value(json_array_get(json_object_get(ex, "dropped"), 0)), 41);
    cr_expect_eq(json_integer_value(json_object_get(nr, "kept")), 8);
    cr_expect_eq(json_integer_value(json_array_get(json_object_get(nr, "dropped"), 0)), 42);
    char *at42 = ds_strdupf("%s:42", in);
    cr_expect_str_eq(json_string_value(json_array_get(json_object_get(nr, "dropped_at"), 0)), at42);
    free(at42);
    char *written;
    size_t len;
    cr_assert_eq(ds_read_file(out, &written, &len), DS_OK);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += written[i] == '\n';
    cr_expect_eq(lines, 40);
    free(written);
    json_decref(j);
    clean_report_free(rep);
    clean_config_free(&cfg);
    free(in);
    free(out);
}

Test(run, minhash_finds_the_planted_near_duplicate)
{
    char *out;
    clean_config cfg;
    char *in = corpus_file("minhash", 40, true, &out, &cfg);
    cr_assert_eq(clean_config_set(&cfg, "dedup.near", "minhash", "t", 0), DS_OK);
    clean_report *rep = run(&cfg, in, out, NULL, 0, NULL, DS_OK);
    json_t *j = report_json(rep);
    cr_expect_eq(dropped_by(j, "exact_duplicate"), 1);
    cr_expect_eq(dropped_by(j, "near_duplicate"), 1);
    json_t *nr = json_array_get(json_object_get(json_object_get(j, "duplicates"), "near"), 0);
    cr_expect_eq(json_integer_value(json_object_get(nr, "kept")), 8);
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(j, "config"), "lsh_bands")), 8);
    json_decref(j);
    clean_report_free(rep);
    clean_config_free(&cfg);
    free(in);
    free(out);
}

Test(run, planted_eval_items_found_as_contamination)
{
    char *ev = write_tmp("eval.jsonl",
        "{\"question\": \"A 45 year old woman presents with fatigue weight gain cold intolerance and dry skin; which "
        "hormone test comes first in the workup?\", \"choices\": [\"TSH\", \"Cortisol\"], \"answer\": 0}\n"
        "{\"question\": \"Which vitamin deficiency causes scurvy in sailors on long voyages?\", \"opa\": \"A\", "
        "\"opb\": \"B\", \"opc\": \"C\", \"opd\": \"D\", \"cop\": 2}\n");
    char *in = write_tmp("train.jsonl",
        "{\"instruction\": \"Answer.\", \"output\": \"Think: a 45 year old woman presents with fatigue, weight gain, "
        "cold intolerance and dry skin; which hormone test comes first? TSH.\"}\n"
        "{\"instruction\": \"Answer.\", \"output\": \"Metformin is first line for type 2 diabetes in most adults.\"}\n"
        "{\"instruction\": \"Which vitamin deficiency causes scurvy in sailors on long voyages? A B C D\", "
        "\"output\": \"Vitamin C.\"}\n");
    char *out = tmp_path("train.out.jsonl");
    clean_config cfg;
    cr_assert_eq(clean_config_defaults(&cfg), DS_OK);
    const char *evals[] = {ev};
    clean_report *rep = run(&cfg, in, out, evals, 1, NULL, DS_OK);
    json_t *j = report_json(rep), *c = json_object_get(j, "contamination");
    cr_expect_eq(json_integer_value(json_object_get(c, "records")), 2, "the 13-gram and the short item");
    cr_expect_eq(json_integer_value(json_object_get(c, "eval_items")), 2);
    cr_expect_eq(json_integer_value(json_object_get(c, "eval_items_hit")), 2);
    json_t *e0 = json_array_get(json_object_get(c, "examples"), 0);
    cr_expect_eq(json_integer_value(json_object_get(e0, "record")), 1);
    cr_expect(strstr(json_string_value(json_object_get(e0, "ngram")), "woman presents with fatigue"), "%s",
              json_string_value(json_object_get(e0, "ngram")));
    cr_expect_eq(json_integer_value(json_object_get(j, "records_out")), 3, "warn keeps them");
    json_decref(j);
    clean_report_free(rep);
    cr_assert_eq(clean_config_set(&cfg, "contamination.action", "drop", "t", 0), DS_OK);
    rep = run(&cfg, in, out, evals, 1, NULL, DS_OK);
    j = report_json(rep);
    cr_expect_eq(json_integer_value(json_object_get(j, "records_out")), 1, "drop removes them");
    cr_expect_eq(dropped_by(j, "contamination"), 2);
    json_decref(j);
    clean_report_free(rep);
    clean_config_free(&cfg);
    free(ev);
    free(in);
    free(out);
}

/* A fake language model: the mean NLL is the share of words starting with 'w' (made-up words). */
static int fake_score_one(void *ctx, const char *text, size_t len, double *nll)
{
    int *calls = ctx, words = 0, odd = 0;
    (*calls)++;
    for (size_t i = 0; i < len; i++)
        if (i == 0 || text[i - 1] == ' ') {
            words++;
            odd += text[i] == 'w';
        }
    *nll = words ? (double)odd / words : 0;
    return DS_OK;
}

/* Batches of at most 3 texts, each a NUL-terminated copy. */
static int fake_score(void *ctx, int n, const char *const *texts, const size_t *lens, double *nll)
{
    cr_assert(n >= 1 && n <= 3, "batch of %d", n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(texts[i][lens[i]], '\0');
        fake_score_one(ctx, texts[i], lens[i], &nll[i]);
    }
    return DS_OK;
}

Test(run, quality_keeps_the_best_fraction_by_the_scorer)
{
    char *out, *text = corpus(20, false);
    clean_config cfg;
    char *in = corpus_file("scored", 20, false, &out, &cfg);
    cr_assert_eq(clean_config_set(&cfg, "quality.keep_fraction", "0.25", "t", 0), DS_OK);
    clean_report *rep = run(&cfg, in, out, NULL, 0, NULL, DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "keep_fraction needs a language-model scorer"), "%s", ds_errmsg());
    cr_expect_null(rep);
    int calls = 0;
    clean_scorer sc = {fake_score, &calls, "fake", 3};
    rep = run(&cfg, in, out, NULL, 0, &sc, DS_OK);
    cr_expect_eq(calls, 20);
    json_t *j = report_json(rep);
    cr_expect_eq(json_integer_value(json_object_get(j, "records_out")), 5);
    cr_expect_eq(dropped_by(j, "quality"), 15);
    /* the kept five are the five lowest scores */
    double scores[20];
    const char *p = text;
    for (int i = 0; i < 20; i++) {
        const char *b = strchr(p, ':') + 3, *e = strchr(b, '"');
        fake_score_one(&calls, b, (size_t)(e - b), &scores[i]);
        p = strchr(e, '\n') + 1;
    }
    for (int i = 0; i < 20; i++) {
        int better = 0;
        for (int k = 0; k < 20; k++) better += scores[k] < scores[i] || (scores[k] == scores[i] && k < i);
        cr_expect_eq(rep->rec[i].fate == RULE_kept, better < 5, "record %d (score %g, %d better)", i + 1, scores[i],
                     better);
    }
    json_decref(j);
    clean_report_free(rep);
    clean_config_free(&cfg);
    free(text);
    free(in);
    free(out);
}

Test(run, an_existing_output_is_refused_without_force)
{
    char *in = write_tmp("small.jsonl", "{\"text\": \"one two three four five six seven eight nine ten eleven\"}\n");
    char *out = write_tmp("exists.jsonl", "keep me\n");
    clean_config cfg;
    cr_assert_eq(clean_config_defaults(&cfg), DS_OK);
    const char *inputs[] = {in};
    clean_job job = {inputs, 1, NULL, 0, out, false, NULL, NULL};
    clean_report *rep;
    cr_expect_eq(clean_run(&cfg, &job, &rep), DS_EEXISTS);
    cr_expect(strstr(ds_errmsg(), "exists; pass --force to replace it"), "%s", ds_errmsg());
    char *kept;
    size_t len;
    cr_assert_eq(ds_read_file(out, &kept, &len), DS_OK);
    cr_expect_str_eq(kept, "keep me\n");
    free(kept);
    clean_report_free(rep);
    clean_config_free(&cfg);
    free(in);
    free(out);
}
