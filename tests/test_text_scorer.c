/* tests/test_text_scorer.c - the language model's score of texts
 * (finetune/run/score.c) on models/tiny on the CPU: each text's mean
 * negative log-likelihood is what eval_loss (the held-out loss, checked
 * against transformers elsewhere) gives for the same tokens; a text scores
 * the same alone and batched with longer and shorter ones (padding does not
 * leak); a long text is scored on its first max_T tokens; a text with
 * nothing to predict gets log(vocabulary size). (That the score ranks
 * records - gibberish worst - is tests/cli/clean_recipe.sh, on a model
 * trained there.) */
#include "testutil.h"

#include "core/status.h"
#include "finetune/run/run.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static ds_run g_run;

static void open_tiny(void)
{
    char *dir = tu_source_path("models/tiny");
    ds_run_opts o = {.device = BE_CPU, .model_dir = dir};
    cr_assert_eq(ds_run_open(&o, &g_run), DS_OK, "%s", ds_errmsg());
    free(dir);
}

static void close_tiny(void) { ds_run_close(&g_run); }

/* eval_loss over one example: the text's tokens (as the scorer encodes them,
 * the first `max_T`), every token after the first trained. */
static double eval_loss_of(const char *text, int max_T)
{
    tok_ids ids = {0};
    cr_assert_eq(tok_encode(g_run.tok, text, strlen(text), true, &ids), DS_OK);
    int n = (int)ids.n < max_T ? (int)ids.n : max_T;
    uint8_t *train = calloc((size_t)n, 1);
    memset(train + 1, 1, (size_t)n - 1);
    sft_example ex = {ids.ids, train, n};
    dataset d = {.kind = EX_SFT, .n = 1, .sft = &ex};
    engine *e;
    engine_opts eo = {.max_B = 1, .max_T = max_T, .training = false};
    cr_assert_eq(engine_create(g_run.be, g_run.model, &eo, &e), DS_OK, "%s", ds_errmsg());
    eval_result res;
    cr_assert_eq(eval_loss(e, &d, false, -1, 1, &res), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(res.tokens, n - 1);
    double loss = res.loss;
    eval_result_free(&res);
    engine_free(e);
    free(train);
    tok_ids_free(&ids);
    return loss;
}

static const char *const TEXTS[] = {
    "The patient was given 500 mg of metformin twice daily.",
    "Hi.",
    "Question: Which organism causes Lacurt disease?\nAnswer: Dreadiort bozouxii, a gram-negative rod seen in "
    "people who keep birds; it is treated for two weeks.",
    "qXjZ Zjj&V27zK 6X7 q73V%85X1",
};
#define NTEXTS 4

static void score_all(text_scorer *s, int n, const char *const *texts, double *nll)
{
    size_t lens[NTEXTS];
    for (int i = 0; i < n; i++) lens[i] = strlen(texts[i]);
    cr_assert_eq(text_scorer_score(s, n, texts, lens, nll), DS_OK, "%s", ds_errmsg());
}

Test(text_scorer, is_the_held_out_loss_of_the_same_tokens, .init = open_tiny, .fini = close_tiny)
{
    text_scorer *s;
    cr_assert_eq(text_scorer_open(g_run.be, g_run.model, g_run.tok, 128, NTEXTS, &s), DS_OK, "%s", ds_errmsg());
    double batched[NTEXTS], alone[NTEXTS];
    score_all(s, NTEXTS, TEXTS, batched);
    for (int i = 0; i < NTEXTS; i++) {
        score_all(s, 1, &TEXTS[i], &alone[i]);
        double ref = eval_loss_of(TEXTS[i], 128);
        cr_expect(fabs(alone[i] - ref) <= 1e-5 * fmax(1, ref), "text %d: scorer %.7f, eval_loss %.7f", i, alone[i], ref);
        cr_expect(fabs(batched[i] - alone[i]) <= 1e-5 * fmax(1, alone[i]), "text %d: batched %.7f, alone %.7f", i,
                  batched[i], alone[i]);
        cr_expect(batched[i] > 0 && batched[i] < 3 * log(1024.0), "text %d: %g", i, batched[i]);
    }
    /* the same batch again: every text encoded afresh */
    double again[NTEXTS];
    score_all(s, NTEXTS, TEXTS, again);
    for (int i = 0; i < NTEXTS; i++) cr_expect_eq(again[i], batched[i], "text %d scored again", i);
    text_scorer_free(s);
}

Test(text_scorer, a_long_text_is_scored_on_its_first_max_T_tokens, .init = open_tiny, .fini = close_tiny)
{
    text_scorer *s;
    cr_assert_eq(text_scorer_open(g_run.be, g_run.model, g_run.tok, 12, 2, &s), DS_OK, "%s", ds_errmsg());
    double nll;
    score_all(s, 1, &TEXTS[2], &nll);
    double ref = eval_loss_of(TEXTS[2], 12);
    cr_expect(fabs(nll - ref) <= 1e-5 * fmax(1, ref), "scorer %.7f, eval_loss of the first 12 tokens %.7f", nll, ref);
    text_scorer_free(s);
}

Test(text_scorer, nothing_to_predict_scores_a_uniform_guess, .init = open_tiny, .fini = close_tiny)
{
    text_scorer *s;
    cr_assert_eq(text_scorer_open(g_run.be, g_run.model, g_run.tok, 16, 2, &s), DS_OK, "%s", ds_errmsg());
    tok_ids ids = {0};
    cr_assert_eq(tok_encode(g_run.tok, "", 0, true, &ids), DS_OK);
    cr_assert_leq(ids.n, 1, "an empty text has at most the BOS");
    tok_ids_free(&ids);
    const char *texts[] = {"", TEXTS[1]};
    double nll[2];
    score_all(s, 2, texts, nll);
    cr_expect_float_eq(nll[0], log(1024.0), 1e-12);
    cr_expect(fabs(nll[1] - eval_loss_of(TEXTS[1], 16)) < 1e-5, "the other text of the batch is scored as alone");
    cr_expect_eq(text_scorer_score(s, 3, texts, NULL, nll), DS_EINTERNAL, "more texts than the batch");
    text_scorer_free(s);
}
