/* finetune/model/model_shapes.c - built-in shapes written as the models'
 * config.json files (the keys that matter for the architecture), read by the
 * same parser as a model folder, so every family and rope type is exact. */
#include "model.h"

#include "core/status.h"

#include <string.h>

static const struct {
    const char *name;
    const char *config;
} CONFIGS[] = {
    {"deepseek-r1-distill-qwen-7b",
     "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 3584, \"intermediate_size\": 18944, "
     "\"num_hidden_layers\": 28, \"num_attention_heads\": 28, \"num_key_value_heads\": 4, \"vocab_size\": 152064, "
     "\"max_position_embeddings\": 131072, \"rope_theta\": 10000, \"rms_norm_eps\": 1e-06, "
     "\"sliding_window\": 4096, \"use_sliding_window\": false, \"max_window_layers\": 28, "
     "\"tie_word_embeddings\": false, \"bos_token_id\": 151643, \"eos_token_id\": 151643}"},
    {"deepseek-r1-distill-qwen-14b",
     "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 5120, \"intermediate_size\": 13824, "
     "\"num_hidden_layers\": 48, \"num_attention_heads\": 40, \"num_key_value_heads\": 8, \"vocab_size\": 152064, "
     "\"max_position_embeddings\": 131072, \"rope_theta\": 1000000.0, \"rms_norm_eps\": 1e-05, "
     "\"sliding_window\": 131072, \"use_sliding_window\": false, \"max_window_layers\": 48, "
     "\"tie_word_embeddings\": false, \"bos_token_id\": 151643, \"eos_token_id\": 151643}"},
    {"deepseek-r1-distill-llama-8b",
     "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 4096, \"intermediate_size\": 14336, "
     "\"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"num_key_value_heads\": 8, \"vocab_size\": 128256, "
     "\"max_position_embeddings\": 131072, \"rope_theta\": 500000.0, \"rms_norm_eps\": 1e-05, "
     "\"rope_scaling\": {\"factor\": 8.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
     "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}, "
     "\"tie_word_embeddings\": false, \"bos_token_id\": 128000, \"eos_token_id\": 128001}"},
};

const char *model_shape_config_names(void)
{
    return "deepseek-r1-distill-qwen-7b, deepseek-r1-distill-qwen-14b, deepseek-r1-distill-llama-8b";
}

int model_shape_config(const char *name, model_config *c)
{
    for (size_t i = 0; i < sizeof CONFIGS / sizeof *CONFIGS; i++)
        if (!strcmp(CONFIGS[i].name, name))
            return model_config_parse(CONFIGS[i].config, strlen(CONFIGS[i].config), CONFIGS[i].name, c);
    return DS_ENOINPUT;
}
