/* finetune/cli/bench_tokenize.c - `ds-ft bench tokenize --tokenizer DIR [--mb N]`.
 *
 * Encodes N MB (default 4) of deterministic mixed text on one thread and
 * reports MB/s and tokens/s. The text is generated in memory from a fixed
 * seed: English prose, code, numbers, runs of whitespace, accented Latin,
 * CJK and emoji, cut into records of a few KB as a dataset would be.
 */
#include "bench.h"
#include "commands.h"

#include "core/buf.h"
#include "core/clock.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/status.h"
#include "data/tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const PROSE[] = {
    "the", "patient", "was", "given", "a", "dose", "of", "and", "in", "to", "with", "treatment", "for", "blood",
    "pressure", "heart", "rate", "study", "results", "showed", "that", "significant", "improvement", "after",
    "weeks", "however", "some", "adverse", "effects", "were", "reported", "including", "nausea", "headache",
    "The", "In", "This", "clinical", "trial", "randomized", "controlled", "diagnosis", "chronic", "acute",
    "is", "are", "be", "not", "it", "on", "as", "by", "an", "or", "which", "their", "model", "training",
};
static const char *const CODE[] = {
    "def forward(self, x):\n    return self.proj(x) * 2\n",
    "for (int i = 0; i < n; ++i) { y[i] += a * x[i]; }\n",
    "if err != nil {\n\treturn nil, fmt.Errorf(\"read %s: %w\", path, err)\n}\n",
    "const result = items.filter((it) => it.score > 0.5).map((it) => it.id);\n",
    "SELECT name, COUNT(*) FROM users WHERE created_at > '2024-01-01' GROUP BY name;\n",
    "    self.weight = nn.Parameter(torch.zeros(out_features, in_features))\n",
};
static const char *const ACCENTED[] = {"Ünïcödé", "àccents", "ñandú", "garçon", "Straße", "crème", "brûlée",
                                       "Ångström", "naïve", "São", "Paulo", "Zürich", "élève", "déjà", "vu"};
static const char *const CJK[] = {"患者", "男性", "主诉", "胸痛", "高血压", "应当", "低盐饮食", "并定期监测", "血压",
                                  "日本語", "のテキスト", "も含まれています", "カタカナ", "とひらがな", "。", "，",
                                  "中英混合", "测试", "文本", "模型", "训练"};
static const char *const EMOJI[] = {"😀", "🎉", "👍🏽", "❤️", "🚀", "✅", "🤖", "👨‍👩‍👧"};

#define PICK(r, a) (a)[ds_rng_below((r), sizeof(a) / sizeof *(a))]

/* s is evaluated once (it may draw random numbers), and not at all after a failure */
#define PUTS(s) (rc = rc ? rc : ds_buf_puts(&buf, (s)))

/* About `bytes` (at least 1) of mixed text into *text; record boundaries go
 * to ends[]. @return DS_OK or DS_ENOMEM (nothing to free then). */
static int make_text(size_t bytes, char **text, size_t **ends, size_t *nrec)
{
    ds_rng r = ds_rng_make(1234, DS_STREAM_BENCH);
    ds_buf buf = {0};
    char tmp[64];
    size_t ncap = 0;
    int rc = DS_OK;
    *text = NULL;
    *ends = NULL;
    *nrec = 0;
    while (!rc && buf.len < bytes) {
        size_t rec_end = buf.len + 1024 + ds_rng_below(&r, 4096);
        while (!rc && buf.len < rec_end) {
            uint64_t kind = ds_rng_below(&r, 100);
            if (kind < 55) {   /* prose, with a new word now and then */
                if (ds_rng_below(&r, 10) == 0) {
                    size_t len = 3 + ds_rng_below(&r, 9);
                    for (size_t i = 0; i < len; i++) tmp[i] = (char)('a' + ds_rng_below(&r, 26));
                    tmp[len] = '\0';
                    PUTS(tmp);
                } else
                    PUTS(PICK(&r, PROSE));
                PUTS(ds_rng_below(&r, 12) ? " " : ds_rng_below(&r, 2) ? ". " : ", ");
            } else if (kind < 67) {
                PUTS(PICK(&r, CODE));
            } else if (kind < 75) {
                snprintf(tmp, sizeof tmp, "%llu.%02llu ", (unsigned long long)ds_rng_below(&r, 100000),
                         (unsigned long long)ds_rng_below(&r, 100));
                PUTS(tmp);
            } else if (kind < 80) {
                size_t len = 1 + ds_rng_below(&r, 12);
                for (size_t i = 0; i < len; i++) PUTS(ds_rng_below(&r, 4) ? " " : ds_rng_below(&r, 2) ? "\n" : "\t");
            } else if (kind < 88) {
                PUTS(PICK(&r, ACCENTED));
                PUTS(" ");
            } else if (kind < 97) {
                size_t len = 1 + ds_rng_below(&r, 6);
                for (size_t i = 0; i < len; i++) PUTS(PICK(&r, CJK));
            } else {
                PUTS(PICK(&r, EMOJI));
                PUTS(" ");
            }
        }
        if (!rc) rc = ds_grow(ends, &ncap, *nrec + 1, sizeof **ends);
        if (!rc) (*ends)[(*nrec)++] = buf.len;
    }
    if (!rc && !(*text = ds_buf_take(&buf))) rc = DS_ENOMEM;
    if (rc) {
        ds_buf_free(&buf);
        free(*ends);
        *ends = NULL;
    }
    return rc;
}

/* CPU time of this thread: on a busy machine the wall clock also counts
 * time spent waiting for a core. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
    const char *tokenizer;
    double mb;
} tokenize_args;

static const cli_opt BENCH_TOKENIZE_OPTS[] = {
    CLI_TOKENIZER(tokenize_args, tokenizer, true, NULL,
                  "the tokenizer folder (tokenizer.json), or a Hugging Face model id in the local Hub cache"),
    {"--mb", ARG_NUM, offsetof(tokenize_args, mb), "N", "4", 1e-6, 4096, NULL, false, "megabytes of text to encode"},
    CLI_END,
};

const cli_spec BENCH_TOKENIZE_SPEC = {"bench tokenize", "", 0, 0, NULL,
                                      "single-thread encoding speed on generated mixed text: MB/s, tokens/s",
                                      BENCH_TOKENIZE_OPTS, NULL};

int bench_tokenize(int argc, char **argv)
{
    tokenize_args a;
    cli_parsed p;
    int rc = cli_parse(&BENCH_TOKENIZE_SPEC, argc, argv, &a, &p);
    if (rc) {
        cli_parsed_free(&p);
        return rc;
    }
    const char *dir = a.tokenizer;
    double mb = a.mb;
    tokenizer *t;
    double t0 = ds_now();
    if ((rc = tok_load(dir, &t))) {
        cli_parsed_free(&p);
        return rc;
    }
    double load_s = ds_now() - t0;
    size_t *ends, nrec, bytes = (size_t)(mb * 1024 * 1024);
    char *text;
    if ((rc = make_text(bytes ? bytes : 1, &text, &ends, &nrec))) {
        tok_free(t);
        cli_parsed_free(&p);
        return rc;
    }
    size_t total = ends[nrec - 1];

    tok_ids ids = {0};
    size_t ntok = 0, start = 0;
    t0 = ds_now();
    double c0 = cpu_now();
    for (size_t i = 0; i < nrec && !rc; i++) {
        ids.n = 0;
        rc = tok_encode(t, text + start, ends[i] - start, false, &ids);
        ntok += ids.n;
        start = ends[i];
    }
    double s = ds_now() - t0, cpu = cpu_now() - c0;
    if (!rc) {
        double mbs = (double)total / (1024.0 * 1024.0);
        printf("tokenizer   %s (loaded in %.2f s, %d tokens)\n", dir, load_s, tok_vocab_size(t));
        printf("text        %.2f MB in %zu records (prose, code, numbers, whitespace, accents, CJK, emoji)\n", mbs,
               nrec);
        printf("encoded     %zu tokens in %.3f s (%.3f s of CPU), one thread, %.2f bytes/token\n", ntok, s, cpu,
               (double)total / (double)(ntok ? ntok : 1));
        printf("throughput  %.2f MB/s, %.0f tokens/s (per CPU second: %.2f MB/s)\n", mbs / s, (double)ntok / s,
               mbs / cpu);
    }
    tok_ids_free(&ids);
    free(text);
    free(ends);
    tok_free(t);
    cli_parsed_free(&p);
    return rc;
}
