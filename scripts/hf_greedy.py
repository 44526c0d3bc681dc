"""Greedy continuation with transformers, to compare with llama.cpp's on a GGUF
that ds-ft exported from the same folder (for the families ds-ft's engine does
not run, Qwen2 and Qwen3). Run where transformers is installed.

  python3 scripts/hf_greedy.py MODEL_DIR --ids 0,53,275 [--new 12] [--expect 504,524,...]

Prints the ids of the --new greedily chosen tokens after the prompt ids (fp32,
eager attention); with --expect, exits non-zero unless they are those ids
(e.g. the ones tests/cli/lib/gguf_llama.mjs reports for llama.cpp).
"""
import argparse, sys

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ids", required=True, help="prompt token ids, comma-separated (BOS included)")
    ap.add_argument("--new", type=int, default=12)
    ap.add_argument("--expect", help="the ids llama.cpp chose, comma-separated")
    a = ap.parse_args()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="eager")
    ids = torch.tensor([[int(x) for x in a.ids.split(",")]])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=a.new, do_sample=False, eos_token_id=None, pad_token_id=0)
    new = out[0, ids.shape[1]:].tolist()
    print(",".join(str(t) for t in new))
    if a.expect is not None:
        want = [int(x) for x in a.expect.split(",")]
        ok = new[: len(want)] == want
        print("same as llama.cpp" if ok else f"DIFFERS from llama.cpp: {want}")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
