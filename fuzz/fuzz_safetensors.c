/* Fuzz the safetensors parser: any bytes must either parse into tensors that
 * lie inside the buffer, or be refused with a status - never crash or read
 * outside. Every accepted tensor is read in full. */
#include "core/status.h"
#include "data/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy, so that out-of-bounds reads are caught by ASan. */
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    st_file *f = NULL;
    if (st_file_parse(buf, size, "fuzz", &f) == DS_OK) {
        for (int i = 0; i < st_file_count(f); i++) {
            const st_tensor *t = st_file_at(f, i);
            const uint8_t *p = t->data;
            if (p < buf || p + t->nbytes > buf + size) __builtin_trap();
            if (t->numel <= 4096) {
                float *tmp = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
                st_to_f32(t, tmp);
                free(tmp);
                int32_t *itmp = malloc(sizeof(int32_t) * (size_t)(t->numel ? t->numel : 1));
                st_to_i32(t, itmp);
                free(itmp);
            }
            st_file_find(f, t->name);
        }
        st_file_meta(f, "format");
        st_file_close(f);
    }
    free(buf);
    return 0;
}
