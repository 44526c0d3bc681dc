"""The tiny model families of the reference fixtures (scripts/make_fixtures.py):
each one's config.json, the checkpoint tensors it holds (Hub names and
shapes), and the LoRA targets of its adapter. Plain Python, no torch.

Config styles:
- "old": config.json is written exactly as given here, in the style of the
  real checkpoints on the Hub (`rope_theta` + `rope_scaling`, `torch_dtype`).
- "new": the dict here goes through transformers (AutoConfig.from_pretrained,
  then save_pretrained), so config.json is what transformers 5 itself writes
  (`rope_parameters`, `dtype`), as for fixtures/tiny-llama.
"""

VOCAB = 1024
HIDDEN = 64

TOKENS = {"bos_token_id": 0, "eos_token_id": 1}


def _llama_like(model_type, arch, **extra):
    cfg = {
        "architectures": [arch],
        "model_type": model_type,
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": 160,
        "max_position_embeddings": 256,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": False,
        "use_cache": True,
        "vocab_size": VOCAB,
        **TOKENS,
    }
    cfg.update(extra)
    return cfg


def _deepseek(model_type, arch, **extra):
    cfg = {
        "architectures": [arch],
        "model_type": model_type,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "aux_loss_alpha": 0.001,
        "first_k_dense_replace": 1,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": 160,
        "kv_lora_rank": 32,
        "max_position_embeddings": 64,
        "moe_intermediate_size": 32,
        "moe_layer_freq": 1,
        "n_routed_experts": 8,
        "num_attention_heads": 4,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 3,
        "num_key_value_heads": 4,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8,
        "rms_norm_eps": 1e-06,
        "seq_aux": True,
        "tie_word_embeddings": False,
        "use_cache": True,
        "v_head_dim": 16,
        "vocab_size": VOCAB,
        **TOKENS,
    }
    cfg.update(extra)
    return cfg


# YaRN as DeepSeek-V2-Lite has it (factor 40 over 4096 positions, beta 32/1,
# mscale = mscale_all_dim = 0.707), scaled down so that it acts within the
# 24-token inputs: 4 x 16 positions.
V2_LITE_YARN = {
    "beta_fast": 32,
    "beta_slow": 1,
    "factor": 4.0,
    "mscale": 0.707,
    "mscale_all_dim": 0.707,
    "original_max_position_embeddings": 16,
    "type": "yarn",
}


def _deepseek_v2(**extra):
    """DeepSeek-V2 as V2-Lite's config.json has it (old style, 2 shared experts)."""
    return _deepseek("deepseek_v2", "DeepseekV2ForCausalLM", n_shared_experts=2, scoring_func="softmax",
                     rope_theta=10000.0, rope_scaling=dict(V2_LITE_YARN), torch_dtype="bfloat16", **extra)


# LoRA targets of the DeepSeek families besides the query: the rest of MLA and
# every MLP (the dense layer's, the shared experts', each routed expert's).
MLA_AND_MLP_TARGETS = ["kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Family:
    def __init__(self, name, style, config, targets, about):
        self.name, self.style, self.config, self.targets, self.about = name, style, config, targets, about

    @property
    def moe(self):
        return self.config["model_type"] in ("deepseek_v2", "deepseek_v3")


FAMILIES = [
    Family(
        "tiny-qwen2", "old",
        _llama_like("qwen2", "Qwen2ForCausalLM", max_window_layers=2, rope_scaling=None, rope_theta=10000.0,
                    sliding_window=4096, use_sliding_window=False, tie_word_embeddings=True,
                    torch_dtype="bfloat16", use_mrope=False),
        ["q_proj", "v_proj"],
        "Qwen2 (DeepSeek-R1-Distill-Qwen): q/k/v biases, tied embeddings (no lm_head.weight in the file), "
        "a sliding_window value that use_sliding_window=false switches off, old config style"),
    Family(
        "tiny-qwen3", "new",
        _llama_like("qwen3", "Qwen3ForCausalLM", head_dim=32, attention_bias=False, max_window_layers=2,
                    rope_parameters={"rope_theta": 10000.0, "rope_type": "default"}, sliding_window=None,
                    use_sliding_window=False, dtype="bfloat16"),
        ["q_proj", "k_proj", "v_proj", "o_proj"],
        "Qwen3: q_norm/k_norm (RMSNorm per head before rope), head_dim 32 with hidden 64 and 4 heads "
        "(q_proj is 128 wide), config written by transformers"),
    Family(
        "tiny-llama31", "old",
        _llama_like("llama", "LlamaForCausalLM", head_dim=16, attention_bias=False, mlp_bias=False, pretraining_tp=1,
                    max_position_embeddings=1024, rms_norm_eps=1e-05, rope_theta=10000.0,
                    rope_scaling={"factor": 8.0, "high_freq_factor": 8.0, "low_freq_factor": 1.0,
                                  "original_max_position_embeddings": 128, "rope_type": "llama3"},
                    torch_dtype="bfloat16"),
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "Llama-3.1 (DeepSeek-R1-Distill-Llama): rope_type llama3 with all three wavelength regimes among the 8 "
        "frequencies of head_dim 16, old config style (rope_theta + rope_scaling), LoRA on every linear"),
    Family(
        "tiny-mistral", "new",
        _llama_like("mistral", "MistralForCausalLM", head_dim=16, rms_norm_eps=1e-05, sliding_window=8,
                    rope_parameters={"rope_theta": 10000.0, "rope_type": "default"}, dtype="bfloat16"),
        ["q_proj", "v_proj"],
        "Mistral: sliding_window 8, shorter than the 24-token input, so the window changes the result"),
    Family(
        "tiny-llama-yarn", "new",
        _llama_like("llama", "LlamaForCausalLM", head_dim=16, attention_bias=False, mlp_bias=False, pretraining_tp=1,
                    max_position_embeddings=64,
                    rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                     "original_max_position_embeddings": 16, "beta_fast": 0.75, "beta_slow": 0.05},
                    dtype="bfloat16"),
        ["q_proj", "k_proj", "v_proj", "o_proj"],
        "Llama with rope_type yarn in the new style: factor 4 over 16 original positions; beta_fast 0.75 and "
        "beta_slow 0.05 put the ramp on frequencies 1..4 of 8 (two kept, two blended, four interpolated); "
        "attention_factor left to its default 0.1 ln(factor) + 1, which scales cos and sin"),
    Family(
        "tiny-deepseek-v2", "old",
        _deepseek_v2(q_lora_rank=None, n_group=1, topk_group=1, topk_method="greedy", norm_topk_prob=False,
                     routed_scaling_factor=1.0),
        ["q_proj"] + MLA_AND_MLP_TARGETS,
        "DeepSeek-V2-Lite in miniature: MLA with q_proj (q_lora_rank null), kv_lora_rank 32, rope part 8 wide "
        "(interleaved pairs), YaRN as V2-Lite has it; layer 0 dense, layers 1-2 MoE with 8 routed experts "
        "(top-2, softmax, greedy) and 2 shared; LoRA on attention, dense and shared MLPs and every routed expert"),
    Family(
        "tiny-deepseek-v2-grouped", "old",
        _deepseek_v2(q_lora_rank=24, n_group=4, topk_group=2, topk_method="group_limited_greedy", norm_topk_prob=True,
                     routed_scaling_factor=2.0),
        ["q_a_proj", "q_b_proj"] + MLA_AND_MLP_TARGETS,
        "tiny-deepseek-v2 with the low-rank query (q_a_proj, q_a_layernorm, q_b_proj; q_lora_rank 24) and "
        "group-limited routing (4 groups of 2 experts, best 2 groups by their best expert), norm_topk_prob true, "
        "routed_scaling_factor 2.0"),
    Family(
        "tiny-deepseek-v3", "new",
        _deepseek("deepseek_v3", "DeepseekV3ForCausalLM", q_lora_rank=24, n_shared_experts=1, n_group=4,
                  topk_group=2, topk_method="noaux_tc", norm_topk_prob=True, routed_scaling_factor=2.5,
                  scoring_func="sigmoid", rope_interleave=True,
                  rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                   "original_max_position_embeddings": 16, "beta_fast": 32, "beta_slow": 1,
                                   "mscale": 1.0, "mscale_all_dim": 0.8},
                  dtype="bfloat16"),
        ["q_a_proj", "q_b_proj"] + MLA_AND_MLP_TARGETS,
        "DeepSeek-V3 router: sigmoid scores, e_score_correction_bias (random, positive) for the choice only, "
        "noaux_tc groups (4 groups of 2, a group scored by its best two), norm_topk_prob true, "
        "routed_scaling_factor 2.5; YaRN with mscale 1.0 != mscale_all_dim 0.8 so that both YaRN scalings act; "
        "config written by transformers"),
    Family(
        "tiny-deepseek-v3-halves", "new",
        _deepseek("deepseek_v3", "DeepseekV3ForCausalLM", q_lora_rank=None, n_shared_experts=1, n_group=1,
                  topk_group=1, topk_method="noaux_tc", norm_topk_prob=False, routed_scaling_factor=1.5,
                  scoring_func="sigmoid", rope_interleave=False, first_k_dense_replace=0,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                  dtype="bfloat16"),
        ["q_proj"] + MLA_AND_MLP_TARGETS,
        "DeepSeek-V3 variants the other fixtures leave out: rope_interleave false (the rope part rotated as halves), "
        "every layer MoE (first_k_dense_replace 0), one group (noaux_tc's group step trivial), norm_topk_prob false "
        "(sigmoid scores times routed_scaling_factor 1.5), q_proj without the low-rank query, default rope"),
]


def by_name(name):
    for f in FAMILIES:
        if f.name == name:
            return f
    raise KeyError(f"no family {name!r}; known: {', '.join(f.name for f in FAMILIES)}")


# ------------------------------------------------------- checkpoint tensors

def _gqa_attention(cfg, p):
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    hd = cfg.get("head_dim") or h // heads
    a = p + "self_attn."
    out = [(a + "q_proj.weight", [heads * hd, h], "linear"), (a + "k_proj.weight", [kv * hd, h], "linear"),
           (a + "v_proj.weight", [kv * hd, h], "linear"), (a + "o_proj.weight", [h, heads * hd], "linear")]
    if cfg["model_type"] == "qwen2":
        out += [(a + "q_proj.bias", [heads * hd], "bias"), (a + "k_proj.bias", [kv * hd], "bias"),
                (a + "v_proj.bias", [kv * hd], "bias")]
    if cfg["model_type"] == "qwen3":
        out += [(a + "q_norm.weight", [hd], "norm"), (a + "k_norm.weight", [hd], "norm")]
    return out


def _mla_attention(cfg, p):
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    nope, rope, vd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    kvr, qr = cfg["kv_lora_rank"], cfg.get("q_lora_rank")
    a = p + "self_attn."
    if qr is None:
        out = [(a + "q_proj.weight", [heads * (nope + rope), h], "linear")]
    else:
        out = [(a + "q_a_proj.weight", [qr, h], "linear"), (a + "q_a_layernorm.weight", [qr], "norm"),
               (a + "q_b_proj.weight", [heads * (nope + rope), qr], "linear")]
    return out + [(a + "kv_a_proj_with_mqa.weight", [kvr + rope, h], "linear"),
                  (a + "kv_a_layernorm.weight", [kvr], "norm"),
                  (a + "kv_b_proj.weight", [heads * (nope + vd), kvr], "linear"),
                  (a + "o_proj.weight", [h, heads * vd], "linear")]


def _mlp(prefix, h, inter):
    return [(prefix + "gate_proj.weight", [inter, h], "linear"), (prefix + "up_proj.weight", [inter, h], "linear"),
            (prefix + "down_proj.weight", [h, inter], "linear")]


def is_moe_layer(cfg, i):
    return cfg["model_type"] in ("deepseek_v2", "deepseek_v3") and i >= cfg["first_k_dense_replace"]


def _deepseek_mlp(cfg, i, p):
    h = cfg["hidden_size"]
    if not is_moe_layer(cfg, i):
        return _mlp(p + "mlp.", h, cfg["intermediate_size"])
    e, mi = cfg["n_routed_experts"], cfg["moe_intermediate_size"]
    out = [(p + "mlp.gate.weight", [e, h], "router")]
    if cfg["model_type"] == "deepseek_v3":
        out.append((p + "mlp.gate.e_score_correction_bias", [e], "router_bias"))
    for j in range(e):
        out += _mlp(f"{p}mlp.experts.{j}.", h, mi)
    if cfg.get("n_shared_experts"):
        out += _mlp(p + "mlp.shared_experts.", h, mi * cfg["n_shared_experts"])
    return out


def checkpoint_tensors(cfg):
    """[(name, shape, kind)] of the Hub checkpoint, kind one of embed, linear,
    bias, norm, router, router_bias (kept fp32, as DeepSeek-V3 stores it)."""
    h, v = cfg["hidden_size"], cfg["vocab_size"]
    out = [("model.embed_tokens.weight", [v, h], "embed")]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", [h], "norm"), (p + "post_attention_layernorm.weight", [h], "norm")]
        if cfg["model_type"] in ("deepseek_v2", "deepseek_v3"):
            out += _mla_attention(cfg, p) + _deepseek_mlp(cfg, i, p)
        else:
            out += _gqa_attention(cfg, p) + _mlp(p + "mlp.", h, cfg["intermediate_size"])
    out.append(("model.norm.weight", [h], "norm"))
    if not cfg.get("tie_word_embeddings", False):
        out.append(("lm_head.weight", [v, h], "linear"))
    return out


def adapted_modules(cfg, targets):
    """Module paths (model.layers.N...) that LoRA with these target names
    adapts, as PEFT matches names (the last component of the module path)."""
    out = []
    for name, shape, kind in checkpoint_tensors(cfg):
        if kind == "linear" and name.startswith("model.layers.") and name.endswith(".weight"):
            module = name[: -len(".weight")]
            if module.rsplit(".", 1)[-1] in targets:
                out.append(module)
    return out


def is_quantized_in_4bit(name, shape, kind):
    """Which tensors the 4-bit twin stores in NF4: every linear weight inside the
    decoder layers (attention, dense MLPs, shared and routed experts, one NF4
    tensor per expert weight); embeddings, norms, lm_head and the routers stay
    16-bit (the routers as the 4-bit checkpoints of per-expert Linear modules,
    made with DeepSeek's own MoEGate, keep them)."""
    return kind == "linear" and name.startswith("model.layers.") and len(shape) == 2
