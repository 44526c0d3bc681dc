/* finetune/doctor/doctor.h - `ds-ft doctor [RECIPE]`: will this machine run this
 * recipe, and how long will an epoch take, before anything is downloaded or
 * trained.
 *
 * The machine: the GPUs (name, compute capability, memory), the CUDA driver
 * and runtime, and whether this build has code for each GPU. For a recipe:
 * the device memory the engine would take (engine_estimate: the engine's own
 * sizing pass over the model's shapes, from config.json or, before the
 * download, from ds-ft's table of shapes) against the memory free, the
 * largest micro-batch that fits, and the time of an epoch: the tokens of the
 * training data (tokenized when the tokenizer is there, else estimated from
 * the records' text) over a training speed from `ds-ft bench train` figures.
 * Nothing is written, downloaded or trained.
 */
#ifndef DS_FINETUNE_DOCTOR_H
#define DS_FINETUNE_DOCTOR_H

#include "finetune/engine/engine.h"
#include "finetune/recipe/recipe.h"

#include "data/model_config.h"
#include "data/tokenizer/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* ---- GPUs (doctor_gpu.c) ---- */

typedef struct {
    const char *key;          /* what --gpu takes: "4090" */
    const char *match;        /* the part of the CUDA device name that tells the card: "RTX 4090" */
    const char *name;         /* "NVIDIA GeForce RTX 4090" */
    int major, minor;         /* compute capability */
    double mem_gib;           /* memory on the card */
    double bf16_tflops;       /* dense bf16 tensor-core peak with fp32 accumulation, from the datasheet */
} doctor_gpu;

/* doctor_gpu_find() : the card whose key is `s` (any case), or whose match is
 * part of the device name `s`. @return NULL when none. */
const doctor_gpu *doctor_gpu_find(const char *s);
/* doctor_gpu_at() : the i-th card of the table. @return NULL past the end. */
const doctor_gpu *doctor_gpu_at(int i);
/* doctor_gpu_keys() : "h100|h200|..." for messages. */
const char *doctor_gpu_keys(void);

/* doctor_build_covers() : whether a build compiled with the nvcc flags
 * `gencode` ("-gencode arch=compute_90a,code=sm_90a ...") has code a device
 * of compute capability major.minor runs: native code (sm_XY runs on X.Z for
 * Z >= Y; sm_XYa on X.Y only) or PTX the driver compiles (compute_XY, on X.Y
 * and newer). `how` gets which, or the targets the build has.
 * @return true when it runs. */
bool doctor_build_covers(const char *gencode, int major, int minor, char *how, size_t n);

typedef struct {
    double tokens_per_s;
    bool measured;            /* a `ds-ft bench train` figure as it is; false: scaled from one */
    char basis[320];          /* where the figure comes from, for the report */
} doctor_speed;

/* doctor_speed_for() : training tokens/s of a model of config cfg on `gpu`
 * at `rows` rows per micro-batch: `ds-ft bench train` figures measured on an
 * H100 (deepseek-llm-7b, SFT, sequence 2048, checkpointing on), scaled by the
 * card's bf16 peak against the H100's and by the model's work per token
 * against the 7B's; a paired loss (DPO) by the measured DPO/SFT ratio. */
doctor_speed doctor_speed_for(const doctor_gpu *gpu, const model_config *cfg, int rows, bool paired);

/* ---- a recipe (doctor_recipe.c) ---- */

/* Device memory a CUDA backend takes besides the engine's arenas: the
 * context, cuBLASLt's workspace and modules. `ds-ft bench train` on an H100
 * (README) has 7.0, 10.1 and 18.4 GiB in use at micro-batch 1, 4 and 12 where
 * engine_estimate gives arenas of 6.2, 9.3 and 17.6 GiB: 0.8 GiB more each
 * time. */
#define DOCTOR_CUDA_OVERHEAD ((size_t)820 << 20)

typedef struct {
    engine_memory arenas;     /* engine_estimate for the recipe's shapes */
    size_t total;             /* arenas + DOCTOR_CUDA_OVERHEAD (arenas.host, offloaded inputs, is not in it) */
} doctor_memory;

/* doctor_memory_for() : the device memory a training run of recipe r takes
 * on a GPU for a model of config cfg, with `micro_batch` examples per
 * micro-batch (r's own, or another to try). @return DS_OK or engine_estimate's
 * failure. */
int doctor_memory_for(const model_config *cfg, const recipe *r, int micro_batch, doctor_memory *out);
/* doctor_memory_offloaded() : the same with the layers' inputs offloaded to
 * host memory (what train.offload_activations: auto turns on where the run
 * would not fit otherwise; it needs gradient checkpointing). */
int doctor_memory_offloaded(const model_config *cfg, const recipe *r, int micro_batch, doctor_memory *out);

typedef struct {
    long examples;            /* training examples (after the validation split) */
    double tokens;            /* their tokens */
    double computed;          /* tokens the engine runs through: rows x their micro-batch's longest row */
    long micro_batches, steps;
    bool tokenized;           /* false: tokens estimated from the records' text */
    char basis[320];          /* how the figures were obtained */
} doctor_epoch;

/* doctor_epoch_for() : one epoch of recipe r's training data. With a
 * tokenizer the data is tokenized as the run would (no cache written) and
 * the epoch planned as the trainer plans it; without, the text of the
 * records is counted and turned into tokens at DOCTOR_BYTES_PER_TOKEN.
 * `say` gets what loading has to tell (may be NULL). @return DS_OK or the
 * data's failure (as the run would fail). */
#define DOCTOR_BYTES_PER_TOKEN 4.0
int doctor_epoch_for(const recipe *r, const tokenizer *tok, void (*say)(void *, const char *), void *say_ctx,
                     doctor_epoch *out);

/* ---- the report (doctor.c) ---- */

typedef struct {
    recipe *recipe;           /* NULL: the machine only */
    const char *gpu;          /* --gpu KEY: plan for this card (instead of the one present) */
    double mem_gib;           /* --mem-gib: the free memory to plan for; 0 = the card's */
} doctor_opts;

/* doctor_run() : print the report to `out`.
 * @return DS_OK; DS_EUSAGE for an unknown --gpu; a recipe whose data cannot
 * be read gets the data's failure. */
int doctor_run(const doctor_opts *o, FILE *out);

#endif
