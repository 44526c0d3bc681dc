#!/usr/bin/env python3
"""Check ds-ft on one model-family fixture with transformers and PEFT (run where
they are installed; the GPU is used for the bf16 figures if present).

    python3 scripts/hf_check_family.py --fixture tests/data/fixtures/tiny-qwen2 \\
        --dsft build/ds-ft --work /tmp/hfcheck [--adapter DIR] [--no-dsft]

1. The fixture itself: transformers + PEFT in fp32 on this machine give its
   reference again (base and adapter logits, losses, gradients).
2. transformers + PEFT in bf16 against the fp32 reference: what "bf16
   tolerance" means on this fixture (and on its 4-bit twin: transformers in
   bf16 on the dequantized NF4 weights against the twin's fp32 logits).
3. An adapter ds-ft wrote (--adapter, or the fixture's adapter passed through
   `ds-ft export` and `ds-ft import`) loads into PEFT on the matching
   transformers model (per-expert modules for DeepSeek MoE) and gives the
   logits `ds-ft dump` computes for it; `ds-ft dump` of the 4-bit twin gives
   the twin's reference logits.
4. `ds-ft merge` of the fixture adapter writes PEFT's merge_and_unload weights
   (to bf16 rounding), loads in transformers and gives the logits of PEFT's
   base + adapter (within what rounding PEFT's merge to bf16 gives).
Prints one line per check; exits non-zero if a check fails.
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import hf_families as hf  # noqa: E402

hf.set_offline()

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import bnb_twin  # noqa: E402


class Checks:
    def __init__(self):
        self.failed = []

    def expect(self, name, err, tol):
        ok = err <= tol
        print(f"{'ok    ' if ok else 'FAILED'} {name}: relative error {err:.3e} (limit {tol:.0e})", flush=True)
        if not ok:
            self.failed.append(name)

    def error(self, name, e):
        print(f"FAILED {name}: {e.__class__.__name__}: {e}", flush=True)
        self.failed.append(name)


def run(cmd):
    print("  $ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-800:]}")
    return p


def fp32_self_check(fix, ref, checks):
    ids, labels = ref["input_ids"], ref["labels"]
    with torch.no_grad():
        model, _ = hf.load_model(fix, torch.float32)
        checks.expect("fixture: transformers fp32 base.logits", hf.rel(model(input_ids=ids).logits, ref["base.logits"]),
                      1e-6)
    pm = hf.model_with_adapter(fix, os.path.join(fix, "adapter"), torch.float32, "cpu", trainable=True)
    got = hf.run_sft(pm, ids, labels)
    checks.expect("fixture: PEFT fp32 lora.logits", hf.rel(got["lora.logits"], ref["lora.logits"]), 1e-6)
    worst = max(hf.rel(v, ref[k]) for k, v in got.items() if k.startswith("sft.grad."))
    checks.expect("fixture: PEFT fp32 sft.grad (worst)", worst, 1e-5)


def bf16_figures(fix, device, work):
    res = hf.bf16_errors(fix, device)
    twin = fix.rstrip("/") + "-bnb-4bit"
    if os.path.isdir(twin):
        res["bnb4.logits"], fp32 = twin_errors(twin, device, work)
        print(f"4-bit twin: transformers fp32 on the dequantized weights vs its reference: {fp32:.3e}")
    for kind, (worst, mean) in hf.summarize_errors(res).items():
        print(f"transformers+PEFT bf16 vs fp32 reference ({device}): {kind:12s} worst {worst:.3e} mean {mean:.3e}")


def twin_errors(twin, device, work):
    """(bf16 error, fp32 error) of transformers on the twin's dequantized weights."""
    ref = load_file(os.path.join(twin, "reference.safetensors"))
    deq_dir = os.path.join(work, "twin-dequantized")
    os.makedirs(deq_dir, exist_ok=True)
    deq = bnb_twin.dequantized_checkpoint(load_file(os.path.join(twin, "model.safetensors")))
    save_file({k: v.contiguous() for k, v in deq.items()}, os.path.join(deq_dir, "model.safetensors"),
              metadata={"format": "pt"})
    conf = hf.read_json(os.path.join(twin, "config.json"))
    conf.pop("quantization_config", None)
    hf.write_json(os.path.join(deq_dir, "config.json"), conf)
    out = []
    with torch.no_grad():
        for dtype, dev in ((torch.bfloat16, device), (torch.float32, "cpu")):
            m, _ = hf.load_model(deq_dir, dtype, dev)
            out.append(hf.rel(m(input_ids=ref["input_ids"].to(dev)).logits.float(), ref["logits"]))
            del m
    return out[0], out[1]


def dsft_adapter_in_peft(a, fix, ref, checks):
    work = a.work
    adapter = a.adapter
    if not adapter:
        bundle, adapter = os.path.join(work, "adapter.dsft"), os.path.join(work, "imported")
        run([a.dsft, "export", "--adapter", os.path.join(fix, "adapter"), "--out", bundle])
        run([a.dsft, "import", "--in", bundle, "--out", adapter])
    inp = os.path.join(work, "input.safetensors")
    save_file({"input_ids": ref["input_ids"], "labels": ref["labels"]}, inp)
    dump = os.path.join(work, "dump.safetensors")
    run([a.dsft, "dump", "--model", fix, "--adapter", adapter, "--input", inp, "--out", dump, "--device", "cpu"])
    ours = load_file(dump)
    checks.expect("ds-ft dump base.logits vs fixture", hf.rel(ours["base.logits"], ref["base.logits"]), 1e-5)
    with torch.no_grad():
        pm = hf.model_with_adapter(fix, adapter, torch.float32, "cpu")
        theirs = pm(input_ids=ref["input_ids"]).logits
    checks.expect("ds-ft-written adapter in PEFT: logits vs ds-ft dump", hf.rel(theirs, ours["lora.logits"]), 1e-4)


def dsft_twin(a, fix, checks):
    twin = fix.rstrip("/") + "-bnb-4bit"
    if not os.path.isdir(twin):
        return
    tref = load_file(os.path.join(twin, "reference.safetensors"))
    inp, dump = os.path.join(a.work, "twin-input.safetensors"), os.path.join(a.work, "twin-dump.safetensors")
    save_file({"input_ids": tref["input_ids"]}, inp)
    run([a.dsft, "dump", "--model", twin, "--input", inp, "--out", dump, "--device", "cpu"])
    checks.expect("ds-ft dump of the 4-bit twin vs its logits", hf.rel(load_file(dump)["base.logits"], tref["logits"]),
                  1e-4)


def dsft_merge(a, fix, ref, checks):
    """ds-ft's merged weights against PEFT's merge_and_unload (fp32), then the
    merged model's logits against PEFT's base + adapter. Rounding the merged
    weights to bf16 moves the logits by what this fixture's bf16 sensitivity
    is (a router whose choices flip moves them far): the logits limit is the
    larger of 2e-2 and twice what PEFT's own merge rounded the same way gives."""
    merged = os.path.join(a.work, "merged")
    run([a.dsft, "merge", "--model", fix, "--adapter", os.path.join(fix, "adapter"), "--out", merged,
         "--source", "original"])
    cfg = hf.read_json(os.path.join(fix, "config.json"))
    ids = ref["input_ids"]
    with torch.no_grad():
        mm, info = hf.load_model(merged, torch.float32)
        bad = {k: v for k, v in info.items() if v and k != "error_msgs"}
        if bad:
            raise RuntimeError(f"transformers loading the merged folder: {bad}")
        if hf.is_moe_config(cfg):   # per-expert modules, named as PEFT's merged model names them
            hf.unfuse_experts(mm, load_file(os.path.join(merged, "model.safetensors")), cfg)
        pm = hf.model_with_adapter(fix, os.path.join(fix, "adapter"), torch.float32, "cpu")
        peft_logits = pm(input_ids=ids).logits
        theirs = pm.merge_and_unload()
        ours_sd, theirs_sd = mm.state_dict(), theirs.state_dict()
        missing = sorted(set(theirs_sd) - set(ours_sd))
        if missing:
            raise RuntimeError(f"the merged model lacks {missing[:4]}")
        worst, where = max((hf.rel(ours_sd[k], t), k) for k, t in theirs_sd.items() if t.is_floating_point())
        checks.expect(f"ds-ft merge weights vs PEFT merge_and_unload (worst: {where})", worst, 4e-3)
        for k, t in theirs_sd.items():   # PEFT's merge rounded where ds-ft wrote bf16
            o = ours_sd[k]
            if t.is_floating_point() and torch.equal(o, o.to(torch.bfloat16).float()):
                t.copy_(t.to(torch.bfloat16).float())
        e_round = hf.rel(theirs(input_ids=ids).logits, peft_logits)
        e = hf.rel(mm(input_ids=ids).logits, peft_logits)
    print(f"PEFT's merge rounded to bf16: logits relative error {e_round:.3e} against PEFT base+adapter")
    checks.expect("ds-ft merge -> transformers logits vs PEFT base+adapter (bf16 merged weights)", e,
                  max(2e-2, 2 * e_round))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixture", required=True, help="a family folder (its -bnb-4bit twin beside it is used too)")
    ap.add_argument("--dsft", help="the ds-ft binary")
    ap.add_argument("--work", help="scratch folder (default: a temporary one)")
    ap.add_argument("--adapter", help="an adapter ds-ft wrote for this fixture's model (default: the fixture's "
                                      "adapter through ds-ft export / import)")
    ap.add_argument("--no-dsft", action="store_true", help="only checks 1 and 2")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    fix = a.fixture.rstrip("/")
    a.work = a.work or tempfile.mkdtemp(prefix="hfcheck-")
    os.makedirs(a.work, exist_ok=True)
    ref = load_file(os.path.join(fix, "reference.safetensors"))
    info = hf.read_json(os.path.join(fix, "reference.json"))
    print(f"{info.get('family', fix)}: {info.get('about', '')}\n{hf.versions()}", flush=True)
    checks = Checks()
    steps = [("fixture reproduces in fp32", lambda: fp32_self_check(fix, ref, checks)),
             ("bf16 figures", lambda: bf16_figures(fix, a.device, a.work))]
    if not a.no_dsft:
        if not a.dsft:
            ap.error("--dsft is required (or --no-dsft)")
        steps += [("ds-ft adapter in PEFT", lambda: dsft_adapter_in_peft(a, fix, ref, checks)),
                  ("ds-ft dump of the 4-bit twin", lambda: dsft_twin(a, fix, checks)),
                  ("ds-ft merge in transformers", lambda: dsft_merge(a, fix, ref, checks))]
    for name, step in steps:
        try:
            step()
        except Exception as e:  # noqa: BLE001 - one line per failed check, the others still run
            checks.error(name, e)
    print("hf_check_family:", "ok" if not checks.failed else "FAILED: " + "; ".join(checks.failed))
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
