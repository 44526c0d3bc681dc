/* finetune/recipe/recipe.c - the recipe's keys (one option table per section) and
 * the loader: YAML tree -> aliases -> command-line overrides -> typed struct
 * -> checks across sections.
 *
 * Paths are kept as written, relative to the current directory (as axolotl
 * does). The loss section belongs to the loss modules: the loader reads
 * `type`, finds the module in the registry and reads the module's own keys
 * into a zeroed config struct of module->cfg_size bytes. Preparing the
 * module (tokenizing forbidden strings, ...) is the trainer's job, once a
 * tokenizer is loaded. */
#include "recipe_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/dataset/chat_template.h"
#include "adapters/lora.h"
#include "data/model_config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define R(field) offsetof(recipe, field)
#define NO_RANGE 0, -1
#define IMAX 1e12   /* "no practical limit" for counts of steps and examples */

static const opt_key TOP_KEYS[] = {
    {"base_model", OPT_STRING, R(base_model), NULL, NO_RANGE, NULL, OPT_REQUIRED,
     "the base model: a folder (config.json, safetensors, tokenizer.json) or a Hugging Face model id "
     "org/name[@revision] in the local Hub cache"},
    {"tokenizer", OPT_STRING, R(tokenizer), "null", NO_RANGE, NULL, OPT_NULLABLE,
     "tokenizer folder or Hugging Face model id; null = base_model"},
    {"output_dir", OPT_STRING, R(output_dir), NULL, NO_RANGE, NULL, OPT_REQUIRED,
     "where the run writes its adapter, checkpoints, metrics and logs"},
    {"seed", OPT_INT, R(seed), "42", 0, 4294967295.0, NULL, 0,
     "seed of every random choice: init, dropout, shuffling, the validation split"},
    {"device", OPT_CHOICE, R(device), "auto", NO_RANGE, "auto|cpu|cuda", 0, "backend; auto = cuda when a GPU is present"},
    OPT_END,
};

static const opt_key QUANT_KEYS[] = {
    {"load_in_4bit", OPT_BOOL, R(quant.load_in_4bit), "false", NO_RANGE, NULL, 0,
     "hold the frozen base weights in 4-bit NF4 (QLoRA); false = 16-bit"},
    {"quant_type", OPT_CHOICE, R(quant.quant_type), "nf4", NO_RANGE, "nf4", 0, "4-bit format: bitsandbytes' NF4"},
    {"double_quant", OPT_BOOL, R(quant.double_quant), "true", NO_RANGE, NULL, 0,
     "quantize the block scales too (bitsandbytes double quantization)"},
    {"compute_dtype", OPT_CHOICE, R(quant.compute_dtype), "bf16", NO_RANGE, "bf16", 0,
     "precision of the matmuls on dequantized weights"},
    OPT_END,
};

static const opt_key ADAPTER_KEYS[] = {
    {"lora_r", OPT_INT, R(adapter.lora_r), "16", 1, 1024, NULL, 0, "LoRA rank r"},
    {"lora_alpha", OPT_FLOAT, R(adapter.lora_alpha), "32", 0, 1e6, NULL, OPT_MIN_OPEN,
     "scale s = lora_alpha / r (use_rslora: lora_alpha / sqrt(r)); > 0"},
    {"lora_dropout", OPT_FLOAT, R(adapter.lora_dropout), "0.05", 0, 1, NULL, OPT_MAX_OPEN,
     "dropout on the adapter's input, in [0, 1)"},
    {"lora_target_modules", OPT_STRING_LIST, R(adapter.lora_target_modules), "[q_proj, v_proj]", NO_RANGE,
     LORA_TARGET_NAMES, 0, "linear layers that get adapters (each model adapts the names it has); all-linear = every one"},
    {"use_rslora", OPT_BOOL, R(adapter.use_rslora), "false", NO_RANGE, NULL, 0,
     "rank-stabilised scale lora_alpha / sqrt(r)"},
    {"init_from", OPT_STRING, R(adapter.init_from), "null", NO_RANGE, NULL, OPT_NULLABLE,
     "start from this PEFT adapter folder; null = fresh init (A uniform, B = 0)"},
    OPT_END,
};

static const opt_key DATA_KEYS[] = {
    {"chat_template", OPT_CHOICE, R(data.chat_template), "auto", NO_RANGE, CHAT_TEMPLATE_CHOICES, 0,
     "how examples become text: auto = the model's own chat template (plain when it has none), or a built-in"},
    {"sequence_len", OPT_INT, R(data.sequence_len), "2048", 8, 1048576, NULL, 0,
     "longest example in tokens; longer ones are truncated"},
    {"sample_packing", OPT_BOOL, R(data.sample_packing), "false", NO_RANGE, NULL, 0,
     "pack several short examples into one row"},
    {"val_set_size", OPT_FLOAT, R(data.val_set_size), "0.0", 0, IMAX, NULL, 0,
     "held out of the training data for validation: a fraction (< 1) or a count (>= 1)"},
    {"train_on_inputs", OPT_BOOL, R(data.train_on_inputs), "false", NO_RANGE, NULL, 0,
     "train on prompt tokens too (false: they are masked)"},
    {"skip_bad_lines", OPT_BOOL, R(data.skip_bad_lines), "false", NO_RANGE, NULL, 0,
     "skip and count malformed dataset lines instead of stopping"},
    {"shuffle", OPT_BOOL, R(data.shuffle), "true", NO_RANGE, NULL, 0, "shuffle the examples every epoch (from the seed)"},
    OPT_END,
};

static const opt_key TRAIN_KEYS[] = {
    {"micro_batch_size", OPT_INT, R(train.micro_batch_size), "1", 1, 4096, NULL, 0, "rows per forward/backward pass"},
    {"gradient_accumulation_steps", OPT_INT, R(train.gradient_accumulation_steps), "1", 1, 65536, NULL, 0,
     "micro-batches per optimizer step"},
    {"num_epochs", OPT_FLOAT, R(train.num_epochs), "1.0", 0, 1e6, NULL, OPT_MIN_OPEN,
     "passes over the training data; > 0"},
    {"max_steps", OPT_INT, R(train.max_steps), "null", 1, IMAX, NULL, OPT_NULLABLE,
     "stop after this many optimizer steps; null = from num_epochs"},
    {"learning_rate", OPT_FLOAT, R(train.learning_rate), "2.0e-4", 0, 10, NULL, 0, "peak learning rate (AdamW)"},
    {"lr_scheduler", OPT_CHOICE, R(train.lr_scheduler), "cosine", NO_RANGE, "cosine|linear|constant", 0,
     "learning-rate decay after warmup"},
    {"warmup_ratio", OPT_FLOAT, R(train.warmup_ratio), "0.0", 0, 1, NULL, 0, "fraction of the steps spent warming up"},
    {"warmup_steps", OPT_INT, R(train.warmup_steps), "null", 0, IMAX, NULL, OPT_NULLABLE,
     "warmup in steps, overrides warmup_ratio; null = from warmup_ratio"},
    {"weight_decay", OPT_FLOAT, R(train.weight_decay), "0.0", 0, 10, NULL, 0, "AdamW decoupled weight decay"},
    {"max_grad_norm", OPT_FLOAT, R(train.max_grad_norm), "1.0", 0, 1e9, NULL, 0,
     "clip the global gradient norm to this; 0 = no clipping"},
    {"adam_beta1", OPT_FLOAT, R(train.adam_beta1), "0.9", 0, 1, NULL, OPT_MAX_OPEN, "AdamW beta1, in [0, 1)"},
    {"adam_beta2", OPT_FLOAT, R(train.adam_beta2), "0.999", 0, 1, NULL, OPT_MAX_OPEN, "AdamW beta2, in [0, 1)"},
    {"adam_epsilon", OPT_FLOAT, R(train.adam_epsilon), "1e-8", 0, 1, NULL, OPT_MIN_OPEN, "AdamW epsilon; > 0"},
    {"gradient_checkpointing", OPT_BOOL, R(train.gradient_checkpointing), "true", NO_RANGE, NULL, 0,
     "recompute activations in the backward pass to save memory"},
    {"offload_activations", OPT_CHOICE, R(train.offload_activations), "auto", NO_RANGE, "auto|true|false", 0,
     "keep each layer's input in the host's memory instead of the GPU's (with gradient_checkpointing); auto = when "
     "the run would not fit the GPU otherwise"},
    {"keep_attention", OPT_CHOICE, R(train.keep_attention), "auto", NO_RANGE, "auto|true|false", 0,
     "keep each layer's attention output from the forward so that the recomputing backward skips the attention "
     "(with gradient_checkpointing, Llama-family layers); auto = where the GPU has the room (and with "
     "offload_activations the host the memory)"},
    {"keep_projections", OPT_CHOICE, R(train.keep_projections), "auto", NO_RANGE, "auto|true|false", 0,
     "with the attention output kept: keep each layer's q, k, v and residual after attention on the GPU too, so "
     "that the recomputing backward runs no projection of the attention block; auto = in as many layers as the "
     "GPU's free memory holds, true = every layer (needs keep_attention: true)"},
    {"logging_steps", OPT_INT, R(train.logging_steps), "1", 1, IMAX, NULL, 0,
     "write a metrics row every N optimizer steps"},
    {"divergence_factor", OPT_FLOAT, R(train.divergence_factor), "10.0", 0, 1e9, NULL, 0,
     "stop when the loss exceeds factor x its best moving average; 0 = off, else > 1"},
    {"tensorboard", OPT_BOOL, R(train.tensorboard), "false", NO_RANGE, NULL, 0,
     "also write the metrics rows to OUTPUT_DIR/tensorboard/ as a TensorBoard event file"},
    OPT_END,
};

static const opt_key EVAL_KEYS[] = {
    {"before_training", OPT_BOOL, R(eval.before_training), "true", NO_RANGE, NULL, 0,
     "also evaluate the base model before training"},
    {"every_steps", OPT_INT, R(eval.every_steps), "0", 0, IMAX, NULL, 0,
     "evaluate every N optimizer steps; 0 = only before and after training"},
    {"limit", OPT_INT, R(eval.limit), "null", 1, IMAX, NULL, OPT_NULLABLE,
     "at most this many examples per dataset; null = all"},
    {"batch_size", OPT_INT, R(eval.batch_size), "8", 1, 4096, NULL, 0, "rows per evaluation pass"},
    OPT_END,
};

static const opt_key SAVE_KEYS[] = {
    {"every_steps", OPT_INT, R(save.every_steps), "500", 0, IMAX, NULL, 0,
     "write a checkpoint every N optimizer steps; 0 = only at the end"},
    {"keep_last", OPT_INT, R(save.keep_last), "2", 0, 1e6, NULL, 0,
     "step checkpoints kept, older ones removed; 0 = keep all"},
    {"merge", OPT_BOOL, R(save.merge), "false", NO_RANGE, NULL, 0,
     "also write merged/: the adapter merged into the base weights"},
    {"merge_source", OPT_CHOICE, R(save.merge_source), "dequantized", NO_RANGE, "dequantized|original", 0,
     "weights merged into: the dequantized NF4 ones trained against, or the original 16-bit ones"},
    OPT_END,
};

static const opt_key MOE_KEYS[] = {
    {"aux_loss_alpha", OPT_FLOAT, R(moe.aux_loss_alpha), "-1", -1, 1e3, NULL, 0,
     "MoE models: coefficient of DeepSeek's sequence-level balance loss; -1 = the model's aux_loss_alpha, 0 = off"},
    {"capacity_factor", OPT_FLOAT, R(moe.capacity_factor), "0", 0, 1e3, NULL, 0,
     "MoE models: an expert takes at most factor x (tokens x top_k / experts) routed tokens per layer, later ones "
     "dropped; 0 = no limit (as transformers)"},
    OPT_END,
};

const opt_key RECIPE_DATASET_KEYS[] = {
    {"path", OPT_STRING, offsetof(data_source, path), NULL, NO_RANGE, NULL, OPT_REQUIRED,
     "JSONL or JSON file, optionally .zst"},
    {"type", OPT_CHOICE, offsetof(data_source, type), NULL, NO_RANGE, DATASET_TYPE_NAMES, OPT_REQUIRED,
     "the record format"},
    {"mcq_format", OPT_CHOICE, offsetof(data_source, mcq_format), "letters", NO_RANGE, "letters|cloze", 0,
     "mcq only: letters (choices listed, the letter scored) or cloze (each choice's text scored)"},
    {"limit", OPT_INT, offsetof(data_source, limit), "null", 1, IMAX, NULL, OPT_NULLABLE,
     "at most this many examples; null = all"},
    {"answer_base", OPT_CHOICE, offsetof(data_source, answer_base), "auto", NO_RANGE, "auto|0|1", 0,
     "mcq only: what integer answers count from; auto = MedMCQA's cop told from the file (a 0: the Hugging Face "
     "dataset, a 4: the original release), other answers from 0"},
    OPT_END,
};

static const char *const TOP_EXTRA[] = {"quant", "adapter", "data", "loss", "train", "eval", "save", "moe", "clean",
                                         NULL};
static const char *const DATASETS_EXTRA[] = {"datasets", NULL};
static const char *const LOSS_EXTRA[] = {"type", "penalties", NULL};
static const char *const PENALTY_EXTRA[] = {"type", NULL};

const recipe_section RECIPE_SECTIONS[] = {
    {"", TOP_KEYS, TOP_EXTRA},
    {"quant", QUANT_KEYS, NULL},
    {"adapter", ADAPTER_KEYS, NULL},
    {"data", DATA_KEYS, DATASETS_EXTRA},
    {"loss", NULL, LOSS_EXTRA},
    {"train", TRAIN_KEYS, NULL},
    {"eval", EVAL_KEYS, DATASETS_EXTRA},
    {"save", SAVE_KEYS, NULL},
    {"moe", MOE_KEYS, NULL},
    {NULL, NULL, NULL},
};

const char *recipe_extra_help(const char *section, const char *key)
{
    if (!strcmp(section, "data") && !strcmp(key, "datasets"))
        return "training data: a list of {path, type, mcq_format, limit, answer_base}";
    if (!strcmp(section, "eval") && !strcmp(key, "datasets"))
        return "evaluation data, same entries: mcq for accuracy, other types (not preference) for loss/perplexity";
    if (!strcmp(section, "loss") && !strcmp(key, "type")) return "the main loss module";
    if (!strcmp(section, "loss") && !strcmp(key, "penalties"))
        return "penalties added to the main loss: a list of {type: <penalty>, its keys}";
    return "";
}

/* ---- sections ---- */

/* The mapping of section `name`, NULL when absent or left empty. */
static int section_node(const rctx *c, const ynode *root, const char *name, const ynode **out)
{
    *out = NULL;
    int i = ynode_find(root, name);
    if (i < 0 || ynode_is_null(root->kids[i])) return DS_OK;
    const ynode *v = root->kids[i];
    char shown[64];
    if (v->kind != YN_MAP)
        return rctx_fail(c, v->line, name, "expected a mapping of %s keys, got %s", name,
                         recipe_show(v, shown, sizeof shown));
    *out = v;
    return DS_OK;
}

static const char *loss_label(const recipe_loss *l) { return l->module ? l->module->name : "?"; }

/* The names of the registered paired losses ("dpo"), for messages. */
static void paired_names(char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < loss_count() && k < n; i++)
        if (loss_at(i)->needs & LOSS_PAIRED) {
            int w = snprintf(buf + k, n - k, "%s%s", k ? ", " : "", loss_at(i)->name);
            if (w < 0) break;
            k += (size_t)w;
        }
}

/* One loss module entry: `type` plus the module's own keys. */
static int read_loss(rctx *c, const ynode *map, int line, const char *prefix, bool penalty, recipe_loss *out)
{
    char names[256], dotted[300], shown[64];
    const loss_module *m = NULL;
    int ti = ynode_find(map, "type");
    recipe_join(dotted, sizeof dotted, prefix, "type");
    if (ti < 0) {
        if (penalty)
            return rctx_fail(c, line, dotted, "required key is missing (one of %s)",
                             loss_names(names, sizeof names, true));
        m = loss_find("sft");
        if (!m) return ds_fail(DS_EINTERNAL, "the sft loss is not registered");
    } else {
        const ynode *tv = map->kids[ti];
        if (tv->kind != YN_SCALAR || ynode_is_null(tv))
            return rctx_fail(c, tv->line, dotted, "expected a loss name (%s), got %s",
                             loss_names(names, sizeof names, penalty), recipe_show(tv, shown, sizeof shown));
        m = loss_find(tv->text);
        if (!m)
            return rctx_fail(c, tv->line, dotted, "unknown loss %s (registered: %s)",
                             recipe_show(tv, shown, sizeof shown), loss_names(names, sizeof names, penalty));
        if (m->is_penalty && !penalty)
            return rctx_fail(c, tv->line, dotted,
                             "%s is a penalty, not a main loss: list it under loss.penalties (main losses: %s)",
                             m->name, loss_names(names, sizeof names, false));
        if (!m->is_penalty && penalty)
            return rctx_fail(c, tv->line, dotted, "%s is a main loss, not a penalty (penalties: %s)", m->name,
                             loss_names(names, sizeof names, true));
    }
    out->module = m;
    out->cfg = ds_calloc(1, m->cfg_size ? m->cfg_size : 1, "a loss's settings");
    if (!out->cfg) return DS_ENOMEM;
    out->line = line > 0 ? line : 0;
    const char *const *extra = penalty ? PENALTY_EXTRA : LOSS_EXTRA;
    /* A key of another module is a clearer mistake than an unknown key. */
    for (int i = 0; map && i < map->n; i++) {
        const char *key = map->keys[i];
        if (!strcmp(key, "type") || (!penalty && !strcmp(key, "penalties"))) continue;
        bool mine = false;
        for (const opt_key *k = m->keys; k && k->name; k++) mine |= !strcmp(k->name, key);
        if (mine) continue;
        for (int j = 0; j < loss_count(); j++) {
            const loss_module *o = loss_at(j);
            for (const opt_key *k = o->keys; o != m && k && k->name; k++)
                if (!strcmp(k->name, key))
                    return rctx_fail(c, map->key_lines[i], recipe_join(dotted, sizeof dotted, prefix, key),
                                     penalty ? "belongs to loss %s, not to the penalty %s"
                                             : "belongs to loss %s, but loss.type is %s",
                                     o->name, m->name);
        }
        return recipe_unknown_key(c, map->key_lines[i], prefix, key, m->keys, extra);
    }
    int rc = recipe_apply_table(c, m->keys, out->cfg, map, line, prefix, extra);
    if (!rc && m->check) {
        char where[400];
        rctx_where(c, line, where, sizeof where);
        size_t k = strlen(where);
        snprintf(where + k, sizeof where - k, ": %s", prefix);
        rc = m->check(out->cfg, where);
    }
    return rc;
}

static int read_loss_section(rctx *c, const ynode *root)
{
    recipe *r = c->r;
    const ynode *sec;
    int rc = section_node(c, root, "loss", &sec);
    if (rc) return rc;
    rc = read_loss(c, sec, sec ? sec->line : RLINE_NONE, "loss", false, &r->loss.main);
    if (rc) return rc;
    int pi = ynode_find(sec, "penalties");
    if (pi < 0 || ynode_is_null(sec->kids[pi])) return DS_OK;
    const ynode *list = sec->kids[pi];
    char shown[64], prefix[64];
    if (list->kind != YN_SEQ)
        return rctx_fail(c, list->line, "loss.penalties", "expected a list of {type: ..., ...}, got %s",
                         recipe_show(list, shown, sizeof shown));
    r->loss.penalties = ds_calloc((size_t)list->n + 1, sizeof *r->loss.penalties, "the loss penalties");
    if (!r->loss.penalties) return DS_ENOMEM;
    for (int i = 0; i < list->n; i++) {
        const ynode *it = list->kids[i];
        snprintf(prefix, sizeof prefix, "loss.penalties[%d]", i);
        if (it->kind != YN_MAP)
            return rctx_fail(c, it->line, prefix, "expected a mapping {type: ..., ...}, got %s",
                             recipe_show(it, shown, sizeof shown));
        r->loss.n_penalties = i + 1;
        rc = read_loss(c, it, it->line, prefix, true, &r->loss.penalties[i]);
        if (rc) return rc;
    }
    return DS_OK;
}

/* A list of dataset entries; for training (`train`) the types must suit the
 * main loss, for evaluation they must be mcq or usable for loss/perplexity. */
static int read_datasets(rctx *c, const ynode *sec, const char *section, bool train, recipe_dataset **out, int *n)
{
    char prefix[80], dotted[120], shown[64], paired[128];
    int i = ynode_find(sec, "datasets");
    const ynode *list = i >= 0 ? sec->kids[i] : NULL;
    snprintf(dotted, sizeof dotted, "%s.datasets", section);
    if (!list || ynode_is_null(list)) {
        if (!train) return DS_OK;
        return rctx_fail(c, list ? list->line : sec ? sec->line : RLINE_NONE, dotted,
                         "required key is missing: the training data, a list of {path, type}");
    }
    if (list->kind != YN_SEQ)
        return rctx_fail(c, list->line, dotted, "expected a list of {path, type} entries, got %s",
                         recipe_show(list, shown, sizeof shown));
    if (train && list->n == 0) return rctx_fail(c, list->line, dotted, "needs at least one dataset");
    *out = ds_calloc((size_t)list->n + 1, sizeof **out, "the dataset entries");
    if (!*out) return DS_ENOMEM;
    const recipe_loss *main = &c->r->loss.main;
    bool needs_pairs = main->module && (main->module->needs & LOSS_PAIRED);
    paired_names(paired, sizeof paired);
    for (int k = 0; k < list->n; k++) {
        const ynode *it = list->kids[k];
        recipe_dataset *d = &(*out)[k];
        snprintf(prefix, sizeof prefix, "%s.datasets[%d]", section, k);
        if (it->kind != YN_MAP)
            return rctx_fail(c, it->line, prefix, "expected a mapping {path: ..., type: ...}, got %s",
                             recipe_show(it, shown, sizeof shown));
        *n = k + 1;
        int rc = recipe_apply_table(c, RECIPE_DATASET_KEYS, d, it, it->line, prefix, NULL);
        if (rc) return rc;
        d->line = it->line > 0 ? it->line : 0;
        d->recipe = c->src;
        int ti = ynode_find(it, "type");
        int tline = it->kids[ti]->line;
        recipe_join(dotted, sizeof dotted, prefix, "type");
        bool mcq = !strcmp(d->type, "mcq"), pref = !strcmp(d->type, "preference");
        static const char *const mcq_only[] = {"mcq_format", "answer_base"};
        for (int m = 0; m < 2 && !mcq; m++) {
            int fi = ynode_find(it, mcq_only[m]);
            if (fi >= 0)
                return rctx_fail(c, it->key_lines[fi], recipe_join(dotted, sizeof dotted, prefix, mcq_only[m]),
                                 "applies to type mcq only (this dataset is %s)", d->type);
            char **field = m == 0 ? &d->mcq_format : &d->answer_base;
            free(*field);
            *field = NULL;
        }
        if (train && needs_pairs && !pref)
            return rctx_fail(c, tline, dotted, "loss %s trains on preference pairs: every dataset must be type "
                             "preference, not %s", loss_label(main), d->type);
        if (train && !needs_pairs && pref)
            return rctx_fail(c, tline, dotted, "preference data needs a paired loss (loss.type: %s); loss.type is %s",
                             paired, loss_label(main));
        if (!train && pref)
            return rctx_fail(c, tline, dotted,
                             "preference datasets cannot be evaluated; use mcq (accuracy) or a text type (loss, "
                             "perplexity)");
    }
    return DS_OK;
}

/* Checks that involve more than one key or a value's meaning. */
static int check_recipe(rctx *c, const ynode *root)
{
    recipe *r = c->r;
    const ynode *sec;
    double v = r->data.val_set_size;
    if (v >= 1 && v != floor(v)) {
        section_node(c, root, "data", &sec);
        int i = ynode_find(sec, "val_set_size");
        return rctx_fail(c, i >= 0 ? sec->kids[i]->line : RLINE_NONE, "data.val_set_size",
                         "a count (>= 1) must be a whole number, got %g", v);
    }
    if (v > 0 && r->loss.main.module && (r->loss.main.module->needs & LOSS_PAIRED)) {
        section_node(c, root, "data", &sec);
        int i = ynode_find(sec, "val_set_size");
        return rctx_fail(c, i >= 0 ? sec->kids[i]->line : RLINE_NONE, "data.val_set_size",
                         "held-out pairs are not evaluated with loss %s; leave it 0", r->loss.main.module->name);
    }
    double f = r->train.divergence_factor;
    if (f != 0 && f <= 1) {
        section_node(c, root, "train", &sec);
        int i = ynode_find(sec, "divergence_factor");
        return rctx_fail(c, i >= 0 ? sec->kids[i]->line : RLINE_NONE, "train.divergence_factor",
                         "must be 0 (off) or greater than 1, got %g", f);
    }
    if (!strcmp(r->train.keep_projections, "true") && strcmp(r->train.keep_attention, "true")) {
        section_node(c, root, "train", &sec);
        int i = ynode_find(sec, "keep_projections");
        return rctx_fail(c, i >= 0 ? sec->kids[i]->line : RLINE_NONE, "train.keep_projections",
                         "true adds each layer's q, k, v and residual to the kept attention output: it needs "
                         "train.keep_attention: true");
    }
    if (!r->tokenizer && !(r->tokenizer = ds_strdup(r->base_model))) return DS_ENOMEM;
    return DS_OK;
}

static int read_recipe(rctx *c, const ynode *root)
{
    recipe *r = c->r;
    int line = root->line;
    int rc = recipe_apply_table(c, TOP_KEYS, r, root, line, "", TOP_EXTRA);
    if (rc) return rc;
    /* loss first: the datasets are checked against it */
    rc = read_loss_section(c, root);
    if (rc) return rc;
    for (const recipe_section *s = RECIPE_SECTIONS; s->name; s++) {
        if (!*s->name || !s->keys) continue;
        const ynode *sec;
        rc = section_node(c, root, s->name, &sec);
        if (rc) return rc;
        int sline = sec ? sec->line : line;
        rc = recipe_apply_table(c, s->keys, r, sec, sline, s->name, s->extra);
        if (rc) return rc;
    }
    /* the dataset lists last, so that a wrong value elsewhere is reported before a missing list */
    const ynode *data, *eval;
    if ((rc = section_node(c, root, "data", &data)) || (rc = section_node(c, root, "eval", &eval))) return rc;
    rc = read_datasets(c, data, "data", true, &r->data.datasets, &r->data.n_datasets);
    if (!rc) rc = read_datasets(c, eval, "eval", false, &r->eval.datasets, &r->eval.n_datasets);
    if (!rc) rc = recipe_read_clean(c, root);
    if (rc) return rc;
    return check_recipe(c, root);
}

/* ---- load / parse / free ---- */

int recipe_parse(const char *text, size_t len, const char *path, char *const *overrides, int n_overrides,
                 FILE *notices, recipe **out)
{
    *out = NULL;
    if (!path) path = "recipe";
    recipe *r = ds_calloc(1, sizeof *r, "the recipe");
    if (!r) return DS_ENOMEM;
    r->file = ds_strdup(path);
    rctx c = {r->file, notices, r};

    ynode *root = NULL;
    int rc = r->file ? ynode_parse(text ? text : "", text ? len : 0, r->file, false, &root) : DS_ENOMEM;
    if (!rc && !root && !(root = ynode_new(YN_MAP, RLINE_NONE))) rc = DS_ENOMEM;   /* an empty file: every key is missing */
    if (!rc && root->kind != YN_MAP) {
        char shown[64];
        rc = rctx_fail(&c, root->line, NULL, "a recipe is a mapping of keys (base_model: ..., train: {...}), got %s",
                       recipe_show(root, shown, sizeof shown));
    }
    if (!rc) rc = recipe_resolve_aliases(&c, root);
    for (int i = 0; !rc && i < n_overrides; i++) rc = recipe_apply_override(&c, root, overrides[i]);
    if (!rc) rc = read_recipe(&c, root);
    if (!rc) rc = recipe_make_plan(r);
    ynode_free(root);
    if (rc) {
        recipe_free(r);
        return rc;
    }
    *out = r;
    return DS_OK;
}

int recipe_load(const char *path, char *const *overrides, int n_overrides, FILE *notices, recipe **out)
{
    *out = NULL;
    if (ds_is_dir(path)) return ds_fail(DS_ENOINPUT, "%s: is a folder, expected a recipe file (.yaml)", path);
    char *text;
    size_t len;
    int rc = ds_read_file(path, &text, &len);
    if (rc) return rc;
    rc = recipe_parse(text, len, path, overrides, n_overrides, notices, out);
    free(text);
    return rc;
}

void recipe_loss_free(recipe_loss *l)
{
    if (l->module && l->cfg) {
        if (l->module->free_cfg) l->module->free_cfg(l->cfg);
        opt_free(l->module->keys, l->cfg);
    }
    free(l->cfg);
    l->cfg = NULL;
}

int recipe_loss_parse(const char *yaml, bool penalty, recipe_loss *out)
{
    memset(out, 0, sizeof *out);
    ynode *map = NULL;
    rctx c = {.src = "loss"};
    int rc = ynode_parse(yaml, strlen(yaml), "loss", false, &map);
    if (!rc && (!map || map->kind != YN_MAP)) rc = ds_fail(DS_ECONFIG, "loss: expected a map, got '%s'", yaml);
    if (!rc) rc = read_loss(&c, map, 0, "loss", penalty, out);
    if (rc) recipe_loss_free(out);
    ynode_free(map);
    return rc;
}

static void free_datasets(recipe_dataset *d, int n)
{
    for (int i = 0; i < n; i++) opt_free(RECIPE_DATASET_KEYS, &d[i]);
    free(d);
}

void recipe_free(recipe *r)
{
    if (!r) return;
    for (const recipe_section *s = RECIPE_SECTIONS; s->name; s++)
        if (s->keys) opt_free(s->keys, r);
    free_datasets(r->data.datasets, r->data.n_datasets);
    free_datasets(r->eval.datasets, r->eval.n_datasets);
    recipe_loss_free(&r->loss.main);
    for (int i = 0; i < r->loss.n_penalties; i++) recipe_loss_free(&r->loss.penalties[i]);
    free(r->loss.penalties);
    recipe_clean_free(r);
    free(r->base_model_name);
    free(r->file);
    free(r);
}
