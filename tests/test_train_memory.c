/* tests/test_train_memory.c - the trainer's memory check before the first step
 * (finetune/train/trainer_memory.c), on the deepseek-llm-7b shape (NF4, LoRA
 * r=16 on q/v) and made-up free memory: a run that fits passes; one that does
 * not stops with DS_ETRAIN naming the recipe and a change, and the change it
 * names fits while the next larger one does not. */
#include "testutil.h"
#include "finetune/train/trainer.h"
#include "finetune/model/model.h"
#include "core/status.h"
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GiB ((size_t)1 << 30)

static model_config cfg;
static lora_adapter *ad;
static recipe r;

static void setup(void)
{
    cr_assert_eq(model_shape("deepseek-llm-7b", &cfg), DS_OK);
    lora_config lc = {.r = 16, .alpha = 32, .targets = (1u << LIN_Q) | (1u << LIN_V)};
    cr_assert_eq(lora_create(&cfg, &lc, "x", &ad), DS_OK);
    memset(&r, 0, sizeof r);
    r.file = "recipes/medical.yaml";
}

static void teardown(void) { lora_free(ad); }

/* The check for micro-batch mb of sequence T with `free_gib` free. */
static int check(int mb, int T, bool ckpt, double free_gib)
{
    r.plan.micro_batch = mb;
    r.plan.rows = mb;
    engine_opts o = {.max_B = mb, .max_T = T, .checkpointing = ckpt, .training = true, .adapter = ad};
    return trainer_memory_check(&r, &cfg, true, &o, (size_t)(free_gib * (double)GiB), "a test GPU", NULL);
}

TestSuite(train_memory, .init = setup, .fini = teardown);

Test(train_memory, a_run_that_fits_passes)
{
    cr_expect_eq(check(4, 2048, true, 22.0), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(check(1, 2048, true, 8.0), DS_OK, "%s", ds_errmsg());
}

Test(train_memory, the_micro_batch_it_names_fits_and_one_more_does_not)
{
    cr_assert_eq(check(12, 2048, true, 12.0), DS_ETRAIN);
    const char *msg = ds_errmsg();
    printf("TRAINMEMORY %s\n", msg);
    cr_expect(strstr(msg, "recipes/medical.yaml: out of device memory before the first step"), "%s", msg);
    cr_expect(strstr(msg, "12.00 GiB free"), "%s", msg);
    const char *at = strstr(msg, "train.micro_batch_size: ");
    cr_assert(at, "%s", msg);
    int mb = atoi(at + strlen("train.micro_batch_size: "));
    cr_assert(mb >= 1 && mb < 12, "%s", msg);
    cr_expect_eq(check(mb, 2048, true, 12.0), DS_OK, "micro-batch %d: %s", mb, ds_errmsg());
    cr_expect_eq(check(mb + 1, 2048, true, 12.0), DS_ETRAIN, "micro-batch %d fits too", mb + 1);
}

Test(train_memory, checkpointing_comes_first)
{
    cr_assert_eq(check(4, 2048, false, 12.0), DS_ETRAIN);
    cr_expect(strstr(ds_errmsg(), "set train.gradient_checkpointing: true (an estimated"), "%s", ds_errmsg());
}

Test(train_memory, then_a_shorter_sequence)
{
    /* just under what one row of 2048 needs: half the sequence fits */
    double lo = 1.0, hi = 24.0;
    for (int i = 0; i < 40; i++) {
        double mid = (lo + hi) / 2;
        if (check(1, 2048, true, mid) == DS_OK) hi = mid;
        else lo = mid;
    }
    cr_assert_eq(check(1, 2048, true, lo), DS_ETRAIN);
    cr_expect(strstr(ds_errmsg(), "set data.sequence_len: 1024 at micro_batch_size 1"), "%s", ds_errmsg());
    cr_expect_eq(check(1, 1024, true, lo), DS_OK, "%s", ds_errmsg());
}

Test(train_memory, nothing_fits_on_a_card_smaller_than_the_weights)
{
    cr_assert_eq(check(1, 2048, true, 3.0), DS_ETRAIN);
    cr_expect(strstr(ds_errmsg(), "a card with more free memory"), "%s", ds_errmsg());
}

/* Long sequences: the layers' inputs offloaded to host memory. */
static size_t estimate(int T, bool offload)
{
    engine_opts o = {.max_B = 1, .max_T = T, .checkpointing = true, .training = true, .adapter = ad, .offload = offload};
    engine_memory m;
    cr_assert_eq(engine_estimate(&cfg, true, BE_CUDA, &o, &m), DS_OK, "%s", ds_errmsg());
    printf("TRAINMEMORY seq %d offload %d: weights %.2f adapter %.2f activations %.2f workspace %.2f host %.2f GiB\n", T,
           offload, (double)m.weights / GiB, (double)m.adapter / GiB, (double)m.activations / GiB,
           (double)m.workspace / GiB, (double)m.host / GiB);
    cr_expect_eq(m.host > 0, offload);
    return engine_memory_total(&m);
}

Test(train_memory, offloaded_long_sequences_fit_a_24_gib_card)
{
    cr_expect_lt(estimate(65536, true), 15 * GiB, "65,536 tokens within 15 GiB of arenas");
    cr_expect_lt(estimate(131072, true), 23 * GiB, "131,072 tokens within 23 GiB of arenas");
    cr_expect_gt(estimate(65536, false), 24 * GiB, "65,536 tokens need more than 24 GiB without offload");
    /* the 2,048-token run is untouched: no offload, the MLP in one piece */
    size_t short_run = estimate(2048, false);
    cr_expect_lt(short_run, estimate(4096, false));
}

Test(train_memory, auto_turns_offload_on_only_where_needed)
{
    r.train.offload_activations = (char *)"auto";
    engine_opts o = {.max_B = 1, .max_T = 65536, .checkpointing = true, .training = true, .adapter = ad};
    cr_expect(trainer_offload_needed(&r, &cfg, true, &o, 22 * GiB));
    cr_expect(!trainer_offload_needed(&r, &cfg, true, &o, 120 * GiB));
    o.max_T = 2048;
    cr_expect(!trainer_offload_needed(&r, &cfg, true, &o, 22 * GiB));
    r.train.offload_activations = (char *)"false";
    o.max_T = 65536;
    cr_expect(!trainer_offload_needed(&r, &cfg, true, &o, 22 * GiB), "the recipe turned it off");
}

Test(train_memory, offload_turned_off_is_named_first)
{
    r.train.offload_activations = (char *)"false";
    cr_assert_eq(check(1, 65536, true, 22.0), DS_ETRAIN);
    cr_expect(strstr(ds_errmsg(), "set train.offload_activations: true (an estimated"), "%s", ds_errmsg());
}

/* The kept attention output and projections on a 24 GB card (23 GiB free):
 * at micro-batch 4 x 2,048 the attention output is kept on the card and
 * every layer's projections fit; at 65,536 tokens offloaded, a few layers'
 * do, and the run with them still passes the memory check with 1 GiB left;
 * none without the attention output kept, none on a card that is full. */
Test(train_memory, the_kept_projections_take_what_the_card_has_left)
{
    const size_t free_b = 23 * GiB;
    engine_opts o = {.max_B = 4, .max_T = 2048, .checkpointing = true, .training = true, .adapter = ad};
    cr_expect_eq(train_projections_that_fit(&cfg, true, &o, free_b), 0, "nothing without the attention kept");
    cr_assert(train_keep_attention_pays(&cfg, true, &o, free_b), "the attention output fits on the card");
    o.keep_attention = true;
    cr_expect_eq(train_projections_that_fit(&cfg, true, &o, free_b), cfg.num_layers);
    cr_expect_eq(train_projections_that_fit(&cfg, true, &o, 12 * GiB), 0, "a card with 12 GiB has no room left");

    o = (engine_opts){.max_B = 1, .max_T = 65536, .checkpointing = true, .training = true, .adapter = ad,
                      .offload = true, .keep_attention = true};
    int n = train_projections_that_fit(&cfg, true, &o, free_b);
    cr_expect(n >= 1 && n < cfg.num_layers, "65,536 tokens: %d layers' projections", n);
    o.keep_projections = n;
    size_t need = 0;
    r.plan.micro_batch = r.plan.rows = 1;
    cr_expect_eq(trainer_memory_check(&r, &cfg, true, &o, free_b - GiB, "a test GPU", &need), DS_OK,
                 "with %d layers' projections the run fits with 1 GiB to spare: %s", n, ds_errmsg());
    o.keep_projections = n + 1;
    cr_expect_eq(trainer_memory_check(&r, &cfg, true, &o, free_b - GiB, "a test GPU", &need), DS_ETRAIN,
                 "one more layer's would not");
}

/* train.keep_projections: true on a card it does not fit: the change named
 * first is to let auto keep what fits. */
Test(train_memory, every_layers_projections_that_do_not_fit_are_named_first)
{
    r.plan.micro_batch = r.plan.rows = 4;
    engine_opts o = {.max_B = 4, .max_T = 2048, .checkpointing = true, .training = true, .adapter = ad,
                     .keep_attention = true, .keep_projections = cfg.num_layers};
    cr_assert_eq(trainer_memory_check(&r, &cfg, true, &o, 16 * GiB, "a test GPU", NULL), DS_ETRAIN);
    cr_expect(strstr(ds_errmsg(), "set train.keep_projections: auto (an estimated"), "%s", ds_errmsg());
}
