/* fuzz/fuzz_adapter.c - an adapter's two files as a bundle carries them:
 * adapter_config.json (kinds and ranges of PEFT's keys, the features refused)
 * and adapter_model.safetensors (PEFT LoRA keys of the targeted modules, 2-D
 * float tensors of the config's rank, finite values), checked in memory.
 *
 * Input: the config text, a NUL byte, then the safetensors bytes (no NUL: the
 * config alone, against an empty safetensors). Every refusal must be a status
 * with a message; the sanitizers catch the rest. */
#include "adapters/lora.h"
#include "core/status.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t cfg_len = nul ? (size_t)(nul - data) : size;
    size_t st_len = nul ? size - cfg_len - 1 : 0;
    /* Exact-size copies, so that a read past either end is caught. */
    char *cfg = malloc(cfg_len ? cfg_len : 1);
    uint8_t *st = malloc(st_len ? st_len : 1);
    memcpy(cfg, data, cfg_len);
    if (st_len) memcpy(st, nul + 1, st_len);
    ds_clear_error();
    int rc = lora_check_files(cfg, cfg_len, st, st_len, "fuzz");
    if (rc != DS_OK && !ds_errmsg()[0]) __builtin_trap();   /* a refusal without a message */
    free(cfg);
    free(st);
    return 0;
}
