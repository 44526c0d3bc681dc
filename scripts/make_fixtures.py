#!/usr/bin/env python3
"""Make the reference fixtures of the model families with transformers + PEFT.

    python3 scripts/make_fixtures.py --out DIR [--tokenizer models/tiny] [--only NAME,...]

For each family in scripts/family_specs.py it writes DIR/<name>/ shaped like
../shared/fixtures/tiny-llama (config.json, model.safetensors in the Hub's
key layout, generation_config.json, tokenizer files, adapter/ as PEFT saves
it, reference.json, reference.safetensors) and DIR/<name>-bnb-4bit/ (the same
model as a bitsandbytes NF4 checkpoint, with the logits transformers computes
on its dequantized weights), then one archive DIR/fixtures.tar holding every
folder, the log and a summary. Everything is computed on the CPU in fp32 from
bf16 weights upcast exactly, eager attention, eval mode. Needs torch,
transformers 5, peft, safetensors; no GPU (one is used only for the bf16
error figures if present), no bitsandbytes, no network.

Exit status 0 when every family was made; otherwise the archive holds the
families that were, and the log says why the others were not.
"""
import argparse
import contextlib
import copy
import json
import math
import os
import shutil
import sys
import tarfile
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import hf_families as hf  # noqa: E402

hf.set_offline()

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import bnb_twin  # noqa: E402
import family_specs as fs  # noqa: E402
import nf4_ref  # noqa: E402

BATCH, SEQ, PROMPT_MASK, PAD_MASK = 2, 24, 8, 4
DPO_LEN, DPO_PROMPT, DPO_BETA = 20, 6, 0.1
LORA_R, LORA_ALPHA = 4, 8
WEIGHT_STD, LORA_B_STD = 0.2, 0.1


class FamilyError(Exception):
    """Something about transformers, PEFT or this script is not as expected."""


class Reseed(Exception):
    """These random weights make a near-tie or a zero gradient: draw others."""


class Tee:
    """A stream that also goes to the log file (stdout and stderr: the
    libraries' warnings belong in the log too)."""

    def __init__(self, file, stream):
        self.file, self.stream = file, stream

    def write(self, s):
        self.stream.write(s)
        self.file.write(s)

    def flush(self):
        self.stream.flush()
        self.file.flush()


def say(*a):
    print(*a, flush=True)


# ------------------------------------------------------------ random content

def make_weights(specs, seed):
    """Hub tensors: linear weights, embeddings, routers and biases N(0, 0.2),
    norm weights 1 + N(0, 0.2) kept within [0.5, 1.5]; stored bf16 (the
    DeepSeek-V3 correction bias fp32, U(0.01, 0.1): positive, so the router's
    masked 0.0 never competes with a real candidate)."""
    g = torch.Generator().manual_seed(seed)
    hub = {}
    for name, shape, kind in specs:
        if kind in ("embed", "linear", "router", "bias"):
            t = torch.randn(shape, generator=g) * WEIGHT_STD
        elif kind == "norm":
            t = (1.0 + WEIGHT_STD * torch.randn(shape, generator=g)).clamp(0.5, 1.5)
        elif kind == "router_bias":
            hub[name] = 0.01 + 0.09 * torch.rand(shape, generator=g)
            continue
        else:
            raise FamilyError(f"{name}: unknown tensor kind {kind}")
        hub[name] = t.to(torch.bfloat16).contiguous()
    return hub


def make_inputs(seed, vocab):
    g = torch.Generator().manual_seed(seed + 7919)
    ids = torch.randint(2, vocab, (BATCH, SEQ), generator=g)
    labels = ids.clone()
    labels[0, :PROMPT_MASK] = -100
    labels[1, -PAD_MASK:] = -100
    prompt = torch.randint(2, vocab, (BATCH, DPO_PROMPT), generator=g)
    chosen = torch.cat([prompt, torch.randint(2, vocab, (BATCH, DPO_LEN - DPO_PROMPT), generator=g)], 1)
    rejected = torch.cat([prompt, torch.randint(2, vocab, (BATCH, DPO_LEN - DPO_PROMPT), generator=g)], 1)
    return ids, labels, chosen, rejected


# ------------------------------------------------------------- folders

def write_model_folder(fam, cfg, hub, out, tok_dir, work):
    os.makedirs(out)
    if fam.style == "old":
        hf.write_json(os.path.join(out, "config.json"), cfg)
    else:
        from transformers import AutoConfig

        src = os.path.join(work, "config-in")
        os.makedirs(src)
        hf.write_json(os.path.join(src, "config.json"), cfg)
        AutoConfig.from_pretrained(src).save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, f), os.path.join(out, f))
    save_file(hub, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})


def write_generation_config(model, out):
    path = os.path.join(out, "generation_config.json")
    try:
        model.generation_config.save_pretrained(out)
    except Exception as e:  # noqa: BLE001 - a plain one instead
        say(f"  generation_config.save_pretrained failed ({e}); writing the model config's token ids")
    if not os.path.exists(path):
        c = model.config
        hf.write_json(path, {k: getattr(c, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                             if getattr(c, k, None) is not None})


def check_loaded(model, hub, cfg, info):
    """Every tensor of the model came from the file and every tensor of the
    file went into the model (fused experts: which layout)."""
    tied = {"lm_head.weight"} if cfg.get("tie_word_embeddings") else set()
    problems = [f"transformers {k}: {v}" for k, v in info.items()
                if k != "error_msgs" and [x for x in v if x not in tied]]
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    used, layouts = set(), set()
    for k, v in sd.items():
        if k in hub:
            used.add(k)
            if not torch.equal(v, hub[k].float()):
                problems.append(f"{k}: loaded values differ from the file")
        elif k == "lm_head.weight" and cfg.get("tie_word_embeddings"):
            if not torch.equal(v, hub["model.embed_tokens.weight"].float()):
                problems.append("lm_head.weight is not tied to model.embed_tokens.weight")
            used.add("lm_head.weight")
        elif k.endswith("mlp.experts.gate_up_proj") or k.endswith("mlp.experts.down_proj"):
            pre, fused = k.rsplit(".", 1)
            for e in range(v.shape[0]):
                if fused == "gate_up_proj":
                    want = torch.cat([hub[f"{pre}.{e}.gate_proj.weight"], hub[f"{pre}.{e}.up_proj.weight"]], 0).float()
                    names = [f"{pre}.{e}.gate_proj.weight", f"{pre}.{e}.up_proj.weight"]
                else:
                    want = hub[f"{pre}.{e}.down_proj.weight"].float()
                    names = [f"{pre}.{e}.down_proj.weight"]
                if torch.equal(v[e], want):
                    layouts.add(f"{fused} [E, out, in] ({'gate rows then up rows' if len(names) == 2 else 'per expert'})")
                elif torch.equal(v[e], want.t()):
                    layouts.add(f"{fused} [E, in, out] (transposed)")
                else:
                    problems.append(f"{k}[{e}]: not the file's {' + '.join(names)}")
                used.update(names)
        else:
            problems.append(f"{k}: in the model but not in the file")
    problems += [f"{k}: in the file but the model did not take it" for k in hub if k not in used]
    return problems, sorted(layouts)


# -------------------------------------------------------- rope diagnostics

def get_mscale(scale, m=1.0):
    return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0


def expected_rope(rp, dim):
    """inv_freq and attention factor as this script understands transformers 5,
    with a note per frequency (compared with what transformers holds)."""
    base = float(rp["rope_theta"])
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    kind, notes, af = rp.get("rope_type", rp.get("type", "default")), [], 1.0
    if kind == "llama3":
        factor, lf, hfac, orig = (float(rp["factor"]), float(rp["low_freq_factor"]), float(rp["high_freq_factor"]),
                                  float(rp["original_max_position_embeddings"]))
        low_wl, high_wl = orig / lf, orig / hfac
        wl = 2 * math.pi / inv
        out = torch.where(wl > low_wl, inv / factor, inv)
        smooth = (orig / wl - lf) / (hfac - lf)
        smoothed = (1 - smooth) * out / factor + smooth * out
        medium = ~(wl < high_wl) * ~(wl > low_wl)
        out = torch.where(medium, smoothed, out)
        for i in range(len(inv)):
            regime = ("high frequency: kept" if wl[i] < high_wl else "low frequency: divided by factor"
                      if wl[i] > low_wl else f"medium: smooth {float(smooth[i]):.4f}")
            notes.append(f"freq {i}: wavelength {float(wl[i]):9.2f} -> {regime}")
        notes.insert(0, f"high-frequency wavelength bound {high_wl:g}, low-frequency bound {low_wl:g}")
        inv = out
    elif kind == "yarn":
        factor, orig = float(rp["factor"]), float(rp["original_max_position_embeddings"])
        ms, msa = rp.get("mscale"), rp.get("mscale_all_dim")
        af = rp.get("attention_factor")
        if af is None:
            af = get_mscale(factor, ms) / get_mscale(factor, msa) if (ms and msa) else get_mscale(factor)
        bfast, bslow = rp.get("beta_fast") or 32, rp.get("beta_slow") or 1

        def cdim(r):
            return dim * math.log(orig / (r * 2 * math.pi)) / (2 * math.log(base))

        low, high = cdim(bfast), cdim(bslow)
        if rp.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
        pos = base ** (torch.arange(0, dim, 2).float() / dim)
        extrapolation = 1 - ramp
        inv = (1.0 / (factor * pos)) * (1 - extrapolation) + (1.0 / pos) * extrapolation
        notes.append(f"correction range [{low}, {high}] (beta_fast {bfast}, beta_slow {bslow}), "
                     f"attention factor {af:.6f}")
        for i in range(dim // 2):
            r = float(ramp[i])
            notes.append(f"freq {i}: ramp {r:.4f} -> " + ("original" if r == 0 else "divided by factor" if r == 1
                                                          else "blended"))
    elif kind == "linear":
        inv = inv / float(rp["factor"])
    return inv, af, notes


def rope_facts(model, cfg):
    """transformers' rope tables and attention scales, with this script's
    expectations printed beside them (a difference is reported, not fatal)."""
    facts, tensors = {}, {}
    c = model.config
    rp = dict(getattr(c, "rope_parameters", None) or {})
    facts["rope_parameters"] = rp
    rot = getattr(model.model, "rotary_emb", None)
    if rot is not None and hasattr(rot, "inv_freq"):
        inv = rot.inv_freq.detach().float().cpu()
        att = float(getattr(rot, "attention_scaling", 1.0))
        tensors["rope.inv_freq"] = inv.clone()
        tensors["rope.attention_scaling"] = torch.tensor([att], dtype=torch.float32)
        facts["inv_freq"] = inv.tolist()
        facts["attention_scaling"] = att
        dim = 2 * inv.numel()
        try:
            want, af, notes = expected_rope(rp, dim)
            facts["regimes"] = notes
            for n in notes:
                say(f"    {n}")
            d = hf.rel(inv, want)
            say(f"    inv_freq vs this script's formula: relative difference {d:.2e}; attention scaling "
                f"{att:.6f} (formula {af:.6f})")
            if d > 1e-6 or abs(att - af) > 1e-6:
                say("    WARNING: transformers' rope differs from this script's reading; the fixture records "
                    "transformers' tables (rope.inv_freq, rope.attention_scaling)")
        except Exception as e:  # noqa: BLE001 - diagnostics only
            say(f"    (no expectation for this rope: {e})")
    else:
        say("    WARNING: model.model.rotary_emb.inv_freq not found; no rope tables recorded")
    scales = [float(getattr(layer.self_attn, "scaling", float("nan"))) for layer in model.model.layers]
    tensors["attn.scaling"] = torch.tensor(scales, dtype=torch.float32)
    facts["attention_scaling_per_layer"] = scales
    if hf.is_moe_config(cfg):
        qk = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
        plain = qk ** -0.5
        mad = rp.get("mscale_all_dim")
        with_m = plain * get_mscale(float(rp.get("factor", 1.0)), mad) ** 2 if mad else plain
        facts["attention_scaling_readings"] = {"qk_head_dim^-0.5": plain, "times mscale(factor, mscale_all_dim)^2": with_m}
        which = [k for k, v in facts["attention_scaling_readings"].items() if abs(v - scales[0]) < 1e-7]
        say(f"    softmax scale {scales[0]:.7f}: {' / '.join(which) or 'neither qk_head_dim^-0.5 nor with mscale^2'}")
        facts["attention_scaling_is"] = which
    return facts, tensors


# ---------------------------------------------------------- base forward

def base_forward(model, cfg, ids, labels):
    """Every hidden state (hooks), logits, loss, and the attention pattern of
    the first layer checked against causal / sliding-window masking."""
    got, hooks = {}, []
    m = model.model

    def keep(name, idx=None):
        def hook(module, args, out):
            t = out[0] if isinstance(out, (tuple, list)) else out
            got[name] = t.detach().float().cpu().clone()
            if idx is not None and isinstance(out, (tuple, list)) and len(out) > 1 and out[1] is not None:
                got[f"attn_weights.{idx}"] = out[1].detach().float().cpu().clone()
        return hook

    hooks.append(m.embed_tokens.register_forward_hook(keep("base.embed_out")))
    for i, layer in enumerate(m.layers):
        hooks.append(layer.register_forward_hook(keep(f"base.layer_out.{i}")))
        hooks.append(layer.self_attn.register_forward_hook(keep(f"attn.{i}", idx=i)))
    hooks.append(m.norm.register_forward_hook(keep("base.final_norm_out")))
    try:
        with torch.no_grad():
            out = model(input_ids=ids, labels=labels)
    finally:
        for h in hooks:
            h.remove()
    res = {k: v for k, v in got.items() if k.startswith("base.")}
    res["base.logits"] = out.logits.detach().float().cpu()
    res["base.loss"] = out.loss.detach().float().cpu().reshape(1)
    mine = torch.nn.functional.cross_entropy(res["base.logits"][:, :-1].reshape(-1, res["base.logits"].shape[-1]),
                                             labels[:, 1:].reshape(-1), ignore_index=-100)
    if abs(float(mine) - float(res["base.loss"])) > 1e-5 * max(1.0, abs(float(mine))):
        raise FamilyError(f"HF's loss {float(res['base.loss'])} is not CE(logits[:, :-1], labels[:, 1:]) = {float(mine)}")
    mask = {}
    w = got.get("attn_weights.0")
    if w is None:
        mask["check"] = "not made: the attention module returned no weights"
    else:
        window = getattr(model.config, "sliding_window", None) if cfg["model_type"] == "mistral" else None
        q = torch.arange(SEQ)[:, None]
        k = torch.arange(SEQ)[None, :]
        seen = (w != 0)
        rules = {"causal (j <= i)": k <= q}
        if window:
            rules = {f"i - {window} < j <= i": (k <= q) & (k > q - window),
                     f"i - {window} <= j <= i": (k <= q) & (k >= q - window), "causal (j <= i)": k <= q}
        match = [name for name, allowed in rules.items() if torch.equal(seen, allowed.expand_as(seen))]
        mask = {"window": window, "rule": match[0] if match else None,
                "keys_seen_per_query": seen[0, 0].sum(-1).tolist()}
        if not match:
            raise FamilyError(f"layer 0 attention pattern fits none of {list(rules)}: keys seen per query "
                              f"{mask['keys_seen_per_query']}")
        if window and match[0].startswith("causal"):
            say(f"    WARNING: sliding_window {window} is set but transformers' eager attention saw every earlier "
                "key: the fixture records that")
    return res, mask


# ------------------------------------------------------------ MoE routing

def analyze_routing(cfg, records, min_margin, verbose):
    """Check transformers' choices against the re-implemented router, find the
    smallest margins and the weight convention (printing the margin of every
    token of the base forward); raise Reseed on a near-tie."""
    summary, per_layer, variants, ties = {}, {}, set(), []
    for rec in records:
        r, idx, w, problems, variant = hf.check_record(cfg, rec)
        if problems:
            raise FamilyError("; ".join(problems))
        variants.add(variant)
        em, gm = r["expert_margin"] / r["unit"], r["group_margin"] / r["unit"]
        key = f"{rec['tag']}.layer{rec['layer']}"
        summary[key] = {"min_expert_margin": float(em.min()), "min_group_margin": float(gm.min()),
                        "min_score_margin": float(r["score_margin"].min())}
        for t in (em < min_margin).nonzero().flatten().tolist():
            ties.append(f"{key} token {t}: expert margin {float(em[t]):.2e}")
        for t in (gm < min_margin).nonzero().flatten().tolist():
            ties.append(f"{key} token {t}: group margin {float(gm[t]):.2e}")
        if rec["tag"] in ("base", "lora", "bnb4.base"):
            per_layer[(rec["tag"], rec["layer"])] = (r, idx, w)
        if rec["tag"] == "base" or (verbose and rec["tag"] == "bnb4.base"):
            say(f"    base layer {rec['layer']}: margin (k-th minus (k+1)-th, logit units) per token: "
                + " ".join(f"{float(x):.3g}" for x in em))
            if torch.isfinite(gm).any():
                say(f"    base layer {rec['layer']}: group margin per token: " + " ".join(f"{float(x):.3g}" for x in gm))
    for key, s in sorted(summary.items()):
        say(f"    {key}: smallest expert margin {s['min_expert_margin']:.3e}, group margin "
            f"{s['min_group_margin']:.3e} (logit units), score margin {s['min_score_margin']:.3e}")
    if ties:
        raise Reseed(f"{len(ties)} near-ties below {min_margin:g}: " + "; ".join(ties[:6]))
    if None in variants:
        say("    WARNING: transformers' routing weights match none of scaled / normalized_then_scaled / normalized")
    return summary, per_layer, sorted(v for v in variants if v)


def moe_tensors(cfg, per_layer, tag, prefix):
    """moe.* tensors of one forward: chosen experts (ascending per token), their
    weights, router logits, tokens per expert, sequence balance loss."""
    out, info = {}, {}
    e, k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    for (t, layer), (r, idx, w) in sorted(per_layer.items()):
        if t != tag:
            continue
        counts = torch.bincount(idx.flatten(), minlength=e)
        aux = hf.seq_aux_loss(r["aux_probs"], idx, e, BATCH)
        out[f"{prefix}topk_idx.{layer}"] = idx.reshape(BATCH, SEQ, k).clone()
        out[f"{prefix}topk_weight.{layer}"] = w.reshape(BATCH, SEQ, k).clone()
        if tag == "base":
            out[f"{prefix}router_logits.{layer}"] = r["logits"].reshape(BATCH, SEQ, e).clone()
            out[f"{prefix}tokens_per_expert.{layer}"] = counts.clone()
            out[f"{prefix}seq_aux_loss.{layer}"] = torch.tensor([aux], dtype=torch.float32)
        info[str(layer)] = {"topk_idx": idx.reshape(BATCH, SEQ, k).tolist(),
                            "topk_weight": [[[round(x, 7) for x in tok] for tok in row]
                                            for row in w.reshape(BATCH, SEQ, k).tolist()],
                            "tokens_per_expert": counts.tolist(), "max_load": int(counts.max()),
                            "mean_load": float(counts.float().mean()), "experts_unused": int((counts == 0).sum()),
                            "seq_aux_loss": aux, "seq_aux_loss_times_alpha": aux * float(cfg.get("aux_loss_alpha", 0))}
    return out, info


# --------------------------------------------------------------- adapter

def make_peft(model, fam, cfg, seed):
    from peft import LoraConfig, get_peft_model

    lc = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, target_modules=list(fam.targets), lora_dropout=0.0,
                    bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(seed + 104729)  # lora_A: PEFT's own initialisation
    ctx = hf.peft_moe_conversion_disabled() if fam.moe else contextlib.nullcontext()
    with ctx:
        pm = get_peft_model(model, lc)
    pm.eval()
    wrapped, want = hf.lora_wrapped_modules(pm), sorted(fs.adapted_modules(cfg, fam.targets))
    if wrapped != want:
        raise FamilyError(f"PEFT wrapped {len(wrapped)} modules, expected {len(want)}; only PEFT: "
                          f"{sorted(set(wrapped) - set(want))[:8]}; missing: {sorted(set(want) - set(wrapped))[:8]}")
    base = pm.get_base_model()
    g = torch.Generator().manual_seed(seed + 15485863)
    for name in wrapped:
        b = base.get_submodule(name).lora_B["default"].weight
        b.data.copy_(torch.randn(b.shape, generator=g) * LORA_B_STD)
    return pm, wrapped


def save_adapter(pm, fam, out_dir, wrapped):
    pm.peft_config["default"].base_model_name_or_path = fam.name
    ctx = hf.peft_moe_conversion_disabled() if fam.moe else contextlib.nullcontext()
    with ctx:
        pm.save_pretrained(out_dir, save_embedding_layers=False)
    card = os.path.join(out_dir, "README.md")
    if os.path.exists(card):  # PEFT's model card; tiny-llama's adapter folder has none
        os.remove(card)
    saved = load_file(os.path.join(out_dir, "adapter_model.safetensors"))
    want = {f"base_model.model.{m}.lora_{ab}.weight" for m in wrapped for ab in ("A", "B")}
    if set(saved) != want:
        raise FamilyError(f"PEFT saved keys {sorted(set(saved) - want)[:6]} beyond / without "
                          f"{sorted(want - set(saved))[:6]} the per-module layout")
    params = {hf.peft_key(n): p.detach().float().cpu() for n, p in pm.named_parameters() if "lora_" in n}
    for k, v in saved.items():
        if v.dtype != torch.float32 or not torch.equal(v, params[k]):
            raise FamilyError(f"{k}: saved tensor differs from the model's ({v.dtype})")
    return sorted(saved)


# ------------------------------------------------------------ one family

def attempt(fam, seed, args, stage, verbose):
    cfg = copy.deepcopy(fam.config)
    specs = fs.checkpoint_tensors(cfg)
    hub = make_weights(specs, seed)
    hub32 = {k: v.float() for k, v in hub.items()}
    ids, labels, chosen, rejected = make_inputs(seed, cfg["vocab_size"])
    base_dir, twin_dir = os.path.join(stage, fam.name), os.path.join(stage, fam.name + "-bnb-4bit")
    write_model_folder(fam, cfg, hub, base_dir, args.tokenizer, stage)
    model, info = hf.load_model(base_dir, torch.float32)
    write_generation_config(model, base_dir)
    problems, layouts = check_loaded(model, hub, cfg, info)
    if problems:
        raise FamilyError("loading the checkpoint: " + "; ".join(problems[:8]))
    if verbose:
        introspect(model, base_dir, layouts)
    facts, extra = rope_facts(model, cfg)
    facts["fused_expert_layout"] = layouts
    ref_model = None
    if fam.moe:  # a second copy of transformers' model, its experts as per-expert modules
        ref_model = hf.unfuse_experts(hf.load_model(base_dir, torch.float32)[0], hub32, cfg)
    probe_base = hf.RoutingProbe(model) if fam.moe else None
    if probe_base:
        probe_base.tag = "base"
    base, mask = base_forward(model, cfg, ids, labels)
    facts["attention_mask"] = mask
    say(f"    layer-0 attention pattern: {mask.get('rule', mask.get('check'))}")
    if fam.moe:
        with torch.no_grad():
            d = hf.rel(ref_model(input_ids=ids).logits, base["base.logits"])
        say(f"    per-expert modules vs transformers' fused experts: logits relative difference {d:.2e}")
        if d > 1e-5:
            raise FamilyError(f"the per-expert modules do not reproduce transformers' experts ({d:.2e})")
        facts["unfused_vs_fused_logits_rel"] = d
    pm, wrapped = make_peft(ref_model if fam.moe else model, fam, cfg, seed)
    probe = hf.RoutingProbe(pm) if fam.moe else None
    if probe:
        probe.tag = "lora"
    sft = hf.run_sft(pm, ids, labels)
    dpo = hf.run_dpo(pm, chosen, rejected, DPO_PROMPT, DPO_BETA, probe=probe)
    zero = [k for k, v in {**sft, **dpo}.items() if ".grad." in k and float(v.abs().max()) == 0.0]
    if zero:
        raise Reseed(f"zero gradients: {zero[:4]}")
    moe_info, routing = {}, {}
    if fam.moe:
        summary, per_layer, variants = analyze_routing(cfg, probe_base.records + probe.records, args.min_margin,
                                                       verbose)
        routing = {"margins": summary, "weight_convention": variants, "per_layer": per_layer}

    # the 4-bit twin, before anything is kept: its routing must be clear too
    nested = nf4_ref.load_maps(args.maps)[1]
    twin_tensors, deq, quantized = bnb_twin.quantize_checkpoint(hub, specs, nested, fs.is_quantized_in_4bit)
    deq_dir = os.path.join(stage, "dequantized")
    os.makedirs(deq_dir)
    shutil.copy(os.path.join(base_dir, "config.json"), deq_dir)
    save_file(deq, os.path.join(deq_dir, "model.safetensors"), metadata={"format": "pt"})
    qmodel, _ = hf.load_model(deq_dir, torch.float32)
    qprobe = hf.RoutingProbe(qmodel) if fam.moe else None
    if qprobe:
        qprobe.tag = "bnb4.base"
    with torch.no_grad():
        twin_logits = qmodel(input_ids=ids).logits.detach().float().cpu()
    if fam.moe:
        s2, pl2, _ = analyze_routing(cfg, qprobe.records, args.min_margin, False)
        routing["margins"].update(s2)
        routing["per_layer"].update(pl2)
    say(f"    4-bit twin: {len(quantized)} NF4 weights; logits relative difference to the bf16 model "
        f"{hf.rel(twin_logits, base['base.logits']):.3e}")

    # everything is clear: write the folders
    adapter_keys = save_adapter(pm, fam, os.path.join(base_dir, "adapter"), wrapped)
    reload = hf.model_with_adapter(base_dir, os.path.join(base_dir, "adapter"))
    with torch.no_grad():
        d = hf.rel(reload(input_ids=ids).logits, sft["lora.logits"])
    say(f"    adapter saved and loaded back into PEFT: lora.logits relative difference {d:.2e}")
    if d > 1e-6:
        raise FamilyError(f"the saved adapter does not give the same logits when loaded ({d:.2e})")
    del reload
    if fam.moe:
        facts["peft_own_v5_conversion"] = stock_peft_check(base_dir, ids, sft["lora.logits"])

    merged = merge_check(pm, wrapped, hub32, base_dir)
    tensors = {"input_ids": ids, "labels": labels, **base, **sft,
               "dpo.chosen_ids": chosen, "dpo.rejected_ids": rejected,
               "dpo.prompt_len": torch.tensor([DPO_PROMPT], dtype=torch.int64),
               "dpo.beta": torch.tensor([DPO_BETA], dtype=torch.float32), **dpo, **merged, **extra}
    if fam.moe:
        t1, moe_info["base"] = moe_tensors(cfg, routing["per_layer"], "base", "moe.")
        t2, moe_info["lora"] = moe_tensors(cfg, routing["per_layer"], "lora", "moe.lora.")
        tensors.update(t1)
        tensors.update(t2)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(base_dir, "reference.safetensors"))

    write_twin(fam, base_dir, twin_dir, twin_tensors, quantized, specs, ids, twin_logits, routing, cfg)
    errs = {}
    try:
        errs = hf.bf16_errors(base_dir, args.device)
        terr = twin_bf16_error(twin_dir, deq_dir, ids, twin_logits, args.device)
        if terr is not None:
            errs["bnb4.logits"] = terr
    except Exception as e:  # noqa: BLE001 - figures only
        say(f"    bf16 error figures failed: {e}\n{traceback.format_exc()}")
    ref_json = reference_json(fam, cfg, seed, facts, moe_info, routing, adapter_keys, errs, args.device)
    hf.write_json(os.path.join(base_dir, "reference.json"), ref_json)
    return {"seed": seed, "base.loss": float(base["base.loss"]), "lora.loss": float(sft["lora.loss"]),
            "dpo.loss": float(dpo["dpo.loss"]), "max|base.logits|": float(base["base.logits"].abs().max()),
            "max|lora.logits|": float(sft["lora.logits"].abs().max()),
            "max|bnb4.logits|": float(twin_logits.abs().max()),
            "bf16": {k: list(v) for k, v in hf.summarize_errors(errs).items()},
            "min_margins": {k: v["min_expert_margin"] for k, v in routing.get("margins", {}).items()}}


def introspect(model, folder, layouts):
    say(f"    transformers class {model.__class__.__name__}; config.json:")
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        for line in f.read().splitlines():
            say("      " + line)
    c = model.config
    for k in ("rope_parameters", "head_dim", "sliding_window", "use_sliding_window", "layer_types",
              "_attn_implementation", "_experts_implementation", "q_lora_rank", "topk_method", "norm_topk_prob",
              "routed_scaling_factor", "n_group", "topk_group", "rope_interleave"):
        if hasattr(c, k):
            say(f"    config.{k} = {getattr(c, k)!r}")
    layers = model.model.layers
    show = [0] + [i for i, m in hf.moe_mlps(model)][:1]
    for i in show:
        say(f"    layer {i} parameters:")
        for n, p in layers[i].named_parameters():
            say(f"      {n:60s} {str(list(p.shape)):16s} {p.dtype}")
        for n, b in layers[i].named_buffers():
            say(f"      (buffer) {n:51s} {str(list(b.shape)):16s} {b.dtype}")
        say(f"    layer {i} modules: " + ", ".join(f"{n or '.'}={type(m).__name__}" for n, m in layers[i].named_modules()
                                                  if n.count(".") <= 1))
    if layouts:
        say(f"    fused experts as loaded: {layouts}")


def merge_check(pm, wrapped, hub32, base_dir):
    """merged.<weight> from PEFT's merge_and_unload, checked against W + s·B·A."""
    scale = LORA_ALPHA / LORA_R
    base = pm.get_base_model()
    expect = {}
    for m in wrapped:
        mod = base.get_submodule(m)
        a, b = mod.lora_A["default"].weight.detach().float().cpu(), mod.lora_B["default"].weight.detach().float().cpu()
        expect[m] = hub32[m + ".weight"] + scale * (b @ a)
    merged_model = pm.merge_and_unload()
    sd = merged_model.state_dict()
    out = {}
    for m in wrapped:
        w = sd[m + ".weight"].detach().float().cpu()
        d = hf.rel(w, expect[m])
        if d > 1e-6:
            raise FamilyError(f"{m}: merge_and_unload gives W + {d:.2e} relative off W + s·B·A")
        out[f"merged.{m}.weight"] = w.clone()
    return out


def stock_peft_check(base_dir, ids, lora_logits):
    """For the record: the per-expert adapter loaded by PEFT itself, with its
    transformers-5 conversion, into transformers' fused model."""
    from peft import PeftModel

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model, _ = hf.load_model(base_dir, torch.float32)
            pm = PeftModel.from_pretrained(model, os.path.join(base_dir, "adapter")).eval()
            with torch.no_grad():
                d = hf.rel(pm(input_ids=ids).logits, lora_logits)
        wrapped = hf.lora_wrapped_modules(pm)
        params = sorted({n.rsplit(".", 1)[-1] for n, _ in pm.named_parameters() if "lora" in n})
        res = {"lora_logits_rel_diff": d, "wrapped_modules": len(wrapped),
               "target_parameters": sorted(map(str, pm.peft_config["default"].target_parameters or [])),
               "target_modules": sorted(map(str, pm.peft_config["default"].target_modules or [])),
               "lora_param_suffixes": params, "warnings": sorted({str(w.message)[:300] for w in caught})[:8]}
    except Exception as e:  # noqa: BLE001 - recorded
        res = {"error": f"{e.__class__.__name__}: {str(e)[:500]}"}
    say(f"    PEFT's own transformers-5 conversion on the fused model (for the record): {res}")
    return res


def write_twin(fam, base_dir, twin_dir, tensors, quantized, specs, ids, logits, routing, cfg):
    os.makedirs(twin_dir)
    conf = hf.read_json(os.path.join(base_dir, "config.json"))
    conf["quantization_config"] = dict(bnb_twin.QUANTIZATION_CONFIG)
    hf.write_json(os.path.join(twin_dir, "config.json"), conf)
    for f in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(base_dir, f), twin_dir)
    save_file(tensors, os.path.join(twin_dir, "model.safetensors"), metadata={"format": "pt"})
    ref = {"input_ids": ids, "logits": logits}
    moe = {}
    if fam.moe:
        t, moe = moe_tensors(cfg, routing["per_layer"], "bnb4.base", "moe.")
        ref.update(t)
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(twin_dir, "reference.safetensors"))
    kept = [n for n, s, k in specs if n not in set(quantized)]
    hf.write_json(os.path.join(twin_dir, "reference.json"), {
        "source": fam.name,
        "quantization": "NF4, blocks of 64, double quantization (nested blocks of 256, bitsandbytes' dynamic map), "
                        "quantized by scripts/nf4_ref.py, which matches bitsandbytes 0.50.2 on an H100 byte for byte "
                        "(offset = mean of the absmax values in torch's CUDA summation order)",
        "logits": "transformers, fp32 on the CPU, eager attention, on the dequantized weights: every NF4 weight "
                  "as bitsandbytes' dequantize_4bit returns it (bf16), upcast exactly; input_ids as in "
                  f"../{fam.name}/reference.safetensors. Compare with a tight fp32 tolerance, not a bf16 one.",
        "quantized": quantized, "kept_16bit": kept,
        "moe": moe,
        "versions": hf.versions(),
    })


def twin_bf16_error(twin_dir, deq_dir, ids, twin_logits, device):
    """transformers in bf16 on the dequantized weights vs the fp32 twin logits."""
    with torch.no_grad():
        m, _ = hf.load_model(deq_dir, torch.bfloat16, device)
        return hf.rel(m(input_ids=ids.to(device)).logits.float(), twin_logits)


def reference_json(fam, cfg, seed, facts, moe_info, routing, adapter_keys, errs, device):
    out = {
        "family": fam.name, "about": fam.about, "architecture": cfg["architectures"][0],
        "config_style": "old: rope_theta + rope_scaling, torch_dtype (as written here)" if fam.style == "old"
        else "new: rope_parameters, dtype (as transformers 5 wrote it)",
        "lora_r": LORA_R, "lora_alpha": LORA_ALPHA, "targets": fam.targets, "dpo_beta": DPO_BETA,
        "dpo_prompt_len": DPO_PROMPT, "seed": seed,
        "notes": "fp32 forward of the bf16 checkpoint (weights upcast exactly) on the CPU, eager attention, eval "
                 "mode, no attention_mask (row 1's last 4 tokens are padding only through their labels); HF shifts "
                 "labels inside the loss: loss = CE(logits[:, :-1], labels[:, 1:]) over labels != -100; lora_B "
                 "drawn N(0, 0.1) so that every gradient is non-zero; DPO: sigmoid loss, reference = the same model "
                 "with the adapter disabled, log-probs summed over the tokens after the 6-token prompt",
        "rope": {k: facts.get(k) for k in ("rope_parameters", "inv_freq", "attention_scaling", "regimes")},
        "attention": {"softmax_scale_per_layer": facts.get("attention_scaling_per_layer"),
                      "softmax_scale_readings": facts.get("attention_scaling_readings"),
                      "softmax_scale_is": facts.get("attention_scaling_is"),
                      "mask": facts.get("attention_mask")},
        "adapter_keys": adapter_keys,
        "bf16_errors": {"what": "transformers + PEFT themselves in bf16 (weights bf16, LoRA fp32 as PEFT keeps it) "
                                "against this fp32 reference: relative error |x - ref| / |ref| per tensor; "
                                "bnb4.logits: transformers in bf16 on the dequantized 4-bit weights against the "
                                "twin's fp32 logits",
                        "device": device, "relative": errs, "worst_and_mean": hf.summarize_errors(errs)},
        "versions": hf.versions(),
    }
    if fam.moe:
        out["adapter_form"] = (
            "one LoRA per module as PEFT stores per-expert nn.Linear modules (the layout of transformers-4 "
            "DeepSeek-V2 adapters): keys base_model.model.model.layers.N.mlp.experts.E.{gate,up,down}_proj."
            "lora_{A,B}.weight, plus shared_experts.* and the dense layer's mlp.*. Computed with PEFT "
            "target_modules on transformers' model whose fused experts were replaced by per-expert modules "
            "holding the same weights (checked equal to the fused ones), PEFT's transformers-5 MoE "
            "conversion switched off (it would move gate_proj/up_proj/down_proj to target_parameters of the "
            "fused experts and drop the shared and dense MLPs); see peft_own_v5_conversion for what PEFT "
            "itself does with this adapter on the fused model")
        out["peft_own_v5_conversion"] = facts.get("peft_own_v5_conversion")
        out["fused_expert_layout_in_transformers"] = facts.get("fused_expert_layout")
        out["unfused_vs_fused_logits_rel"] = facts.get("unfused_vs_fused_logits_rel")
        out["moe"] = {
            "router": {k: cfg.get(k) for k in ("topk_method", "n_group", "topk_group", "num_experts_per_tok",
                                               "n_routed_experts", "n_shared_experts", "norm_topk_prob",
                                               "routed_scaling_factor", "scoring_func", "aux_loss_alpha")},
            "weights_as_transformers_computes_them": routing.get("weight_convention"),
            "weight_conventions": {
                "scaled": "score of each chosen expert times routed_scaling_factor (norm_topk_prob ignored)",
                "normalized_then_scaled": "chosen scores / (their sum + 1e-20), times routed_scaling_factor",
                "normalized": "chosen scores / (their sum + 1e-20), no routed_scaling_factor (DeepSeek-V2's own "
                              "code when norm_topk_prob)"},
            "margins": routing.get("margins"),
            "margin_units": "router logits for the softmax routers (softmax keeps their order); sigmoid score + "
                            "correction bias divided by 1/4 (the sigmoid's largest slope) for DeepSeek-V3",
            "routing": moe_info,
            "statistics": "tokens_per_expert, max/mean load over all 48 tokens; seq_aux_loss = DeepSeek's "
                          "sequence-level balance loss without its coefficient: mean over the 2 rows of "
                          "sum_e f_e P_e, f_e = count_e / (24 k / E), P_e = mean router probability of e in "
                          "the row (softmax; DeepSeek-V3: sigmoid scores normalised per token); padding included; "
                          "transformers itself computes no such loss for these models",
            "topk_order": "experts of a token ascending (transformers uses topk(sorted=False)); weights follow",
        }
    return out


# ------------------------------------------------------------------ driver

def run_family(fam, args, idx):
    tries = args.max_tries if fam.moe else 3
    for t in range(tries):
        seed = 1000 * (idx + 1) + t
        stage = os.path.join(args.work, f"{fam.name}.seed{seed}")
        shutil.rmtree(stage, ignore_errors=True)
        os.makedirs(stage)
        say(f"  try {t + 1} (seed {seed})")
        try:
            res = attempt(fam, seed, args, stage, verbose=(t == 0))
        except Reseed as e:
            say(f"    reseed: {e}")
            shutil.rmtree(stage, ignore_errors=True)
            continue
        for d in (fam.name, fam.name + "-bnb-4bit"):
            dst = os.path.join(args.out, d)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.move(os.path.join(stage, d), dst)
        if not args.keep_work:
            shutil.rmtree(stage, ignore_errors=True)
        res["tries"] = t + 1
        return res
    raise FamilyError(f"no seed in {tries} tries gave clear routing and non-zero gradients")


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fl in os.walk(path) for f in fl)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (created; family folders in it are replaced)")
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "..", "models", "tiny"),
                    help="folder with tokenizer.json and tokenizer_config.json (vocab 1024)")
    ap.add_argument("--maps", default=os.path.join(HERE, "..", "tests", "data", "bnb_nf4_maps.safetensors"))
    ap.add_argument("--only", default="", help="comma-separated family names")
    ap.add_argument("--min-margin", type=float, default=1e-3, help="smallest routing margin kept (logit units)")
    ap.add_argument("--max-tries", type=int, default=300, help="seeds tried per MoE family")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="device of the bf16 error figures (the fixtures are always made on the CPU in fp32)")
    ap.add_argument("--keep-work", action="store_true")
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    args.work = os.path.join(args.out, "_work")
    os.makedirs(args.work, exist_ok=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        if not os.path.exists(os.path.join(args.tokenizer, f)):
            sys.exit(f"make_fixtures: {args.tokenizer}/{f} not found (--tokenizer)")
    nf4_ref.load_maps(args.maps)
    log_path = os.path.join(args.out, "make_fixtures.log")
    log = open(log_path, "w", encoding="utf-8")
    sys.stdout, sys.stderr = Tee(log, sys.stdout), Tee(log, sys.stderr)
    torch.manual_seed(0)
    say(f"make_fixtures: {json.dumps(hf.versions())}; torch threads {torch.get_num_threads()}")
    families = [fs.by_name(n) for n in args.only.split(",")] if args.only else fs.FAMILIES
    results, failed = {}, {}
    for fam in families:
        say(f"\n== {fam.name}: {fam.about}")
        t0 = time.time()
        try:
            results[fam.name] = run_family(fam, args, fs.FAMILIES.index(fam))
            results[fam.name]["seconds"] = round(time.time() - t0, 1)
        except Exception as e:  # noqa: BLE001 - reported, the other families go on
            failed[fam.name] = f"{e.__class__.__name__}: {e}"
            say(f"  FAILED: {failed[fam.name]}")
            say(traceback.format_exc())
    say("\n== summary")
    for name, r in results.items():
        size = folder_bytes(os.path.join(args.out, name))
        tsize = folder_bytes(os.path.join(args.out, name + "-bnb-4bit"))
        say(f"{name:28s} {size / 1024:7.0f} KiB (+4-bit {tsize / 1024:5.0f} KiB)  tries {r['tries']:3d}  "
            f"max|logits| base {r['max|base.logits|']:.3f} lora {r['max|lora.logits|']:.3f} "
            f"4-bit {r['max|bnb4.logits|']:.3f}  loss base {r['base.loss']:.5f} lora {r['lora.loss']:.5f} "
            f"dpo {r['dpo.loss']:.5f}")
        for kind, (worst, mean) in r["bf16"].items():
            say(f"{'':28s} bf16 {kind:12s} worst {worst:.3e} mean {mean:.3e}")
        if r["min_margins"]:
            say(f"{'':28s} smallest routing margin {min(r['min_margins'].values()):.3e}")
    for name, why in failed.items():
        say(f"{name:28s} FAILED: {why}")
    hf.write_json(os.path.join(args.out, "summary.json"), {"results": results, "failed": failed,
                                                           "versions": hf.versions()})
    if not args.keep_work:
        shutil.rmtree(args.work, ignore_errors=True)
    tar_path = os.path.join(args.out, "fixtures.tar")
    say(f"\nwriting {tar_path}")
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout, sys.stderr = sys.stdout.stream, sys.stderr.stream
    log.close()
    with tarfile.open(tar_path, "w") as tar:
        for name in sorted(results):
            for d in (name, name + "-bnb-4bit"):
                tar.add(os.path.join(args.out, d), arcname=d)
        tar.add(os.path.join(args.out, "summary.json"), arcname="summary.json")
        tar.add(log_path, arcname="make_fixtures.log")
    print(f"{tar_path}: {os.path.getsize(tar_path) / 1024:.0f} KiB, {len(results)} families"
          + (f", FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
