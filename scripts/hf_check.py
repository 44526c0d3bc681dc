"""Check ds-ft's files with transformers and PEFT (run where they are installed).

  python3 scripts/hf_check.py --fixtures DIR --dsft PATH --work DIR

1. transformers + PEFT themselves in bf16 on the tiny-llama fixture: the relative
   error of their logits, loss and SFT/DPO LoRA gradients against the fp32
   reference (what "bf16 tolerance" means on this fixture).
2. `ds-ft merge` of the fixture adapter loads in transformers and gives the
   logits of base + adapter (PEFT).
3. An adapter trained by ds-ft, passed through `ds-ft export` / `ds-ft import`,
   loads in PEFT and gives the logits ds-ft computes for it (`ds-ft dump`).
Prints one line per check and exits non-zero if a check fails.
"""
import argparse, json, os, subprocess, sys

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM


def rel(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    return float((a - b).norm() / b.norm())


def peft_key(name):
    return name.replace(".default", "")


def model_with_adapter(base_dir, adapter_dir, dtype, device):
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, attn_implementation="eager").to(device)
    return PeftModel.from_pretrained(base, adapter_dir, is_trainable=True).to(device)


def completion_logps(model, ids, prompt_len):
    logits = model(input_ids=ids).logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    return lp[:, prompt_len - 1:].sum(-1)


def bf16_errors(fix, device):
    ref = load_file(f"{fix}/tiny-llama/reference.safetensors")
    m = model_with_adapter(f"{fix}/tiny-llama", f"{fix}/tiny-llama/adapter", torch.bfloat16, device)
    ids, labels = ref["input_ids"].to(device), ref["labels"].to(device)
    out = m(input_ids=ids, labels=labels)
    out.loss.backward()
    res = {"lora.logits": rel(out.logits.float().cpu(), ref["lora.logits"]),
           "lora.loss": rel(out.loss.float().cpu().reshape(1), ref["lora.loss"])}
    worst = 0.0
    for n, p in m.named_parameters():
        if p.requires_grad:
            e = rel(p.grad.float().cpu(), ref["sft.grad." + peft_key(n)])
            res["sft.grad." + peft_key(n)] = e
            worst = max(worst, e)
    m.zero_grad()
    # DPO: sigmoid, beta as in the fixture, reference = adapters disabled
    beta, P = float(ref["dpo.beta"][0]), int(ref["dpo.prompt_len"][0])
    ch, rj = ref["dpo.chosen_ids"].to(device), ref["dpo.rejected_ids"].to(device)
    with torch.no_grad(), m.disable_adapter():
        rc, rr = completion_logps(m, ch, P), completion_logps(m, rj, P)
    pc, pr = completion_logps(m, ch, P), completion_logps(m, rj, P)
    loss = -torch.nn.functional.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()
    loss.backward()
    res["dpo.loss"] = rel(loss.float().cpu().reshape(1), ref["dpo.loss"])
    for n, p in m.named_parameters():
        if p.requires_grad:
            res["dpo.grad." + peft_key(n)] = rel(p.grad.float().cpu(), ref["dpo.grad." + peft_key(n)])
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--dsft", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--trained-adapter", help="an adapter ds-ft trained on --trained-base")
    ap.add_argument("--trained-base")
    a = ap.parse_args()
    fix, work = a.fixtures, a.work
    os.makedirs(work, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ok = True

    # 1. transformers' own bf16 error on this fixture
    res = bf16_errors(fix, device)
    for kind in ("lora.logits", "lora.loss", "sft.grad", "dpo.loss", "dpo.grad"):
        vals = [v for k, v in res.items() if k.startswith(kind)]
        print(f"transformers+PEFT bf16 vs fp32 reference: {kind:12s} worst {max(vals):.3e} mean {sum(vals)/len(vals):.3e}")

    # 2. merged folder in transformers == PEFT base + adapter
    merged = f"{work}/merged"
    subprocess.run([a.dsft, "merge", "--model", f"{fix}/tiny-llama", "--adapter", f"{fix}/tiny-llama/adapter",
                    "--out", merged, "--source", "original"], check=True)
    ref = load_file(f"{fix}/tiny-llama/reference.safetensors")
    ids = ref["input_ids"]
    with torch.no_grad():
        mm = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32, attn_implementation="eager")
        peft = model_with_adapter(f"{fix}/tiny-llama", f"{fix}/tiny-llama/adapter", torch.float32, "cpu")
        e = rel(mm(input_ids=ids).logits, peft(input_ids=ids).logits)
    print(f"ds-ft merge -> transformers logits vs PEFT base+adapter: relative error {e:.3e} (bf16 merged weights)")
    ok &= e < 2e-2

    # 3. a ds-ft-trained adapter, exported and imported, in PEFT
    if a.trained_adapter:
        bundle, imported = f"{work}/adapter.dsft", f"{work}/imported"
        subprocess.run([a.dsft, "export", "--adapter", a.trained_adapter, "--out", bundle], check=True)
        subprocess.run([a.dsft, "import", "--in", bundle, "--out", imported], check=True)
        g = torch.Generator().manual_seed(0)
        inp = torch.randint(2, 1000, (2, 32), generator=g)
        save_file({"input_ids": inp, "labels": inp.clone()}, f"{work}/input.safetensors")
        subprocess.run([a.dsft, "dump", "--model", a.trained_base, "--adapter", imported, "--input",
                        f"{work}/input.safetensors", "--out", f"{work}/dump.safetensors", "--device", "cpu"], check=True)
        ours = load_file(f"{work}/dump.safetensors")["lora.logits"]
        with torch.no_grad():
            pm = model_with_adapter(a.trained_base, imported, torch.float32, "cpu")
            e = rel(pm(input_ids=inp).logits, ours)
        print(f"ds-ft-trained adapter (export -> import) in PEFT: logits vs ds-ft dump: relative error {e:.3e}")
        ok &= e < 1e-4
    print("hf_check:", "ok" if ok else "FAILED")
    sys.exit(0 if ok else 1)


main()
