"""The 4-bit twin of a fixture: the same checkpoint in the layout transformers
+ bitsandbytes save a pre-quantized NF4 model (fixtures/tiny-llama-bnb-4bit),
quantized with scripts/nf4_ref.py (bit for bit bitsandbytes), and the way back
to the dequantized bf16 weights that bitsandbytes' dequantize_4bit returns."""
import json

import torch

import nf4_ref

# What transformers writes into config.json for BitsAndBytesConfig(load_in_4bit=True,
# bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=bf16),
# as in fixtures/tiny-llama-bnb-4bit/config.json.
QUANTIZATION_CONFIG = {
    "_load_in_4bit": True,
    "_load_in_8bit": False,
    "bnb_4bit_compute_dtype": "bfloat16",
    "bnb_4bit_quant_storage": "uint8",
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
    "llm_int8_enable_fp32_cpu_offload": False,
    "llm_int8_has_fp16_weight": False,
    "llm_int8_skip_modules": None,
    "llm_int8_threshold": 6.0,
    "load_in_4bit": True,
    "load_in_8bit": False,
    "quant_method": "bitsandbytes",
}

QS_SUFFIX = ".quant_state.bitsandbytes__nf4"


def _u8(data):
    return torch.tensor(list(data), dtype=torch.uint8)


def quantize_checkpoint(hub, specs, nested_map, is_quantized):
    """hub: name -> bf16 (or fp32) tensor; specs: [(name, shape, kind)].
    Returns (tensors of the 4-bit model.safetensors, the dequantized checkpoint
    (name -> bf16 tensor, what bitsandbytes computes with), names quantized)."""
    out, deq, quantized = {}, {}, []
    quant_map = torch.tensor(nf4_ref.NF4, dtype=torch.float32)
    nmap = torch.tensor(nested_map, dtype=torch.float32)
    for name, shape, kind in specs:
        t = hub[name]
        if not is_quantized(name, shape, kind):
            out[name] = t
            deq[name] = t
            continue
        if t.dtype != torch.bfloat16:
            raise ValueError(f"{name}: a quantized weight must come from bf16, not {t.dtype}")
        qt = nf4_ref.quantize(t.float().flatten().tolist(), double_quant=True, nested_map=nested_map)
        out[name] = _u8(qt["packed"]).reshape(-1, 1)
        out[name + ".absmax"] = _u8(qt["absmax_q"])
        out[name + ".nested_absmax"] = torch.tensor(qt["absmax2"], dtype=torch.float32)
        out[name + ".nested_quant_map"] = nmap.clone()
        out[name + ".quant_map"] = quant_map.clone()
        out[name + QS_SUFFIX] = _u8(nf4_ref.quant_state_json(shape, qt["offset"]))
        values = [nf4_ref.bf16_round(v) for v in nf4_ref.dequantize(qt, nested_map)]
        deq[name] = torch.tensor(values, dtype=torch.float32).reshape(shape).to(torch.bfloat16)
        if not torch.equal(deq[name].float(), torch.tensor(values, dtype=torch.float32).reshape(shape)):
            raise AssertionError(f"{name}: dequantized values are not bf16 values")
        quantized.append(name)
    return out, deq, quantized


def dequantized_checkpoint(tensors, nested_map=None):
    """The bf16 weights bitsandbytes' dequantize_4bit gives for a 4-bit
    checkpoint's tensors (name -> tensor, as safetensors.torch.load_file
    returns them); other tensors pass through."""
    out = {}
    for name, t in tensors.items():
        if not name.endswith(QS_SUFFIX):
            continue
        w = name[: -len(QS_SUFFIX)]
        qs = json.loads(bytes(t.tolist()).decode("utf-8"))
        if qs["quant_type"] != "nf4" or qs["blocksize"] != nf4_ref.BLOCK:
            raise ValueError(f"{name}: {qs} is not NF4 with blocks of {nf4_ref.BLOCK}")
        nmap = tensors[w + ".nested_quant_map"].tolist() if nested_map is None else nested_map
        n = qs["shape"][0] * qs["shape"][1]
        qt = {"n": n, "double_quant": True, "packed": bytes(tensors[w].flatten().tolist()),
              "absmax_q": bytes(tensors[w + ".absmax"].tolist()),
              "absmax2": tensors[w + ".nested_absmax"].tolist(), "offset": float(qs["nested_offset"])}
        values = [nf4_ref.bf16_round(v) for v in nf4_ref.dequantize(qt, nmap)]
        out[w] = torch.tensor(values, dtype=torch.float32).reshape(qs["shape"]).to(torch.bfloat16)
    companions = (".absmax", ".nested_absmax", ".nested_quant_map", ".quant_map", QS_SUFFIX)
    for name, t in tensors.items():
        if name in out or any(name.endswith(s) and name[: -len(s)] in out for s in companions):
            continue
        out[name] = t
    return out
