/* finetune/cli/cmd_bench.c - `ds-ft bench WHAT ...`. */
#include "bench.h"
#include "commands.h"

#include "core/status.h"

#include <string.h>

int cmd_bench(int argc, char **argv)
{
    if (argc < 1) return ds_fail(DS_EUSAGE, "bench: say what to time: `ds-ft bench train|tokenize|kernels|clean ...`");
    if (!strcmp(argv[0], "train")) return bench_train(argc - 1, argv + 1);
    if (!strcmp(argv[0], "tokenize")) return bench_tokenize(argc - 1, argv + 1);
    if (!strcmp(argv[0], "kernels")) return bench_kernels(argc - 1, argv + 1);
    if (!strcmp(argv[0], "clean")) return bench_clean(argc - 1, argv + 1);
    return ds_fail(DS_EUSAGE, "bench: unknown benchmark '%s' (train, tokenize, kernels, clean)", argv[0]);
}
