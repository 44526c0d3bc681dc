/* Fuzz the config.json reader: any bytes are parsed or refused with a status. */
#include "core/status.h"
#include "data/model_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    model_config c;
    if (model_config_parse(text, size, "fuzz/config.json", &c) == DS_OK) {
        if (c.hidden_size <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 || c.head_dim <= 0 ||
            c.num_heads % c.num_kv_heads || !(c.rope_theta > 0) || !(c.rope_factor > 0))
            __builtin_trap();   /* an accepted config must be usable */
        for (int t = 0; t < LIN_COUNT; t++) {
            int out, in;
            llama_linear_shape(&c, (llama_linear)t, &out, &in);
        }
        for (int s = 0; c.ds.on && s < deepseek_slots(&c); s++) {   /* DeepSeek: every linear of a MoE layer */
            int out, in;
            if (deepseek_linear(&c, c.num_layers - 1, s, NULL, 0, NULL, &out, &in) && (out <= 0 || in <= 0))
                __builtin_trap();
        }
        model_config_params(&c);
    }
    free(text);
    return 0;
}
