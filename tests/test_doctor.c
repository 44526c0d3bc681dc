/* tests/test_doctor.c - what ds-ft doctor builds on: the engine's memory
 * estimate against real engines (CPU) and against `ds-ft bench train`'s
 * measured memory on an H100, the build-covers-this-GPU rule, the speed
 * figures, and the shape of a Hugging Face model id. */
#include "testutil.h"

#include "finetune/doctor/doctor.h"
#include "finetune/engine/engine.h"
#include "finetune/model/model.h"

#include "core/status.h"
#include "data/hub/hub.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

/* The estimate from config.json alone equals the arenas engine_create allocates. */
static void same_as_engine(const char *dir, bool four_bit, bool checkpointing, bool training)
{
    llama_model *m;
    model_load_opts lo = {.load_in_4bit = four_bit, .double_quant = true};
    cr_assert_eq(model_load(dir, &lo, &m), DS_OK, "%s", ds_errmsg());
    lora_config lc = {.r = 8, .alpha = 16, .targets = (1u << LIN_Q) | (1u << LIN_V) | (1u << LIN_DOWN)};
    lora_adapter *ad;
    cr_assert_eq(lora_create(&m->cfg, &lc, "x", &ad), DS_OK, "%s", ds_errmsg());
    engine_opts eo = {.max_B = 3, .max_T = 40, .checkpointing = checkpointing, .training = training, .adapter = ad};
    backend *be;
    cr_assert_eq(be_open(BE_CPU, &be), DS_OK);
    engine *e;
    cr_assert_eq(engine_create(be, m, &eo, &e), DS_OK, "%s", ds_errmsg());
    engine_memory real = engine_memory_use(e), est;
    cr_assert_eq(engine_estimate(&m->cfg, m->quantized, BE_CPU, &eo, &est), DS_OK, "%s", ds_errmsg());
    const char *what = four_bit ? "4-bit" : "16-bit";
    cr_expect_eq(est.weights, real.weights, "%s %s: weights %zu, the engine %zu", dir, what, est.weights, real.weights);
    cr_expect_eq(est.adapter, real.adapter, "%s %s: adapter", dir, what);
    cr_expect_eq(est.activations, real.activations, "%s %s: activations %zu, the engine %zu", dir, what,
                 est.activations, real.activations);
    cr_expect_eq(est.workspace, real.workspace, "%s %s: workspace", dir, what);
    engine_free(e);
    be_close(be);
    lora_free(ad);
    model_free(m);
}

Test(estimate, equals_the_engine_on_the_cpu)
{
    char *tiny = tu_source_path("models/tiny"), *fix = tu_shared_path("fixtures/tiny-llama");
    same_as_engine(tiny, true, true, true);
    same_as_engine(tiny, false, true, true);
    same_as_engine(tiny, true, false, true);
    same_as_engine(tiny, true, false, false);
    same_as_engine(fix, true, true, true);
    same_as_engine(fix, false, false, true);
    free(tiny);
    free(fix);
}

/* `ds-ft bench train` on an H100 (README, "On the GPU" and "Long sequences"): deepseek-llm-7b, QLoRA
 * r=16 on q_proj and v_proj, checkpointing: 6.96 and 9.87 GiB in use at micro-batch 1 and 4 of 2,048
 * tokens, at 4 with the layers' inputs offloaded 7.50 GiB and with the attention output kept too 7.57,
 * with every layer's projections kept as well 14.82 (18.96 without offload; 11.71 with the attention
 * output alone kept on the device), at 1 so 8.32; one row of 65,536 tokens offloaded 14.55 GiB (15.09
 * with the attention output kept), of 131,072 22.61. */
Test(estimate, matches_the_h100_measurements)
{
    model_config cfg;
    cr_assert_eq(model_shape("deepseek-llm-7b", &cfg), DS_OK);
    lora_config lc = {.r = 16, .alpha = 32, .targets = (1u << LIN_Q) | (1u << LIN_V)};
    lora_adapter *ad;
    cr_assert_eq(lora_create(&cfg, &lc, "x", &ad), DS_OK);
    /* keep: 1 = the attention output, 2 = and every layer's projections */
    static const struct { int rows, seq; bool offload; int keep; double gib; } measured[] = {
        {1, 2048, false, 0, 6.96}, {4, 2048, false, 0, 9.87}, {4, 2048, true, 0, 7.50},
        {4, 2048, true, 1, 7.57}, {4, 2048, true, 2, 14.82}, {4, 2048, false, 2, 18.96},
        {4, 2048, false, 1, 11.71}, {1, 2048, true, 2, 8.32}, {1, 65536, true, 0, 14.55},
        {1, 65536, true, 1, 15.09}, {1, 131072, true, 0, 22.61}};
    for (int i = 0; i < (int)(sizeof measured / sizeof *measured); i++) {
        engine_opts eo = {.max_B = measured[i].rows, .max_T = measured[i].seq, .checkpointing = true,
                          .training = true, .adapter = ad, .offload = measured[i].offload,
                          .keep_attention = measured[i].keep >= 1,
                          .keep_projections = measured[i].keep == 2 ? cfg.num_layers : 0};
        engine_memory m;
        cr_assert_eq(engine_estimate(&cfg, true, BE_CUDA, &eo, &m), DS_OK, "%s", ds_errmsg());
        double gib = (double)(m.weights + m.adapter + m.activations + m.workspace + DOCTOR_CUDA_OVERHEAD) / (1 << 30);
        cr_expect(fabs(gib - measured[i].gib) < 0.15, "%d x %d tokens%s%s: estimated %.2f GiB, measured %.2f GiB",
                  measured[i].rows, measured[i].seq, measured[i].offload ? ", offloaded" : "",
                  measured[i].keep == 2 ? ", attention and projections kept" : measured[i].keep ? ", attention kept" : "",
                  gib, measured[i].gib);
    }
    lora_free(ad);
}

Test(estimate, refuses_what_the_engine_refuses)
{
    model_config cfg;
    cr_assert_eq(model_shape("deepseek-llm-7b", &cfg), DS_OK);
    cfg.head_dim = 96;   /* no CUDA attention kernel for it */
    engine_opts eo = {.max_B = 1, .max_T = 64, .training = true};
    engine_memory m;
    cr_expect_eq(engine_estimate(&cfg, true, BE_CUDA, &eo, &m), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "head_dim 96"), "%s", ds_errmsg());
}

#define GENCODE "-gencode arch=compute_90a,code=sm_90a -gencode arch=compute_89,code=sm_89 -gencode arch=compute_89,code=compute_89"

Test(build, covers_the_gpus_its_code_runs_on)
{
    char how[512];
    cr_expect(doctor_build_covers(GENCODE, 9, 0, how, sizeof how) && strstr(how, "native code (sm_90a)"), "%s", how);
    cr_expect(doctor_build_covers(GENCODE, 8, 9, how, sizeof how) && strstr(how, "native code (sm_89)"), "%s", how);
    cr_expect(doctor_build_covers(GENCODE, 12, 0, how, sizeof how) && strstr(how, "PTX compute_89"), "%s", how);
    cr_expect(doctor_build_covers(GENCODE, 10, 0, how, sizeof how) && strstr(how, "PTX compute_89"), "%s", how);
    cr_expect(!doctor_build_covers(GENCODE, 8, 6, how, sizeof how), "sm_89 does not run on 8.6: %s", how);
    cr_expect(strstr(how, "sm_90a, sm_89, compute_89") && strstr(how, "arch=compute_86,code=sm_86"), "%s", how);
    cr_expect(!doctor_build_covers(GENCODE, 8, 0, how, sizeof how), "A100: %s", how);
    /* sm_90a runs on 9.0 only; plain sm_80 on any 8.x from 8.0; the bracket form */
    cr_expect(!doctor_build_covers("-gencode arch=compute_90a,code=sm_90a", 9, 1, how, sizeof how), "%s", how);
    cr_expect(doctor_build_covers("-gencode arch=compute_80,code=[sm_80,compute_80]", 8, 6, how, sizeof how) &&
              strstr(how, "sm_80"), "%s", how);
    cr_expect(!doctor_build_covers("", 9, 0, how, sizeof how) && strstr(how, "has none"), "%s", how);
}

Test(speed, the_h100_figures_and_the_scaled_ones)
{
    model_config cfg, small;
    cr_assert_eq(model_shape("deepseek-llm-7b", &cfg), DS_OK);
    cr_assert_eq(model_shape("deepseek-coder-1.3b", &small), DS_OK);
    const doctor_gpu *h100 = doctor_gpu_find("h100"), *rtx = doctor_gpu_find("NVIDIA GeForce RTX 4090");
    cr_assert(h100 && rtx && !strcmp(rtx->key, "4090"));
    cr_expect_null(doctor_gpu_find("NVIDIA GeForce GTX 1080"));
    doctor_speed s = doctor_speed_for(h100, &cfg, 4, false);
    cr_expect(s.measured && fabs(s.tokens_per_s - 11477) < 0.5, "%f", s.tokens_per_s);
    s = doctor_speed_for(h100, &cfg, 8, false);   /* between the measured 4 and 12 */
    cr_expect(!s.measured && fabs(s.tokens_per_s - 11637) < 0.5, "%f", s.tokens_per_s);
    s = doctor_speed_for(rtx, &cfg, 4, false);
    cr_expect(!s.measured && fabs(s.tokens_per_s - 11477 * 165.2 / 989.4) < 0.5, "%f", s.tokens_per_s);
    cr_expect(strstr(s.basis, "estimated") && strstr(s.basis, "165/989"), "%s", s.basis);
    s = doctor_speed_for(h100, &small, 4, false);   /* less work per token: faster */
    cr_expect(!s.measured && s.tokens_per_s > 3 * 11477, "%f", s.tokens_per_s);
    s = doctor_speed_for(h100, &cfg, 4, true);
    cr_expect(!s.measured && fabs(s.tokens_per_s - 9308) < 0.5, "DPO: %f", s.tokens_per_s);
}

Test(hub, model_ids)
{
    static const char *const ids[] = {"deepseek-ai/deepseek-llm-7b-base", "org/name@main", "org/name@refs/pr/3",
                                      "a_b/c.d-e", "org/name@0123456789abcdef0123456789abcdef01234567"};
    static const char *const not_ids[] = {"name", "./org/name", "/abs/path", "a/b/c", "org/.hidden", "org/name@",
                                          "org/name@../x", "~/models/x", "org/na me", "@org/name", "org//name"};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) cr_expect(hub_is_model_id(ids[i]), "%s", ids[i]);
    for (size_t i = 0; i < sizeof not_ids / sizeof *not_ids; i++) cr_expect(!hub_is_model_id(not_ids[i]), "%s", not_ids[i]);
}
