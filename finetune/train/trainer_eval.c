/* finetune/train/trainer_eval.c - evaluations of a run: before training (base model),
 * during (eval.every_steps) and after (with the adapter); eval/<name>.json
 * with the scores and every sample's log-likelihoods; the printed summary. */
#include "trainer.h"

#include "core/files.h"
#include "core/status.h"
#include "data/json_util.h"

#include <stdlib.h>
#include <string.h>

static bool is_mcq(const trainer_eval_set *s) { return s->data.kind == EX_MCQ; }

static int evaluate_set(trainer *x, trainer_eval_set *s, bool lora, eval_result *res)
{
    const recipe *r = x->r;
    int max_rows = (int)r->eval.batch_size;
    return is_mcq(s) ? eval_mcq(x->ctx.eng, &s->data, lora, r->eval.limit, max_rows, res)
                     : eval_loss(x->ctx.eng, &s->data, lora, r->eval.limit, max_rows, res);
}

static int log_result(trainer *x, const trainer_eval_set *s, const eval_result *res, bool lora, int64_t step)
{
    const char *model = lora ? "adapter" : "base";
    json_alloc_reset();   /* the row is built with unchecked jansson calls: see json_util.h */
    json_t *row = json_pack("{s:I, s:s, s:s, s:I}", "step", (json_int_t)step, "eval", s->name, "model", model,
                            "n", (json_int_t)res->n);
    if (is_mcq(s)) {
        tlog_say(&x->log, "eval %-20s %-7s acc %.4f  acc_norm %.4f  (n=%ld)", s->name, model, res->acc, res->acc_norm,
                 res->n);
        json_object_set_new(row, "acc", json_real(res->acc));
        json_object_set_new(row, "acc_norm", json_real(res->acc_norm));
    } else {
        tlog_say(&x->log, "eval %-20s %-7s loss %.4f  perplexity %.3f  (%ld tokens)", s->name, model, res->loss,
                 res->perplexity, res->tokens);
        json_object_set_new(row, "loss", json_real(res->loss));
        json_object_set_new(row, "perplexity", json_real(res->perplexity));
    }
    if (json_alloc_failed()) {   /* a metrics row is never written short */
        json_decref(row);
        return DS_ENOMEM;
    }
    return tlog_row(&x->log, row);
}

int trainer_evaluate(trainer *x, bool after, int64_t step)
{
    for (int i = 0; i < x->n_evals; i++) {
        trainer_eval_set *s = &x->evals[i];
        eval_result *res = after ? &s->after : &s->before;
        eval_result_free(res);
        int rc = evaluate_set(x, s, after, res);
        if (rc) return ds_fail_context(rc, "evaluating %s: ", s->name);
        if ((rc = log_result(x, s, res, after, step))) return rc;
        if (after) s->has_after = true;
        else s->has_before = true;
    }
    report_info_phase(x->info, after ? "eval after" : "eval before");
    return DS_OK;
}

int trainer_evaluate_midway(trainer *x, int64_t step)
{
    report_info_phase(x->info, "train");
    for (int i = 0; i < x->n_evals; i++) {
        eval_result res;
        int rc = evaluate_set(x, &x->evals[i], true, &res);
        if (!rc) rc = log_result(x, &x->evals[i], &res, true, step);
        eval_result_free(&res);
        if (rc) return rc;
    }
    report_info_phase(x->info, "eval during training");
    return DS_OK;
}

static json_t *scores(const trainer_eval_set *s, const eval_result *r, const char *model)
{
    if (is_mcq(s))
        return json_pack("{s:s, s:f, s:f, s:I}", "model", model, "acc", r->acc, "acc_norm", r->acc_norm, "n",
                         (json_int_t)r->n);
    return json_pack("{s:s, s:f, s:f, s:I, s:I}", "model", model, "loss", r->loss, "perplexity", r->perplexity,
                     "tokens", (json_int_t)r->tokens, "n", (json_int_t)r->n);
}

static json_t *samples(const tokenizer *tok, const trainer_eval_set *s)
{
    json_t *arr = json_array();
    const eval_result *b = s->has_before ? &s->before : NULL, *a = s->has_after ? &s->after : NULL;
    long n = a ? a->n : b ? b->n : 0;
    for (long i = 0; i < n; i++) {
        const mcq_example *x = &s->data.mcq[i];
        json_t *o = json_pack("{s:I, s:i}", "index", (json_int_t)i, "answer", x->answer);
        /* the prompt as the model saw it (decoded, special tokens left out) and the choices, for the report */
        char *prompt = NULL;
        if (tok_decode(tok, x->prompt, (size_t)x->n_prompt, true, &prompt) == DS_OK)
            json_object_set_new(o, "prompt", json_string(prompt));
        free(prompt);
        json_t *choices = json_array();
        for (int k = 0; k < x->nchoices; k++) json_array_append_new(choices, json_string(x->choice_text[k]));
        json_object_set_new(o, "choices", choices);
        const eval_result *which[2] = {b, a};
        const char *tag[2] = {"before", "after"};
        for (int w = 0; w < 2; w++) {
            if (!which[w]) continue;
            json_t *ll = json_array();
            for (int k = 0; k < x->nchoices; k++) json_array_append_new(ll, json_real(which[w]->loglik[which[w]->first[i] + k]));
            char key[32];
            snprintf(key, sizeof key, "loglik_%s", tag[w]);
            json_object_set_new(o, key, ll);
            snprintf(key, sizeof key, "pred_%s", tag[w]);
            json_object_set_new(o, key, json_integer(which[w]->pred[i]));
            snprintf(key, sizeof key, "pred_norm_%s", tag[w]);
            json_object_set_new(o, key, json_integer(which[w]->pred_norm[i]));
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

int trainer_write_eval_files(trainer *x)
{
    char *dir = ds_path_join(x->r->output_dir, "eval");
    int rc = ds_mkdirs(dir);
    for (int i = 0; !rc && i < x->n_evals; i++) {
        trainer_eval_set *s = &x->evals[i];
        json_t *o = json_object();
        json_object_set_new(o, "dataset", json_string(s->src ? s->src->path : "validation split of data.datasets"));
        json_object_set_new(o, "type", json_string(is_mcq(s) ? "mcq" : "loss"));
        if (s->src && s->src->mcq_format && is_mcq(s)) json_object_set_new(o, "mcq_format", json_string(s->src->mcq_format));
        if (s->has_before) json_object_set_new(o, "before", scores(s, &s->before, "base"));
        if (s->has_after) json_object_set_new(o, "after", scores(s, &s->after, "adapter"));
        if (is_mcq(s)) json_object_set_new(o, "samples", samples(x->ctx.tok, s));
        char *text = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        json_decref(o);
        char *name = ds_strdupf("%s/%s.json", dir, s->name);
        rc = ds_write_file(name, text, strlen(text));
        free(name);
        free(text);
    }
    free(dir);
    return rc;
}

void trainer_print_summary(trainer *x)
{
    if (!x->n_evals) return;
    tlog_say(&x->log, "results (base model -> with adapter):");
    for (int i = 0; i < x->n_evals; i++) {
        const trainer_eval_set *s = &x->evals[i];
        const eval_result *b = s->has_before ? &s->before : NULL, *a = s->has_after ? &s->after : NULL;
        char before[64] = "-", after[64] = "-", before_n[64] = "-", after_n[64] = "-";
        if (is_mcq(s)) {
            if (b) { snprintf(before, sizeof before, "%.4f", b->acc); snprintf(before_n, sizeof before_n, "%.4f", b->acc_norm); }
            if (a) { snprintf(after, sizeof after, "%.4f", a->acc); snprintf(after_n, sizeof after_n, "%.4f", a->acc_norm); }
            tlog_say(&x->log, "  %-20s accuracy %s -> %s   acc_norm %s -> %s   (n=%ld, chance %.2f)", s->name, before,
                     after, before_n, after_n, a ? a->n : b ? b->n : 0,
                     s->data.n ? 1.0 / s->data.mcq[0].nchoices : 0.0);
        } else {
            if (b) { snprintf(before, sizeof before, "%.4f", b->loss); snprintf(before_n, sizeof before_n, "%.3f", b->perplexity); }
            if (a) { snprintf(after, sizeof after, "%.4f", a->loss); snprintf(after_n, sizeof after_n, "%.3f", a->perplexity); }
            tlog_say(&x->log, "  %-20s loss %s -> %s   perplexity %s -> %s", s->name, before, after, before_n, after_n);
        }
    }
}
