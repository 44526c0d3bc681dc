#include "checkpoint.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/numeric.h"
#include "core/status.h"
#include "data/json_util.h"
#include "data/safetensors.h"

#include "core/buf.h"

#include <dirent.h>
#include <math.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *checkpoints_dir(const char *output_dir) { return ds_path_join(output_dir, "checkpoints"); }

/* Step numbers of the existing step-N folders, ascending (*steps: free() it,
 * even on failure). @return DS_OK or DS_ENOMEM. */
static int list_steps(const char *dir, int64_t **steps, int *n)
{
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return DS_OK;
    struct dirent *e;
    size_t cap = 0;
    while ((e = readdir(d))) {
        long long s;
        char tail;
        if (sscanf(e->d_name, "step-%lld%c", &s, &tail) != 1 || s < 0) continue;
        if (ds_grow(steps, &cap, (size_t)*n + 1, sizeof **steps)) {
            closedir(d);
            return DS_ENOMEM;
        }
        int i = (*n)++;
        while (i > 0 && (*steps)[i - 1] > s) {
            (*steps)[i] = (*steps)[i - 1];
            i--;
        }
        (*steps)[i] = s;
    }
    closedir(d);
    return DS_OK;
}

/* The metric names of a restored window: the loss modules name theirs with
 * string constants, a restored window with these (a handful, kept for the
 * process). */
static const char *intern_name(const char *name)
{
    static char names[4 * LOSS_MAX_METRICS][64];
    static int n;
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return names[i];
    if (n == 4 * LOSS_MAX_METRICS || strlen(name) >= sizeof names[0]) return NULL;
    strcpy(names[n], name);
    return names[n++];
}

/* Built with unchecked jansson calls: the caller asks json_alloc_failed(). */
static json_t *window_json(const log_window *w)
{
    json_t *metrics = json_array();
    for (int k = 0; k < w->metrics.n; k++)
        json_array_append_new(metrics, json_pack("[s, f, f]", w->metrics.name[k], w->metrics.sum[k], w->metrics.count[k]));
    return json_pack("{s:i, s:f, s:o}", "steps", w->steps, "loss", w->loss, "metrics", metrics);
}

/* "log_window" of trainer_state.json; absent (a checkpoint of an older ds-ft): empty. */
static int window_from_json(const json_t *o, const char *path, log_window *w)
{
    memset(w, 0, sizeof *w);
    if (!o) return DS_OK;
    json_t *steps = json_object_get(o, "steps"), *loss = json_object_get(o, "loss"), *m = json_object_get(o, "metrics");
    if (!json_is_integer(steps) || json_integer_value(steps) < 0 || json_integer_value(steps) > INT32_MAX ||
        !json_is_number(loss) || !json_is_array(m))
        return ds_fail(DS_EDATA, "%s: key \"log_window\": expected {steps, loss, metrics}", path);
    w->steps = (int)json_integer_value(steps);
    w->loss = json_number_value(loss);
    size_t i;
    json_t *e;
    json_array_foreach(m, i, e) {
        const char *name = json_string_value(json_array_get(e, 0));
        json_t *sum = json_array_get(e, 1), *count = json_array_get(e, 2);
        name = name ? intern_name(name) : NULL;
        if (!name || !json_is_number(sum) || !json_is_number(count))
            return ds_fail(DS_EDATA, "%s: key \"log_window\": metric %zu is not [name, sum, count]", path, i);
        loss_metrics_add(&w->metrics, name, json_number_value(sum), json_number_value(count));
    }
    return DS_OK;
}

static int write_state(const char *dir, const train_state *s)
{
    json_alloc_reset();
    json_t *o = json_pack("{s:I, s:I, s:i, s:i, s:I, s:I, s:f, s:f, s:f, s:I, s:o}", "step", (json_int_t)s->step,
                          "total_steps", (json_int_t)s->total_steps, "epoch", s->epoch, "batch", s->batch, "micro_step",
                          (json_int_t)s->micro_step, "seed", (json_int_t)s->seed, "loss_ema", s->loss_ema,
                          "loss_ema_best", s->loss_ema_best, "elapsed_s", s->elapsed_s, "tokens", (json_int_t)s->tokens,
                          "log_window", window_json(&s->window));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    char *path = json_alloc_failed() ? NULL : ds_path_join(dir, "trainer_state.json");
    int rc = path ? ds_write_file(path, text, strlen(text)) : DS_ENOMEM;
    free(path);
    free(text);
    return rc;
}

/* DS_ETRAIN naming the tensor when x[0..n) holds a NaN or infinity. */
static int check_produced(const float *x, size_t n, const char *what)
{
    size_t i = ds_first_nonfinite(x, n);
    if (i == n) return DS_OK;
    return ds_fail(DS_ETRAIN, "checkpoint: %s holds %s at [%zu]; not written", what, isnan(x[i]) ? "NaN" : "an infinity", i);
}

int checkpoint_save(const char *output_dir, const train_state *s, const lora_adapter *ad, const float *adam_m,
                    const float *adam_v, int keep_last)
{
    char *root = checkpoints_dir(output_dir);
    char *final = root ? ds_strdupf("%s/step-%lld", root, (long long)s->step) : NULL;
    char *tmp = NULL;
    int rc = final ? check_produced(ad->data, ad->nparams, "the adapter") : DS_ENOMEM;
    if (!rc) rc = check_produced(adam_m, ad->nparams, "the optimizer's exp_avg");
    if (!rc) rc = check_produced(adam_v, ad->nparams, "the optimizer's exp_avg_sq");
    if (!rc) rc = ds_mkdirs(root);
    if (!rc) rc = ds_clean_debris_in(root);
    if (!rc) rc = ds_dir_begin(final, &tmp);
    if (!rc) rc = lora_write_peft_files(ad, tmp);   /* the checkpoint is itself a PEFT adapter folder */
    if (!rc) {
        st_writer *w = st_writer_new();
        int64_t shape = (int64_t)ad->nparams;
        char *path = w ? ds_path_join(tmp, "optimizer.safetensors") : NULL;
        rc = path ? st_writer_meta(w, "format", "pt") : DS_ENOMEM;
        if (!rc) rc = st_writer_add(w, "exp_avg", ST_F32, 1, &shape, adam_m);
        if (!rc) rc = st_writer_add(w, "exp_avg_sq", ST_F32, 1, &shape, adam_v);
        if (!rc) rc = st_writer_write(w, path);
        free(path);
        st_writer_free(w);
    }
    if (!rc) rc = write_state(tmp, s);
    if (!rc) {   /* the completion marker, last */
        char *marker = ds_path_join(tmp, CHECKPOINT_MARKER), *text = ds_strdupf("step %lld\n", (long long)s->step);
        rc = marker && text ? ds_write_file(marker, text, strlen(text)) : DS_ENOMEM;
        free(marker);
        free(text);
    }
    if (!rc) rc = ds_dir_commit(tmp, final);
    if (rc && tmp) ds_dir_abort(tmp);
    /* Keep the newest keep_last checkpoints. */
    if (!rc && keep_last > 0) {
        int64_t *steps;
        int n;
        rc = list_steps(root, &steps, &n);
        for (int i = 0; !rc && i + keep_last < n; i++) {
            char *old = ds_strdupf("%s/step-%lld", root, (long long)steps[i]);
            rc = old ? ds_remove_atomic(old) : DS_ENOMEM;
            free(old);
        }
        free(steps);
    }
    free(tmp);
    free(root);
    free(final);
    return rc;
}

/* Whether the checkpoint folder has its completion marker. @return DS_OK or DS_ENOMEM. */
static int is_complete(const char *dir, bool *complete)
{
    char *marker = ds_path_join(dir, CHECKPOINT_MARKER);
    *complete = marker && ds_exists(marker);
    free(marker);
    return marker ? DS_OK : DS_ENOMEM;
}

int checkpoint_latest(const char *output_dir, char **path, char **skipped)
{
    *path = NULL;
    *skipped = NULL;
    char *root = checkpoints_dir(output_dir);
    int64_t *steps = NULL;
    int n = 0;
    int rc = root ? list_steps(root, &steps, &n) : DS_ENOMEM;
    ds_buf skip = {0};
    for (int i = n - 1; !rc && i >= 0 && !*path; i--) {
        char *dir = ds_strdupf("%s/step-%lld", root, (long long)steps[i]);
        bool complete = false;
        rc = dir ? is_complete(dir, &complete) : DS_ENOMEM;
        if (!rc && complete) {
            *path = dir;
            break;
        }
        if (!rc) rc = ds_buf_printf(&skip, "%sstep-%lld", skip.len ? ", " : "", (long long)steps[i]);
        free(dir);
    }
    if (!rc && !*path)
        rc = ds_fail(DS_ENOINPUT, "%s: no complete checkpoint to resume from%s%s%s", root,
                     skip.len ? " (incomplete: " : "", skip.len ? skip.p : "", skip.len ? ")" : "");
    else if (!rc && skip.len && !(*skipped = ds_buf_take(&skip)))
        rc = DS_ENOMEM;
    if (rc) {
        free(*path);
        *path = NULL;
    }
    ds_buf_free(&skip);
    free(steps);
    free(root);
    return rc;
}

static int get_int(json_t *o, const char *path, const char *key, int64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) return ds_fail(DS_EDATA, "%s: missing integer \"%s\"", path, key);
    *out = json_integer_value(v);
    return DS_OK;
}

int checkpoint_load(const char *path, const model_config *model, train_state *s, lora_adapter *ad, float *adam_m,
                    float *adam_v)
{
    char *state_path = ds_path_join(path, "trainer_state.json");
    char *opt_path = state_path ? ds_path_join(path, "optimizer.safetensors") : NULL;
    lora_adapter *saved = NULL;
    st_file *f = NULL;
    json_t *o = NULL;
    int rc = opt_path ? json_file_load(state_path, 0, &o) : DS_ENOMEM;
    int64_t v[7];
    const char *keys[] = {"step", "total_steps", "epoch", "batch", "micro_step", "seed", "tokens"};
    for (int i = 0; !rc && i < 7; i++) rc = get_int(o, state_path, keys[i], &v[i]);
    if (!rc) {
        memset(s, 0, sizeof *s);
        s->step = v[0];
        s->total_steps = v[1];
        s->epoch = (int)v[2];
        s->batch = (int)v[3];
        s->micro_step = (uint64_t)v[4];
        s->seed = (uint64_t)v[5];
        s->tokens = v[6];
        s->loss_ema = json_number_value(json_object_get(o, "loss_ema"));
        s->loss_ema_best = json_number_value(json_object_get(o, "loss_ema_best"));
        s->elapsed_s = json_number_value(json_object_get(o, "elapsed_s"));
    }
    if (!rc && (s->step < 0 || s->epoch < 0 || s->batch < 0 || s->total_steps < 0))
        rc = ds_fail(DS_EDATA, "%s: step, epoch and batch must not be negative", state_path);
    if (!rc) rc = window_from_json(json_object_get(o, "log_window"), state_path, &s->window);
    if (!rc) rc = lora_load_peft(path, model, &saved);
    if (!rc && saved->cfg.r != ad->cfg.r)
        rc = ds_fail(DS_ECONFIG, "%s: the checkpoint's adapter has rank %d, the recipe's %d", path, saved->cfg.r,
                     ad->cfg.r);
    if (!rc && saved->cfg.targets != ad->cfg.targets)
        rc = ds_fail(DS_ECONFIG, "%s: the checkpoint's adapter targets other modules than the recipe's", path);
    if (!rc) memcpy(ad->data, saved->data, sizeof(float) * ad->nparams);
    if (!rc) rc = st_file_open(opt_path, &f);
    const char *names[2] = {"exp_avg", "exp_avg_sq"};
    float *dst[2] = {adam_m, adam_v};
    for (int i = 0; !rc && i < 2; i++) {
        const st_tensor *t = st_file_find(f, names[i]);
        int64_t shape = (int64_t)ad->nparams;
        if (!t) rc = ds_fail(DS_EDATA, "%s: missing tensor '%s'", opt_path, names[i]);
        else if (st_check_shape(t, 1, &shape) || t->dtype != ST_F32)
            rc = ds_fail(DS_EDATA, "%s: '%s' does not match the adapter", opt_path, names[i]);
        else memcpy(dst[i], t->data, t->nbytes);
        size_t n = ad->nparams, bad = rc ? n : ds_first_nonfinite(dst[i], n);
        for (size_t k = 0; i == 1 && bad == n && k < n; k++)   /* a second moment is never negative */
            if (dst[i][k] < 0) bad = k;
        if (bad < n)
            rc = ds_fail(DS_EDATA, "%s: tensor '%s' holds %g at [%zu]", opt_path, names[i], (double)dst[i][bad], bad);
    }
    st_file_close(f);
    lora_free(saved);
    json_decref(o);
    free(state_path);
    free(opt_path);
    return rc;
}
