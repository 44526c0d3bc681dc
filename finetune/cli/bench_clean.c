/* finetune/cli/bench_clean.c - `ds-ft bench clean [--mb N] [--keep]`.
 *
 * Writes a deterministic synthetic corpus of N MB (default 1024) to a
 * temporary file: alpaca records (an instruction of 8-30 words and an output
 * of 20-220) drawn from a vocabulary of 4096 made-up words and common
 * English ones, with 5% exact duplicates (an earlier record, upper-cased and
 * re-punctuated) and 5% near duplicates (an earlier record with one word of
 * its output replaced) planted. Then runs the default cleaning on it (PII,
 * length, repetition, charset, exact and near duplicates; no output file)
 * on one thread, and reports MB per CPU second, what it found against what
 * was planted, and the peak resident memory. A pass that only reads and
 * parses the records (data/jsonl.h) is timed on its own first, to split
 * the time between the JSON reader and the rules.
 */
#include "bench.h"
#include "commands.h"

#include "core/files.h"
#include "core/rng.h"
#include "core/status.h"
#include "data/clean/clean.h"
#include "data/jsonl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char *const COMMON[] = {"the", "patient", "was", "of", "and", "with", "a", "in", "to", "for", "is",
                                     "dose", "mg", "daily", "blood", "pressure", "treatment", "after", "were", "by"};

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Word w of record r's part `part` (0: instruction, 1: output), from (seed, r). */
static const char *word(char *buf, uint64_t r, int part, int w, char vocab[][12])
{
    uint64_t h = ds_hash3(0xbe7c, r * 2 + (uint64_t)part, (uint64_t)w);
    if ((h & 3) == 0) return COMMON[(h >> 8) % 20];
    strcpy(buf, vocab[(h >> 8) & 4095]);
    return buf;
}

typedef struct {
    FILE *f;
    size_t bytes;
} sink;

static void emit(sink *s, const char *t) { s->bytes += fwrite(t, 1, strlen(t), s->f); }

/* One record: the words of record `src`, optionally upper-cased (an exact
 * duplicate once normalised) or with output word `swap` replaced. */
static void record(sink *s, uint64_t src, bool upper, int swap, char vocab[][12])
{
    int ni = 8 + (int)(ds_hash3(0xbe7c, src, 1u << 20) % 23), no = 20 + (int)(ds_hash3(0xbe7c, src, 1u << 21) % 201);
    char buf[16];
    for (int part = 0; part < 2; part++) {
        emit(s, part ? "\", \"output\": \"" : "{\"instruction\": \"");
        int n = part ? no : ni;
        for (int w = 0; w < n; w++) {
            const char *x = part && w == swap ? "replaced" : word(buf, src, part, w, vocab);
            if (upper) {
                char up[16];
                size_t k = 0;
                for (; x[k] && k < 15; k++) up[k] = (char)(x[k] >= 'a' && x[k] <= 'z' ? x[k] - 32 : x[k]);
                up[k] = '\0';
                emit(s, up);
            } else {
                emit(s, x);
            }
            emit(s, w + 1 < n ? (w % 11 == 10 ? (upper ? "; " : ". ") : " ") : (part ? "." : "?"));
        }
    }
    emit(s, "\"}\n");
}

static int make_corpus(const char *path, size_t bytes, size_t *records, size_t *exact, size_t *near)
{
    static char vocab[4096][12];
    static const char *const syl[] = {"ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "ve", "zo", "bi", "du",
                                      "fa", "ge", "hu", "jo"};
    for (int v = 0; v < 4096; v++)
        snprintf(vocab[v], sizeof vocab[v], "%s%s%s", syl[v & 15], syl[(v >> 4) & 15], syl[(v >> 8) & 15]);
    sink s = {fopen(path, "wb"), 0};
    if (!s.f) return ds_open_error(path, "write");
    *records = *exact = *near = 0;
    uint64_t fresh = 0;
    while (s.bytes < bytes) {
        uint64_t pick = ds_hash3(0xbe7c, 7, *records) % 100;
        if (pick < 5 && fresh > 0) {            /* exact duplicate of an earlier record */
            record(&s, ds_hash3(0xbe7c, 8, *records) % fresh, true, -1, vocab);
            (*exact)++;
        } else if (pick < 10 && fresh > 0) {    /* near duplicate: one output word replaced */
            uint64_t src = ds_hash3(0xbe7c, 9, *records) % fresh;
            record(&s, src, false, 10, vocab);
            (*near)++;
        } else {
            record(&s, fresh++, false, -1, vocab);
        }
        (*records)++;
    }
    int rc = ferror(s.f) ? ds_fail(DS_EIO, "%s: cannot write the corpus", path) : DS_OK;
    if (fclose(s.f) && !rc) rc = ds_fail(DS_EIO, "%s: cannot write the corpus", path);
    return rc;
}

typedef struct {
    double mb;
    bool keep;
} clean_args;

static const cli_opt BENCH_CLEAN_OPTS[] = {
    {"--mb", ARG_NUM, offsetof(clean_args, mb), "N", "1024", 0.01, 65536, NULL, false, "size of the synthetic corpus"},
    {"--keep", ARG_FLAG, offsetof(clean_args, keep), NULL, "off", 0, 0, NULL, false,
     "keep the corpus file (its path is printed)"},
    CLI_END,
};

const cli_spec BENCH_CLEAN_SPEC = {"bench clean", "", 0, 0, NULL,
                                   "data cleaning (dedup and filters) on a synthetic corpus: MB/s per core, memory",
                                   BENCH_CLEAN_OPTS, NULL};

/* CPU seconds to read and parse every record of path, nothing else. */
static int parse_only(const char *path, double *cpu)
{
    jsonl_reader *r;
    int rc = jsonl_open(path, 0, &r);
    double c0 = cpu_now();
    for (json_t *obj; !rc;) {
        int line;
        rc = jsonl_next(r, &obj, &line);
        if (!rc && !obj) break;
        json_decref(obj);
    }
    *cpu = cpu_now() - c0;
    if (r) jsonl_close(r);
    return rc;
}

int bench_clean(int argc, char **argv)
{
    clean_args a;
    cli_parsed p;
    int rc = cli_parse(&BENCH_CLEAN_SPEC, argc, argv, &a, &p);
    cli_parsed_free(&p);
    if (rc) return rc;
    double mb = a.mb;
    bool keep = a.keep;
    const char *tmp = getenv("TMPDIR");
    char *path = ds_strdupf("%s/ds-ft-bench-clean-%d.jsonl", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    size_t records = 0, exact = 0, near = 0;
    if ((rc = make_corpus(path, (size_t)(mb * 1048576), &records, &exact, &near))) goto done;
    double bytes = (double)(mb * 1048576);

    double c0, parse = 0;
    if ((rc = parse_only(path, &parse))) goto done;
    clean_config cfg;
    if ((rc = clean_config_defaults(&cfg))) goto done;
    const char *inputs[] = {path};
    clean_job job = {inputs, 1, NULL, 0, NULL, false, NULL, NULL};
    clean_report *rep = NULL;
    double w0 = wall_now();
    c0 = cpu_now();
    rc = clean_run(&cfg, &job, &rep);
    double cpu = cpu_now() - c0, wall = wall_now() - w0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (!rc) {
        char *json = clean_report_json(rep);
        json_t *j = json ? json_loads(json, 0, NULL) : NULL;
        size_t found[2] = {0, 0};
        for (size_t i = 0; j && i < json_array_size(json_object_get(j, "rules")); i++) {
            json_t *x = json_array_get(json_object_get(j, "rules"), i);
            const char *name = json_string_value(json_object_get(x, "rule"));
            if (!strcmp(name, "exact_duplicate")) found[0] = (size_t)json_integer_value(json_object_get(x, "dropped"));
            if (!strcmp(name, "near_duplicate")) found[1] = (size_t)json_integer_value(json_object_get(x, "dropped"));
        }
        double mbs = bytes / 1048576.0;
        printf("corpus      %.1f MB, %zu alpaca records (%zu exact and %zu near duplicates planted)%s%s\n", mbs,
               records, exact, near, keep ? " at " : "", keep ? path : "");
        printf("clean       %.2f s of CPU (%.2f s wall), one thread: %.1f MB/s per core\n", cpu, wall, mbs / cpu);
        printf("            of which reading the JSON %.2f s, %.1f MB/s (timed alone); dedup and filters %.2f s, "
               "%.1f MB/s\n", parse, mbs / parse, cpu - parse, mbs / (cpu - parse));
        printf("found       %zu exact, %zu near duplicates; %zu records kept\n", found[0], found[1],
               (size_t)json_integer_value(json_object_get(j, "records_out")));
        printf("memory      peak resident %.1f MB (%.0f bytes per record)\n", (double)ru.ru_maxrss / 1024.0,
               (double)ru.ru_maxrss * 1024.0 / (double)records);
        json_decref(j);
        free(json);
    }
    clean_report_free(rep);
    clean_config_free(&cfg);
done:
    if (!keep) unlink(path);
    free(path);
    return rc;
}
