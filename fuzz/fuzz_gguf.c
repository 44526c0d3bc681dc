/* Fuzz the GGUF reader: any bytes must either parse into key/values and
 * tensors that lie inside the buffer, or be refused with a status - never
 * crash or read outside. Every accepted key/value is formatted, and every
 * small tensor of a type ds-ft reads is dequantized. */
#include "core/status.h"
#include "data/gguf/gguf.h"
#include "quant/ggml_quant.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy, so that out-of-bounds reads are caught by ASan. */
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    gguf_file *f = NULL;
    if (gguf_parse(buf, size, "fuzz", &f) == DS_OK) {
        char line[256];
        for (int i = 0; i < gguf_kv_count(f); i++) {
            const gguf_kv *kv = gguf_kv_at(f, i);
            gguf_kv_format(kv, line, sizeof line);
            if (gguf_find_kv(f, kv->key) != kv) __builtin_trap();
        }
        for (int i = 0; i < gguf_tensor_count(f); i++) {
            const gguf_tensor *t = gguf_tensor_at(f, i);
            const uint8_t *p = t->data;
            if (t->nbytes && (p < buf || p + t->nbytes > buf + size)) __builtin_trap();
            if (t->ne[0] < 1 || t->nelem > 65536 || !ggml_can_quantize(t->type)) continue;
            float *y = malloc(sizeof(float) * (size_t)t->nelem);
            if (ggml_dequantize(t->type, t->data, y, t->nelem / t->ne[0], t->ne[0]) != DS_OK) __builtin_trap();
            free(y);
        }
        gguf_close(f);
    }
    free(buf);
    return 0;
}
