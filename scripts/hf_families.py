"""What scripts/make_fixtures.py and scripts/hf_check_family.py share: loading a
fixture folder into transformers (with per-expert modules for DeepSeek MoE
models), PEFT without its transformers-5 MoE conversion, the SFT/DPO
computations of the fixtures, and a re-implementation of the DeepSeek routers
that checks transformers' expert choices and measures how far they are from a
tie.

Why per-expert modules: transformers 5 fuses the routed experts of
DeepseekV2/V3 into 3-D parameters (mlp.experts.gate_up_proj [E, 2I, H] and
mlp.experts.down_proj [E, H, I]) when it loads the Hub's per-expert tensors.
PEFT can then reach them only through target_parameters, and its automatic
conversion of `target_modules=[..., "gate_proj", "up_proj", "down_proj"]`
moves those names to the fused experts, which leaves the shared experts and
the dense MLPs (also named gate_proj/up_proj/down_proj) without their
adapters. The fixtures want the layout of real DeepSeek-V2-Lite adapters (one
LoRA per expert and projection, keys ...mlp.experts.E.gate_proj.lora_A.weight),
so the fused experts are replaced by an nn.ModuleList of per-expert MLPs holding
the same weights and computing the same sum (checked against transformers'
own experts to fp32 rounding), and PEFT's conversion is switched off while it
wraps or loads them.
"""
import contextlib
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn


def set_offline():
    """No network on the GPU machine: never let a library try one."""
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(k, "1")


def versions():
    import importlib
    out = {"python": sys.version.split()[0]}
    for m in ("torch", "transformers", "peft", "safetensors", "tokenizers"):
        try:
            out[m] = importlib.import_module(m).__version__
        except Exception as e:  # noqa: BLE001 - only reported
            out[m] = f"unavailable ({e.__class__.__name__})"
    return out


def rel(a, b):
    a, b = a.detach().double().flatten().cpu(), b.detach().double().flatten().cpu()
    n = b.norm()
    return float((a - b).norm() / n) if n > 0 else float((a - b).norm())


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def jsonable(obj):
    """obj with tensors as lists, tuples as lists and inf/nan as null (strict JSON)."""
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path, obj):
    """As transformers writes config.json: indent 2, sorted keys, newline."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(jsonable(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def is_moe_config(cfg):
    return cfg.get("model_type") in ("deepseek_v2", "deepseek_v3")


def peft_key(name):
    """PEFT parameter name -> the key it has in adapter_model.safetensors."""
    return name.replace(".default.", ".")


# ------------------------------------------------------------------ loading

def _loading_info_lists(info):
    out = {}
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        v = info.get(k) if isinstance(info, dict) else getattr(info, k, None)
        out[k] = sorted(str(x) for x in (v or []))
    return out


def load_model(folder, dtype=torch.float32, device="cpu"):
    """transformers' model of a fixture folder, eager attention, eval mode.
    Returns (model, loading info as lists)."""
    from transformers import AutoModelForCausalLM

    cfg = read_json(os.path.join(folder, "config.json"))
    kwargs = {"dtype": dtype, "attn_implementation": "eager", "output_loading_info": True}
    if is_moe_config(cfg):
        kwargs["experts_implementation"] = "eager"
    try:
        model, info = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except (TypeError, ValueError) as e:
        if "experts_implementation" not in kwargs or "experts" not in str(e):
            raise
        print(f"  (transformers refused experts_implementation='eager': {e}; loading with its default)")
        kwargs.pop("experts_implementation")
        model, info = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    model.to(device).eval()
    return model, _loading_info_lists(info)


def decoder_layers(model):
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    return m.model.layers


def moe_mlps(model):
    """[(layer index, mlp module)] of the layers whose MLP routes to experts."""
    return [(i, layer.mlp) for i, layer in enumerate(decoder_layers(model)) if hasattr(layer.mlp, "experts")]


# ------------------------------------------------------- per-expert modules

class ExpertMLP(nn.Module):
    """One routed expert as transformers 4 and DeepSeek's own code hold it."""

    def __init__(self, hidden, inter, act_fn):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)
        self.act_fn = act_fn

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class UnfusedExperts(nn.ModuleList):
    """Stands in for transformers 5's fused experts module with the same call
    (hidden_states [T, H], top_k_index [T, k], top_k_weights [T, k]) and the
    same computation as its eager path: per expert, the tokens routed to it,
    the expert MLP, times the routing weight, added up per token."""

    def forward(self, hidden_states, top_k_index, top_k_weights):
        out = torch.zeros_like(hidden_states)
        for e in range(len(self)):
            tok, pos = torch.where(top_k_index == e)
            if tok.numel() == 0:
                continue
            y = self[e](hidden_states[tok]) * top_k_weights[tok, pos, None]
            out.index_add_(0, tok, y.to(out.dtype))
        return out


def unfuse_experts(model, hub, cfg):
    """Replace every fused experts module by UnfusedExperts holding the Hub's
    per-expert tensors (hub: name -> tensor, Hub names). In place; returns model."""
    from transformers.activations import ACT2FN

    p = next(model.parameters())
    n, h, mi = cfg["n_routed_experts"], cfg["hidden_size"], cfg["moe_intermediate_size"]
    for i, mlp in moe_mlps(model):
        experts = UnfusedExperts([ExpertMLP(h, mi, ACT2FN[cfg["hidden_act"]]) for _ in range(n)])
        for e in range(n):
            for proj in ("gate_proj", "up_proj", "down_proj"):
                w = hub[f"model.layers.{i}.mlp.experts.{e}.{proj}.weight"]
                getattr(experts[e], proj).weight.data.copy_(w.float())
        experts.to(device=p.device, dtype=p.dtype).requires_grad_(False)
        mlp.experts = experts
    return model


@contextlib.contextmanager
def peft_moe_conversion_disabled():
    """PEFT >= 0.18 rewrites LoRA configs and adapter state dicts of
    transformers-5 MoE models (model types mapped to qwen2_moe, DeepSeek's among
    them) for the fused experts. On the per-expert model that conversion is
    wrong, so both functions become identities while this is active (in every
    loaded peft module that holds them, whichever way it imported them)."""
    try:
        import peft.utils.transformers_weight_conversion  # noqa: F401 - loaded so that it can be patched
    except Exception:  # noqa: BLE001 - an older PEFT without the conversion
        pass

    def no_config_change(*args, **kwargs):
        return None

    def same_state_dict(*args, **kwargs):
        return kwargs["adapter_state_dict"] if "adapter_state_dict" in kwargs else args[2]

    patches = {"convert_peft_config_for_transformers": no_config_change,
               "convert_peft_adapter_state_dict_for_transformers": same_state_dict}
    saved = []
    for mod in list(sys.modules.values()):
        if mod is None or not getattr(mod, "__name__", "").startswith("peft"):
            continue
        for name, fn in patches.items():
            if hasattr(mod, name):
                saved.append((mod, name, getattr(mod, name)))
                setattr(mod, name, fn)
    try:
        yield len(saved)
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)


def lora_wrapped_modules(peft_model):
    """Paths (model.layers.N...) of the modules PEFT wrapped with LoRA."""
    base = peft_model.get_base_model()
    return sorted(n for n, m in base.named_modules() if hasattr(m, "lora_A") and len(getattr(m, "lora_A", {})) > 0)


def model_with_adapter(folder, adapter_dir, dtype=torch.float32, device="cpu", trainable=False):
    """The fixture's transformers model (per-expert modules for MoE) with a
    PEFT adapter loaded from adapter_dir."""
    from peft import PeftModel
    from safetensors.torch import load_file

    cfg = read_json(os.path.join(folder, "config.json"))
    model, _ = load_model(folder, dtype, device)
    if is_moe_config(cfg):
        unfuse_experts(model, load_file(os.path.join(folder, "model.safetensors")), cfg)
        with peft_moe_conversion_disabled():
            pm = PeftModel.from_pretrained(model, adapter_dir, is_trainable=trainable)
    else:
        pm = PeftModel.from_pretrained(model, adapter_dir, is_trainable=trainable)
    return pm.to(device).eval()


# --------------------------------------------------------- SFT and DPO

def completion_logps(model, ids, prompt_len):
    """Sum of log-probabilities of the tokens after the prompt."""
    logits = model(input_ids=ids).logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    return lp[:, prompt_len - 1:].sum(-1)


def lora_grads(peft_model):
    out = {}
    for n, p in peft_model.named_parameters():
        if p.requires_grad:
            out[peft_key(n)] = (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)).float().cpu()
    return out


def run_sft(peft_model, ids, labels):
    """lora.logits, lora.loss (HF's shifted cross-entropy) and d loss / d LoRA."""
    peft_model.zero_grad(set_to_none=True)
    out = peft_model(input_ids=ids, labels=labels)
    out.loss.backward()
    res = {"lora.logits": out.logits.detach().float().cpu(), "lora.loss": out.loss.detach().float().cpu().reshape(1)}
    res.update({"sft.grad." + k: g for k, g in lora_grads(peft_model).items()})
    peft_model.zero_grad(set_to_none=True)
    return res


def run_dpo(peft_model, chosen, rejected, prompt_len, beta, probe=None):
    """Sigmoid DPO with the adapter-disabled model as reference: log-probs,
    loss and d loss / d LoRA, under the fixture's names."""
    def tag(t):
        if probe is not None:
            probe.tag = t

    peft_model.zero_grad(set_to_none=True)
    with torch.no_grad(), peft_model.disable_adapter():
        tag("dpo.ref.chosen")
        rc = completion_logps(peft_model, chosen, prompt_len)
        tag("dpo.ref.rejected")
        rr = completion_logps(peft_model, rejected, prompt_len)
    tag("dpo.policy.chosen")
    pc = completion_logps(peft_model, chosen, prompt_len)
    tag("dpo.policy.rejected")
    pr = completion_logps(peft_model, rejected, prompt_len)
    loss = -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()
    loss.backward()
    res = {"dpo.policy_chosen_logps": pc.detach().float().cpu(), "dpo.policy_rejected_logps": pr.detach().float().cpu(),
           "dpo.ref_chosen_logps": rc.detach().float().cpu(), "dpo.ref_rejected_logps": rr.detach().float().cpu(),
           "dpo.loss": loss.detach().float().cpu().reshape(1)}
    res.update({"dpo.grad." + k: g for k, g in lora_grads(peft_model).items()})
    peft_model.zero_grad(set_to_none=True)
    return res


# --------------------------------------------------------------- routers

SOFTMAX_WEIGHT_VARIANTS = ("scaled", "normalized_then_scaled", "normalized")


def route(cfg, gate_weight, bias, hidden):
    """DeepSeek's router, re-implemented from the config: the experts each
    token goes to (ascending), the candidate weights under each reading of
    norm_topk_prob / routed_scaling_factor, and the margins that decide the
    choice: between the k-th and (k+1)-th candidate, and between the last chosen
    group and the next. Margins are in the units the choice is made in: router
    logits for the softmax routers (softmax keeps their order), sigmoid score +
    correction bias for DeepSeek-V3; `unit` is the largest slope of that unit
    per logit (1, and 1/4 for the sigmoid)."""
    t = hidden.shape[0]
    e, k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    logits = F.linear(hidden.float(), gate_weight.float())
    method = cfg.get("topk_method") or "greedy"
    groups = None
    if cfg["model_type"] == "deepseek_v3" or method == "noaux_tc":
        scores = logits.sigmoid()
        choice = scores + bias.float()[None, :]
        unit = 0.25
        ng = cfg["n_group"]
        per = e // ng
        groups = choice.view(t, ng, per).topk(min(2, per), dim=-1)[0].sum(-1)
        aux_probs = scores / scores.sum(-1, keepdim=True)
    else:
        scores = logits.softmax(-1)
        choice = logits
        unit = 1.0
        if method == "group_limited_greedy":
            ng = cfg["n_group"]
            groups = logits.view(t, ng, e // ng).max(-1).values
        elif method != "greedy":
            raise ValueError(f"topk_method {method!r} is not one this script re-implements")
        aux_probs = scores
    inf = torch.full((t,), math.inf, dtype=logits.dtype)
    if groups is not None:
        tg = cfg["topk_group"]
        gs = groups.sort(-1, descending=True).values
        group_margin = gs[:, tg - 1] - gs[:, tg] if tg < groups.shape[1] else inf
        gsel = groups.topk(tg, dim=-1).indices
        gmask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, gsel, True)
        cmask = gmask.repeat_interleave(e // groups.shape[1], dim=1)
    else:
        group_margin, cmask = inf, torch.ones_like(choice, dtype=torch.bool)
    cand = choice.masked_fill(~cmask, -math.inf)
    cs = cand.sort(-1, descending=True).values
    expert_margin = torch.where(torch.isinf(cs[:, k]), inf, cs[:, k - 1] - cs[:, k]) if k < e else inf
    idx = cand.topk(k, dim=-1).indices.sort(-1).values
    p = scores.gather(1, idx)
    rsf = float(cfg.get("routed_scaling_factor") or 1.0)
    norm = p / (p.sum(-1, keepdim=True) + 1e-20)
    variants = {"scaled": p * rsf, "normalized_then_scaled": norm * rsf, "normalized": norm}
    # for information: the probability-space margin of the softmax routers
    ps = scores.masked_fill(~cmask, -1.0).sort(-1, descending=True).values
    return {"logits": logits, "scores": scores, "aux_probs": aux_probs, "idx": idx, "variants": variants,
            "expert_margin": expert_margin, "group_margin": group_margin, "unit": unit,
            "score_margin": ps[:, k - 1] - ps[:, k] if k < e else inf}


class RoutingProbe:
    """Records, for every forward through a MoE layer, the hidden states the
    router saw and the experts and weights transformers passed to its experts
    module. Set .tag before each forward to name it."""

    def __init__(self, model):
        self.tag, self.records, self._pending, self._handles = "untagged", [], {}, []
        for i, mlp in moe_mlps(model):
            self._handles.append(mlp.register_forward_pre_hook(self._mlp_hook(i, mlp), with_kwargs=True))
            self._handles.append(mlp.experts.register_forward_pre_hook(self._experts_hook(i), with_kwargs=True))

    def _mlp_hook(self, i, mlp):
        def hook(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            self._pending[i] = (h.detach().reshape(-1, h.shape[-1]).float().cpu().clone(), mlp)
        return hook

    def _experts_hook(self, i):
        def hook(module, args, kwargs):
            vals = list(args)
            for name in ("hidden_states", "top_k_index", "top_k_weights"):
                if name in kwargs:
                    vals.append(kwargs[name])
            if len(vals) < 3:
                raise RuntimeError(f"layer {i}: the experts module was called with {len(args)} positional and "
                                   f"{sorted(kwargs)} keyword arguments; expected (hidden_states, top_k_index, "
                                   "top_k_weights)")
            hidden, mlp = self._pending.pop(i)
            gate = mlp.gate
            bias = getattr(gate, "e_score_correction_bias", None)
            self.records.append({"tag": self.tag, "layer": i, "hidden": hidden,
                                 "idx": vals[1].detach().cpu().clone(), "weight": vals[2].detach().float().cpu().clone(),
                                 "gate_weight": gate.weight.detach().float().cpu().clone(),
                                 "bias": None if bias is None else bias.detach().float().cpu().clone()})
        return hook

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []


def sort_by_expert(idx, weight):
    order = idx.argsort(-1)
    return idx.gather(-1, order), weight.gather(-1, order)


def check_record(cfg, rec):
    """Compare transformers' routing in one record with route(): returns
    (route result, transformers' idx/weight sorted by expert, problems, the
    weight variant that matches or None)."""
    r = route(cfg, rec["gate_weight"], rec["bias"], rec["hidden"])
    idx, w = sort_by_expert(rec["idx"].long(), rec["weight"])
    problems = []
    if idx.shape != r["idx"].shape or not torch.equal(idx, r["idx"]):
        bad = (idx != r["idx"]).any(-1).nonzero().flatten().tolist() if idx.shape == r["idx"].shape else "all"
        problems.append(f"{rec['tag']} layer {rec['layer']}: transformers chose other experts than the "
                        f"re-implemented router for tokens {bad}")
    variant = None
    for name in SOFTMAX_WEIGHT_VARIANTS:
        v = r["variants"][name]
        if v.shape == w.shape and torch.allclose(v, w, rtol=1e-5, atol=1e-7):
            variant = name
            break
    return r, idx, w, problems, variant


def seq_aux_loss(probs, idx, n_experts, batch):
    """DeepSeek's sequence-level balance loss without its coefficient:
    mean over sequences of sum_e f_e P_e, f_e = count_e / (S k / E), P_e = mean
    over the sequence of the router probability of e."""
    t, k = idx.shape
    s = t // batch
    counts = torch.zeros(batch, n_experts)
    counts.scatter_add_(1, idx.view(batch, s * k), torch.ones(batch, s * k))
    f = counts / (s * k / n_experts)
    p = probs.view(batch, s, n_experts).mean(1)
    return float((f * p).sum(-1).mean())


# ------------------------------------------------------------ bf16 errors

def bf16_errors(folder, device):
    """transformers + PEFT in bf16 against the fp32 reference of a fixture
    folder: relative errors of the base logits (transformers' own experts),
    adapter logits, losses and gradients (per-expert modules for MoE)."""
    from safetensors.torch import load_file

    ref = load_file(os.path.join(folder, "reference.safetensors"))
    ids, labels = ref["input_ids"].to(device), ref["labels"].to(device)
    res = {}
    with torch.no_grad():
        base, _ = load_model(folder, torch.bfloat16, device)
        res["base.logits"] = rel(base(input_ids=ids).logits.float(), ref["base.logits"])
        del base
    pm = model_with_adapter(folder, os.path.join(folder, "adapter"), torch.bfloat16, device, trainable=True)
    got = run_sft(pm, ids, labels)
    beta, plen = float(ref["dpo.beta"][0]), int(ref["dpo.prompt_len"][0])
    got.update(run_dpo(pm, ref["dpo.chosen_ids"].to(device), ref["dpo.rejected_ids"].to(device), plen, beta))
    for k, v in got.items():
        if k in ref:
            res[k] = rel(v, ref[k])
    return res


def summarize_errors(res):
    """{kind: (worst, mean)} over base.logits, lora.logits, lora.loss, sft.grad, dpo.loss, dpo.grad,
    bnb4.logits."""
    out = {}
    for kind in ("base.logits", "lora.logits", "lora.loss", "sft.grad", "dpo.loss", "dpo.grad", "bnb4.logits"):
        vals = [v for k, v in res.items() if k == kind or k.startswith(kind + ".")]
        if vals:
            out[kind] = (max(vals), sum(vals) / len(vals))
    return out
