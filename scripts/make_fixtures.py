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
from fixture_probes import (BATCH, SEQ, FamilyError, Reseed, analyze_routing, base_forward,  # noqa: E402
                            check_loaded, introspect, moe_tensors, rope_facts, say)

PROMPT_MASK, PAD_MASK = 8, 4
DPO_LEN, DPO_PROMPT, DPO_BETA = 20, 6, 0.1
LORA_R, LORA_ALPHA = 4, 8
WEIGHT_STD, LORA_B_STD = 0.2, 0.1


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
