/* data/dataset/answer_base.c - what a file's integer answers count from.
 *
 * MedMCQA numbers its right answer (`cop`) two ways: the Hugging Face dataset
 * (openlifescienceai/medmcqa) 0..3, the original JSON release 1..4. A cop of
 * 0 can only be the first, a 4 only the second; a file holding 1..3 alone
 * could be either, and guessing would train on the wrong answers without a
 * sign. So each mcq file is read once before it is loaded (a stream of
 * records, bounded memory: only the lines of the first 0 and the first 4 are
 * kept), the numbering it shows is said, and a file that shows neither is
 * refused unless its dataset entry says `answer_base`. Other integer answers
 * (`answer`, `label`, `answer_idx`) count from 0 unless answer_base says 1.
 */
#include "dataset_internal.h"
#include "data/jsonl.h"

#include "core/status.h"

#include <stdio.h>
#include <string.h>

/* "recipe.yaml:12: dataset PATH" or "PATH", for the messages. */
static void where(const data_source *s, char *buf, size_t n)
{
    if (s->recipe && s->line > 0) snprintf(buf, n, "%s:%d: dataset %s", s->recipe, s->line, s->path);
    else snprintf(buf, n, "%s", s->path);
}

static void say(const data_options *opt, const char *fmt, const char *a, long b)
{
    if (!opt->say) return;
    char line[1024];
    snprintf(line, sizeof line, fmt, a, b);
    opt->say(opt->say_ctx, line);
}

/* The lines of the first cop 0 and the first cop 4 of a file (0: none). */
static int scan_cops(const data_source *s, long *zero, long *four, long *counted)
{
    jsonl_reader *r;
    int rc = jsonl_open(s->path, 0, &r);
    if (rc) return rc;
    *zero = *four = *counted = 0;
    for (;;) {
        json_t *obj;
        int line;
        rc = jsonl_next(r, &obj, &line);
        if (rc == DS_ENOMEM) break;   /* not a bad line: a numbering missed here would go unsaid */
        if (rc) {   /* a bad line is the loading pass's to report, where it can say how */
            ds_clear_error();
            rc = DS_OK;
            if (jsonl_can_continue(r)) continue;
            break;
        }
        if (!obj) break;
        const json_t *cop = json_object_get(obj, "opa") ? json_object_get(obj, "cop") : NULL;
        if (json_is_integer(cop)) {
            json_int_t v = json_integer_value(cop);
            if (v == 0 && !*zero) *zero = line;
            if (v == 4 && !*four) *four = line;
            (*counted)++;
        }
        json_decref(obj);
    }
    jsonl_close(r);
    return rc;
}

int ds_answer_base(const data_source *s, const data_options *opt, int *base)
{
    char at[1024];
    where(s, at, sizeof at);
    const char *set = s->answer_base;
    if (set && (!strcmp(set, "0") || !strcmp(set, "1"))) {
        *base = set[0] - '0';
        say(opt, "%s: integer answers count from %ld (answer_base)", s->path, (long)*base);
        return DS_OK;
    }
    if (set && *set && strcmp(set, "auto")) return ds_fail(DS_ECONFIG, "%s: answer_base '%s' is not auto, 0 or 1", at, set);
    *base = 0;
    long zero, four, counted;
    int rc = scan_cops(s, &zero, &four, &counted);
    if (rc || counted == 0) return rc;   /* no MedMCQA record with a numbered answer: nothing to tell */
    if (zero && four)
        return ds_fail(DS_EDATA, "%s: MedMCQA answers (cop) numbered both ways: cop 0 on line %ld (the Hugging Face "
                       "dataset counts 0..3) and cop 4 on line %ld (the original release counts 1..4); convert the "
                       "file to one numbering", at, zero, four);
    if (!zero && !four)
        return ds_fail(DS_EDATA, "%s: the MedMCQA answers (cop) are all 1..3, which both numberings use, so whether "
                       "1 means A (the original release, 1..4) or B (the Hugging Face dataset, 0..3) cannot be told; "
                       "say it in the dataset's entry: answer_base: 1 (original release) or answer_base: 0 "
                       "(Hugging Face) (ds-ft eval: --answer-base 1 or 0)", at);
    *base = four ? 1 : 0;
    if (four) say(opt, "%s: MedMCQA answers (cop) count from 1, as in the original release (cop 4 on line %ld)", s->path, four);
    else say(opt, "%s: MedMCQA answers (cop) count from 0, as in the Hugging Face dataset (cop 0 on line %ld)", s->path, zero);
    return DS_OK;
}
