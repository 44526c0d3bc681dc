"""What scripts/make_fixtures.py measures on transformers' models: that the
checkpoint loaded as written, the rope tables and attention scales it built
(with this script's own reading printed beside them), every hidden state and
the attention pattern of a base forward, and the MoE routing (checked against
a re-implementation, with its margins to a tie and its load statistics)."""
import math
import os

import torch

import hf_families as hf

BATCH, SEQ = 2, 24


class FamilyError(Exception):
    """Something about transformers, PEFT or this script is not as expected."""


class Reseed(Exception):
    """These random weights make a near-tie or a zero gradient: draw others."""


def say(*a):
    print(*a, flush=True)


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
