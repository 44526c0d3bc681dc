/* finetune/model/model_shapes.c - built-in shapes written as the models'
 * config.json files (the keys that matter for the architecture), read by the
 * same parser as a model folder, so every family and rope type is exact. */
#include "model.h"

#include "core/status.h"

#include <string.h>
#include <strings.h>

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
    /* DeepSeek-V2-Lite (15.7B, 2.4B active): MLA with a full-rank q_proj, 64 routed experts
     * (6 per token) + 2 shared in layers 1..26, yarn x40 (so softmax_scale carries mscale^2) */
    {"deepseek-v2-lite",
     "{\"architectures\": [\"DeepseekV2ForCausalLM\"], \"hidden_size\": 2048, \"intermediate_size\": 10944, "
     "\"moe_intermediate_size\": 1408, \"num_hidden_layers\": 27, \"num_attention_heads\": 16, "
     "\"num_key_value_heads\": 16, \"n_routed_experts\": 64, \"n_shared_experts\": 2, \"num_experts_per_tok\": 6, "
     "\"first_k_dense_replace\": 1, \"moe_layer_freq\": 1, \"ep_size\": 1, \"kv_lora_rank\": 512, "
     "\"q_lora_rank\": null, \"qk_nope_head_dim\": 128, \"qk_rope_head_dim\": 64, \"v_head_dim\": 128, "
     "\"vocab_size\": 102400, \"max_position_embeddings\": 163840, \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000, "
     "\"rope_scaling\": {\"beta_fast\": 32, \"beta_slow\": 1, \"factor\": 40, \"mscale\": 0.707, "
     "\"mscale_all_dim\": 0.707, \"original_max_position_embeddings\": 4096, \"type\": \"yarn\"}, "
     "\"topk_method\": \"greedy\", \"n_group\": 1, \"topk_group\": 1, \"norm_topk_prob\": false, "
     "\"routed_scaling_factor\": 1.0, \"scoring_func\": \"softmax\", \"aux_loss_alpha\": 0.001, \"seq_aux\": true, "
     "\"hidden_act\": \"silu\", \"attention_bias\": false, \"tie_word_embeddings\": false, "
     "\"bos_token_id\": 100000, \"eos_token_id\": 100001, \"torch_dtype\": \"bfloat16\"}"},
};

const char *model_shape_config_names(void)
{
    return "deepseek-r1-distill-qwen-7b, deepseek-r1-distill-qwen-14b, deepseek-r1-distill-llama-8b, deepseek-v2-lite";
}

int model_shape_config(const char *name, model_config *c)
{
    for (size_t i = 0; i < sizeof CONFIGS / sizeof *CONFIGS; i++)
        if (!strcasecmp(CONFIGS[i].name, name))   /* as the Hub spells it too: DeepSeek-V2-Lite */
            return model_config_parse(CONFIGS[i].config, strlen(CONFIGS[i].config), CONFIGS[i].name, c);
    return DS_ENOINPUT;
}
