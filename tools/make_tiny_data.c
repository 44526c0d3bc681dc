/* tools/make_tiny_data.c - the small synthetic medical dataset that
 * recipes/tiny.yaml and recipes/dpo.yaml use, generated deterministically:
 *
 *   make_tiny_data OUT_DIR      (the shipped data: data/tiny)
 *
 * It invents NCOND conditions, each with a first-line drug and a causative
 * organism (fictional names, so that nothing here is a medical claim), and
 * writes:
 *   train.jsonl  prompt_completion: every fact, asked in two phrasings
 *   eval.jsonl   mcq: each fact asked once with 4 choices (cloze format: the
 *                choice text is scored after "Answer:")
 *   dpo.jsonl    preference: the right answer chosen over a wrong one
 * The facts are stated in training and asked at evaluation, so a model that
 * learns from the training file answers better than chance (1 in 4). */
#include "core/files.h"
#include "core/rng.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NCOND = 32, NCHOICES = 4, SEED = 7 };

static const char *const ONSET[] = {"b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br",
                                    "cl", "dr", "gr", "pl", "st", "tr"};
static const char *const VOWEL[] = {"a", "e", "i", "o", "u", "ai", "ea", "io", "ou"};
static const char *const CODA[] = {"", "n", "r", "s", "l", "x", "m", "nd", "rt"};
static const char *const KIND[] = {"syndrome", "disease", "fever", "palsy"};
static const char *const DRUG_END[] = {"mab", "vir", "cillin", "zole", "pril", "statin", "olol", "tide"};

/* A pronounceable made-up word of n syllables. */
static void word(ds_rng *r, int n, char *out, size_t cap)
{
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        strncat(out, ONSET[ds_rng_below(r, sizeof ONSET / sizeof *ONSET)], cap - strlen(out) - 1);
        strncat(out, VOWEL[ds_rng_below(r, sizeof VOWEL / sizeof *VOWEL)], cap - strlen(out) - 1);
        if (i == n - 1) strncat(out, CODA[ds_rng_below(r, sizeof CODA / sizeof *CODA)], cap - strlen(out) - 1);
    }
}

typedef struct {
    char cond[64], drug[64], organism[64];
} fact;

static bool taken(const fact *f, int n, const char *s, size_t field)
{
    for (int i = 0; i < n; i++)
        if (!strcmp((const char *)&f[i] + field, s)) return true;
    return false;
}

static void make_facts(fact *f, ds_rng *r)
{
    for (int i = 0; i < NCOND; i++) {
        char w[48];
        do {
            word(r, 2, w, sizeof w);
            w[0] = (char)(w[0] - 'a' + 'A');
            snprintf(f[i].cond, sizeof f[i].cond, "%s %s", w, KIND[ds_rng_below(r, 4)]);
        } while (taken(f, i, f[i].cond, offsetof(fact, cond)));
        do {
            word(r, 2, w, sizeof w);
            snprintf(f[i].drug, sizeof f[i].drug, "%s%s", w, DRUG_END[ds_rng_below(r, 8)]);
        } while (taken(f, i, f[i].drug, offsetof(fact, drug)));
        do {
            char sp[32];
            word(r, 2, w, sizeof w);
            word(r, 2, sp, sizeof sp);
            w[0] = (char)(w[0] - 'a' + 'A');
            snprintf(f[i].organism, sizeof f[i].organism, "%s %sii", w, sp);
        } while (taken(f, i, f[i].organism, offsetof(fact, organism)));
    }
}

/* The two relations the data asks about: question phrasings and the answer field. */
typedef struct {
    const char *ask[2];       /* training phrasings; ask[0] is also the evaluation question */
    size_t field;             /* offsetof(fact, drug / organism) */
} relation;

static const relation RELATIONS[] = {
    {{"What is the first-line treatment for %s?", "Which drug should a patient with %s receive first?"},
     offsetof(fact, drug)},
    {{"Which organism causes %s?", "What is the causative agent of %s?"}, offsetof(fact, organism)},
};

static const char *answer(const fact *f, const relation *rel) { return (const char *)f + rel->field; }

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_tiny_data OUT_DIR\n");
        return DS_EUSAGE;
    }
    int rc = ds_mkdirs(argv[1]);
    ds_rng r = ds_rng_make(SEED, 0);
    fact facts[NCOND];
    make_facts(facts, &r);
    ds_out train, eval, dpo;
    char *p1 = ds_path_join(argv[1], "train.jsonl"), *p2 = ds_path_join(argv[1], "eval.jsonl"),
         *p3 = ds_path_join(argv[1], "dpo.jsonl");
    if (!rc) rc = ds_out_open(&train, p1);
    if (!rc) rc = ds_out_open(&eval, p2);
    if (!rc) rc = ds_out_open(&dpo, p3);
    for (int i = 0; !rc && i < NCOND; i++)
        for (size_t k = 0; k < sizeof RELATIONS / sizeof *RELATIONS; k++) {
            const relation *rel = &RELATIONS[k];
            char q[256];
            for (int p = 0; p < 2; p++) {
                snprintf(q, sizeof q, rel->ask[p], facts[i].cond);
                ds_out_printf(&train, "{\"prompt\": \"Question: %s\\nAnswer:\", \"completion\": \" %s\"}\n", q,
                              answer(&facts[i], rel));
            }
            /* Evaluation: the right answer among NCHOICES, at a random place. */
            snprintf(q, sizeof q, rel->ask[0], facts[i].cond);
            int pick[NCHOICES], right = (int)ds_rng_below(&r, NCHOICES);
            for (int c = 0; c < NCHOICES; c++) {
                if (c == right) { pick[c] = i; continue; }
                bool dup;
                do {
                    pick[c] = (int)ds_rng_below(&r, NCOND);
                    dup = pick[c] == i;
                    for (int d = 0; d < c; d++) dup |= pick[d] == pick[c];
                } while (dup);
            }
            ds_out_printf(&eval, "{\"question\": \"%s\", \"choices\": [", q);
            for (int c = 0; c < NCHOICES; c++)
                ds_out_printf(&eval, "%s\"%s\"", c ? ", " : "", answer(&facts[pick[c]], rel));
            ds_out_printf(&eval, "], \"answer\": %d}\n", right);
            int wrong = pick[(right + 1) % NCHOICES];
            ds_out_printf(&dpo, "{\"prompt\": \"Question: %s\\nAnswer:\", \"chosen\": \" %s\", \"rejected\": \" %s\"}\n",
                          q, answer(&facts[i], rel), answer(&facts[wrong], rel));
        }
    if (!rc) rc = ds_out_commit(&train);
    if (!rc) rc = ds_out_commit(&eval);
    if (!rc) rc = ds_out_commit(&dpo);
    if (rc) fprintf(stderr, "make_tiny_data: %s\n", ds_errmsg());
    free(p1); free(p2); free(p3);
    return rc;
}
