/* The whole model on the GPU against transformers + PEFT: fixtures/tiny-llama
 * logits, loss, SFT and DPO LoRA gradients through the CUDA engine (bf16
 * storage), within bf16 tolerances, over the 16-bit and the 4-bit base. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/safetensors.h"
#include "finetune/dump.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BF16_TOL 2e-2

static void need_gpu(void)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
}

static st_file *dump_on_gpu(const char *model_rel, bool four_bit)
{
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "dump.safetensors");
    char *model = tu_shared_path(model_rel), *adapter = tu_shared_path("fixtures/tiny-llama/adapter");
    char *input = tu_shared_path("fixtures/tiny-llama/reference.safetensors");
    dump_request r = {.model_dir = model, .adapter_dir = adapter, .input = input, .out = out, .device = "cuda",
                      .load_in_4bit = four_bit};
    cr_assert_eq(dump_run(&r), 0, "dump on cuda: %s", ds_errmsg());
    st_file *f;
    cr_assert_eq(st_file_open(out, &f), 0);
    free(dir); free(out); free(model); free(adapter); free(input);
    return f;
}

static double rel(const st_file *a, const st_file *b, const char *name)
{
    const st_tensor *x = st_file_find(a, name), *y = st_file_find(b, name);
    cr_assert(x && y, "%s missing", name);
    cr_assert_eq(x->numel, y->numel);
    float *p = malloc(sizeof(float) * x->numel), *q = malloc(sizeof(float) * y->numel);
    st_to_f32(x, p);
    st_to_f32(y, q);
    double e = tu_rel_err(p, q, (size_t)x->numel);
    free(p);
    free(q);
    return e;
}

static void expect_prefix(const st_file *got, const st_file *ref, const char *prefix, double tol)
{
    int n = 0;
    for (int i = 0; i < st_file_count(ref); i++) {
        const char *name = st_file_at(ref, i)->name;
        if (strncmp(name, prefix, strlen(prefix)) || !st_file_find(got, name)) continue;
        if (st_file_at(ref, i)->dtype != ST_F32) continue;
        double e = rel(got, ref, name);
        cr_expect(e <= tol, "%s: relative error %.3e > %.0e", name, e, tol);
        n++;
    }
    cr_expect(n > 0, "nothing compared for %s", prefix);
}

Test(gpu_engine, fixture_on_the_16bit_base, .init = need_gpu)
{
    st_file *got = dump_on_gpu("fixtures/tiny-llama", false), *ref;
    char *p = tu_shared_path("fixtures/tiny-llama/reference.safetensors");
    cr_assert_eq(st_file_open(p, &ref), 0);
    expect_prefix(got, ref, "base.", BF16_TOL);
    expect_prefix(got, ref, "lora.", BF16_TOL);
    expect_prefix(got, ref, "sft.grad.", BF16_TOL);
    expect_prefix(got, ref, "dpo.", BF16_TOL);
    st_file_close(got);
    st_file_close(ref);
    free(p);
}

/* Over the 4-bit base the reference is the CPU engine on the same NF4 weights. */
Test(gpu_engine, fixture_on_the_4bit_base_matches_the_cpu_engine, .init = need_gpu)
{
    st_file *got = dump_on_gpu("fixtures/tiny-llama", true);
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "cpu.safetensors");
    char *model = tu_shared_path("fixtures/tiny-llama"), *adapter = tu_shared_path("fixtures/tiny-llama/adapter");
    char *input = tu_shared_path("fixtures/tiny-llama/reference.safetensors");
    dump_request r = {.model_dir = model, .adapter_dir = adapter, .input = input, .out = out, .device = "cpu",
                      .load_in_4bit = true};
    cr_assert_eq(dump_run(&r), 0, "%s", ds_errmsg());
    st_file *cpu;
    cr_assert_eq(st_file_open(out, &cpu), 0);
    expect_prefix(got, cpu, "base.", BF16_TOL);
    expect_prefix(got, cpu, "lora.", BF16_TOL);
    expect_prefix(got, cpu, "sft.grad.", BF16_TOL);
    expect_prefix(got, cpu, "dpo.", BF16_TOL);
    st_file_close(got);
    st_file_close(cpu);
    free(dir); free(out); free(model); free(adapter); free(input);
}

/* bitsandbytes' own 4-bit logits (computed in bf16 by transformers). */
Test(gpu_engine, bitsandbytes_checkpoint_logits, .init = need_gpu)
{
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "d.safetensors");
    char *model = tu_shared_path("fixtures/tiny-llama-bnb-4bit");
    char *input = tu_shared_path("fixtures/tiny-llama-bnb-4bit/reference.safetensors");
    dump_request r = {.model_dir = model, .input = input, .out = out, .device = "cuda"};
    cr_assert_eq(dump_run(&r), 0, "%s", ds_errmsg());
    st_file *got, *ref;
    cr_assert_eq(st_file_open(out, &got), 0);
    cr_assert_eq(st_file_open(input, &ref), 0);
    const st_tensor *a = st_file_find(got, "base.logits"), *b = st_file_find(ref, "logits");
    float *x = malloc(sizeof(float) * a->numel), *y = malloc(sizeof(float) * b->numel);
    st_to_f32(a, x);
    st_to_f32(b, y);
    double e = tu_rel_err(x, y, (size_t)a->numel);
    cr_expect(e <= BF16_TOL, "4-bit logits on the GPU: relative error %.3e", e);
    free(x); free(y);
    st_file_close(got);
    st_file_close(ref);
    free(dir); free(out); free(model); free(input);
}
