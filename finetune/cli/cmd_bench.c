/* finetune/cli/cmd_bench.c - `ds-ft bench WHAT ...`: the benchmarks, each a
 * subcommand with its own options (bench_*.c). */
#include "bench.h"
#include "commands.h"

#include "core/status.h"

#include <string.h>

const ds_command DS_BENCH_COMMANDS[] = {
    {"train", bench_train, &BENCH_TRAIN_SPEC},
    {"tokenize", bench_tokenize, &BENCH_TOKENIZE_SPEC},
    {"kernels", bench_kernels, &BENCH_KERNELS_SPEC},
    {"clean", bench_clean, &BENCH_CLEAN_SPEC},
    {"generate", bench_generate, &BENCH_GENERATE_SPEC},
    {NULL, NULL, NULL},
};

static void list_benchmarks(FILE *f)
{
    char usage[2048];
    fprintf(f, "\nbenchmarks (ds-ft bench WHAT --help for each one's options):\n");
    for (const ds_command *c = DS_BENCH_COMMANDS; c->name; c++)
        fprintf(f, "  ds-ft %s\n      %s\n", cli_usage(c->spec, usage, sizeof usage), c->spec->summary);
}

static const cli_opt BENCH_OPTS[] = {CLI_END};

const cli_spec BENCH_SPEC = {"bench", "WHAT [options]", 1, -1, "train|tokenize|kernels|clean|generate [options]",
                             "benchmarks: training steps (tokens/s, memory), tokenizer (MB/s), GPU kernels, cleaning "
                             "(MB/s, memory), generation (tokens/s)",
                             BENCH_OPTS, list_benchmarks};

int cmd_bench(int argc, char **argv)
{
    if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        cli_help(&BENCH_SPEC, stdout);
        return CLI_HELP;
    }
    if (argc < 1) return cli_fail(&BENCH_SPEC, "say what to time");
    const ds_command *c = ds_find_command(DS_BENCH_COMMANDS, argv[0]);
    if (!c) return cli_fail(&BENCH_SPEC, "unknown benchmark '%s' (train, tokenize, kernels, clean, generate)", argv[0]);
    return c->run(argc - 1, argv + 1);
}
