#include "checkpoint.h"

#include "core/files.h"
#include "core/status.h"
#include "data/safetensors.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *checkpoints_dir(const char *output_dir) { return ds_path_join(output_dir, "checkpoints"); }

/* Step numbers of the existing step-N folders, ascending. */
static int list_steps(const char *dir, int64_t **steps, int *n)
{
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return DS_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s;
        char tail;
        if (sscanf(e->d_name, "step-%lld%c", &s, &tail) != 1 || s < 0) continue;
        *steps = realloc(*steps, sizeof **steps * (size_t)(*n + 1));
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

static int write_state(const char *dir, const train_state *s)
{
    json_t *o = json_pack("{s:I, s:I, s:i, s:i, s:I, s:I, s:f, s:f, s:f, s:I}", "step", (json_int_t)s->step,
                          "total_steps", (json_int_t)s->total_steps, "epoch", s->epoch, "batch", s->batch, "micro_step",
                          (json_int_t)s->micro_step, "seed", (json_int_t)s->seed, "loss_ema", s->loss_ema,
                          "loss_ema_best", s->loss_ema_best, "elapsed_s", s->elapsed_s, "tokens", (json_int_t)s->tokens);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    char *path = ds_path_join(dir, "trainer_state.json");
    int rc = ds_write_file(path, text, strlen(text));
    free(path);
    free(text);
    return rc;
}

int checkpoint_save(const char *output_dir, const train_state *s, const lora_adapter *ad, const float *adam_m,
                    const float *adam_v, int keep_last)
{
    char *root = checkpoints_dir(output_dir);
    char *name = ds_strdupf("step-%lld", (long long)s->step);
    char *final = ds_path_join(root, name);
    char *tmp = NULL;
    int rc = ds_mkdirs(root);
    if (!rc) rc = ds_dir_begin(final, &tmp);
    if (!rc) rc = lora_write_peft_files(ad, tmp);   /* the checkpoint is itself a PEFT adapter folder */
    if (!rc) {
        st_writer *w = st_writer_new();
        int64_t shape = (int64_t)ad->nparams;
        st_writer_meta(w, "format", "pt");
        st_writer_add(w, "exp_avg", ST_F32, 1, &shape, adam_m);
        st_writer_add(w, "exp_avg_sq", ST_F32, 1, &shape, adam_v);
        char *path = ds_path_join(tmp, "optimizer.safetensors");
        rc = st_writer_write(w, path);
        free(path);
        st_writer_free(w);
    }
    if (!rc) rc = write_state(tmp, s);
    if (!rc) rc = ds_dir_commit(tmp, final);
    if (rc && tmp) ds_dir_abort(tmp);
    /* Keep the newest keep_last checkpoints. */
    if (!rc && keep_last > 0) {
        int64_t *steps;
        int n;
        list_steps(root, &steps, &n);
        for (int i = 0; i + keep_last < n; i++) {
            char *old = ds_strdupf("%s/step-%lld", root, (long long)steps[i]);
            ds_remove_tree(old);
            free(old);
        }
        free(steps);
    }
    free(tmp);
    free(root);
    free(name);
    free(final);
    return rc;
}

int checkpoint_latest(const char *output_dir, char **path)
{
    char *root = checkpoints_dir(output_dir);
    int64_t *steps;
    int n;
    list_steps(root, &steps, &n);
    int rc = DS_OK;
    if (n == 0) rc = ds_fail(DS_ENOINPUT, "%s: no checkpoint to resume from", root);
    else *path = ds_strdupf("%s/step-%lld", root, (long long)steps[n - 1]);
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
    char *opt_path = ds_path_join(path, "optimizer.safetensors");
    lora_adapter *saved = NULL;
    st_file *f = NULL;
    json_error_t jerr;
    json_t *o = json_load_file(state_path, 0, &jerr);
    int rc = o ? DS_OK : ds_fail(ds_exists(state_path) ? DS_EDATA : DS_ENOINPUT, "%s: %s", state_path, jerr.text);
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
    }
    st_file_close(f);
    lora_free(saved);
    json_decref(o);
    free(state_path);
    free(opt_path);
    return rc;
}
