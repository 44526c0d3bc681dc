/* Fuzz the bitsandbytes readers: a 4-bit checkpoint's tensors and quant_state
 * JSON (any bytes as a safetensors image), and config.json's
 * quantization_config. Everything is loaded or refused with a status. */
#include "core/status.h"
#include "data/safetensors.h"
#include "quant/bnb.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    bnb_config qc;
    bnb_config_parse((const char *)buf, size, "fuzz/config.json", &qc);
    st_file *f = NULL;
    st_set *s = NULL;
    if (st_file_parse(buf, size, "fuzz", &f) == DS_OK && st_set_wrap(f, "fuzz", &s) == DS_OK) {   /* s owns f */
        for (int i = 0; i < st_set_count(s); i++) {
            const char *name = st_set_at(s, i)->name;
            if (!bnb_is_quantized(s, name)) continue;
            nf4_tensor t = {0};
            if (bnb_load_weight(s, name, &t) == DS_OK) {
                if (t.view.n <= 1 << 16) {   /* dequantize small ones: every index must be in bounds */
                    float *w = malloc(sizeof(float) * (size_t)(t.view.n ? t.view.n : 1));
                    backend *be;
                    if (be_open(BE_CPU, &be) == DS_OK) {
                        op_nf4_dequant(be, w, &t.view);
                        be_close(be);
                    }
                    free(w);
                }
                nf4_tensor_free(&t);
            }
        }
        st_set_close(s);
    }
    free(buf);
    return 0;
}
