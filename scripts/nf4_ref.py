"""NF4 quantization as bitsandbytes does it, in plain Python (no torch needed).

Used by scripts/make_fixtures.py to write the 4-bit twins of the reference
fixtures, and checkable here without a GPU:

    python3 scripts/nf4_ref.py --self-test [--shared DIR]

quantizes the shared fixtures' bf16 weights and compares every byte with what
bitsandbytes wrote (fixtures/nf4-bitsandbytes.safetensors and
fixtures/tiny-llama-bnb-4bit/model.safetensors).

The arithmetic follows /work/shared/SPEC.md "NF4" and quant/nf4.c: fp32 values
throughout (every Python float here holds an fp32 value; a sum, product or
quotient of two of them is rounded back to fp32 once, which is exact IEEE fp32
arithmetic because a double holds more than twice fp32's precision).
"""
import argparse
import array
import json
import os
import struct
import sys

BLOCK = 64          # values per absmax
NESTED_BLOCK = 256  # absmax values per nested absmax

# The 16 NF4 values (fp32), as bitsandbytes' quant_map holds them.
NF4_TABLE_TEXT = (
    "-1.0 -0.6961928009986877 -0.5250730514526367 -0.39491748809814453 -0.28444138169288635 "
    "-0.18477343022823334 -0.09105003625154495 0.0 0.07958029955625534 0.16093020141124725 "
    "0.24611230194568634 0.33791524171829224 0.44070982933044434 0.5626170039176941 "
    "0.7229568362236023 1.0"
)


def f32(x):
    """x rounded to the nearest fp32 value (ties to even), as a Python float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_list(values):
    """Every value rounded to fp32 at once (array('f') rounds to nearest)."""
    return array.array("f", values).tolist()


NF4 = f32_list(float(v) for v in NF4_TABLE_TEXT.split())
# Midpoints between neighbouring NF4 values: exact in double, rounded to fp32 once.
NF4_MID = f32_list((NF4[i] + NF4[i + 1]) / 2.0 for i in range(15))


def bf16_round(x):
    """fp32 value -> nearest bf16 value (round to nearest even), as a Python float."""
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return struct.unpack("<f", struct.pack("<I", u & 0xFFFFFFFF))[0]


def bf16_bits(x):
    """The 16 bits of the bf16 value nearest to x."""
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def bf16_bytes_to_floats(raw):
    u = array.array("H", raw)
    if sys.byteorder != "little":
        u.byteswap()
    return array.array("f", struct.pack(f"<{len(u)}I", *[v << 16 for v in u])).tolist()


# ------------------------------------------------------------------ 4-bit codes

def encode4(x):
    """Number of NF4 midpoints strictly below x (the 4-bit code of x)."""
    c = 0
    for m in NF4_MID:
        if x > m:
            c += 1
    return c


def encode8(nested_map, x):
    """bitsandbytes' 8-bit code of x: its kernel's binary search over the
    sorted 256-value dynamic map, then the nearer neighbour (fp32 midpoint;
    a value exactly on the midpoint stays where the search stopped)."""
    p, below, above = 127, 0, 255
    lo, hi = nested_map[0], nested_map[255]
    step = 64
    while step > 0:
        if x > nested_map[p]:
            below, lo = p, nested_map[p]
            p += step
        else:
            above, hi = p, nested_map[p]
            p -= step
        step >>= 1
    v = nested_map[p]
    if x > v:
        return above if x > f32(f32(hi + v) * 0.5) else p
    return below if x < f32(f32(lo + v) * 0.5) else p


# ------------------------------------------------- torch's GPU mean, emulated

TORCH_TARGET_GRID = 528  # an H100 SXM: 132 SMs x 4 blocks of 512 threads


def _last_pow2(n):
    p = 1
    while p * 2 <= n:
        p *= 2
    return p


def _block_tree(lane, width):
    w = width
    while w > 32:
        half = w // 2
        for t in range(half):
            lane[t] = f32(lane[t] + lane[t + half])
        w = half
    off = 1
    while off < w:
        t = 0
        while t + off < w:
            lane[t] = f32(lane[t] + lane[t + off])
            t += 2 * off
        off *= 2
    return lane[0]


def _block_sum(x, n, vec, width, cta, ctas):
    stride = width * ctas
    lane = [0.0] * width
    for t in range(width):
        g = cta * width + t
        acc = [0.0, 0.0, 0.0, 0.0]
        if vec:
            v = g
            while v * 4 + 3 < n:
                for j in range(4):
                    acc[j] = f32(acc[j] + x[v * 4 + j])
                v += stride
            tail = n - n % 4 + t
            if cta == 0 and tail < n:
                acc[0] = f32(acc[0] + x[tail])
        else:
            i = g
            while i + 3 * stride < n:
                for j in range(4):
                    acc[j] = f32(acc[j] + x[i + j * stride])
                i += 4 * stride
            j = 0
            while j < 4 and i < n:
                acc[j] = f32(acc[j] + x[i])
                j += 1
                i += stride
        lane[t] = f32(f32(f32(acc[0] + acc[1]) + acc[2]) + acc[3])
    return _block_tree(lane, width)


def offset_mean(x):
    """torch.mean of an fp32 CUDA vector, in torch's summation order (the
    offset of double quantization; quant/nf4.c nf4_offset_mean)."""
    n = len(x)
    vec = n > 128
    dim0 = n // 4 if vec else n
    width = _last_pow2(dim0) if dim0 < 512 else 512
    per_thread = (n + width - 1) // width
    ctas = 1
    if per_thread >= 256:
        ctas = (per_thread + 15) // 16
        ctas = min(ctas, TORCH_TARGET_GRID)
        ctas = max(ctas, (per_thread + 255) // 256)
    if ctas == 1:
        total = _block_sum(x, n, vec, width, 0, 1)
    else:
        partial = [_block_sum(x, n, vec, width, c, ctas) for c in range(ctas)]
        lane = [0.0] * width
        for t in range(width):
            for c in range(t, ctas, width):
                lane[t] = f32(lane[t] + partial[c])
        total = _block_tree(lane, width)
    return f32(total * f32(1.0 / n))


# ------------------------------------------------------------- quantization

def quantize(w, double_quant=True, nested_map=None):
    """NF4-quantize fp32 values w (a flat list, the weight row-major).

    Returns a dict: packed (bytes, two codes per byte, even element in the
    high nibble), and either absmax (list of fp32, plain) or absmax_q (bytes),
    absmax2 (list of fp32) and offset (fp32) with double quantization."""
    n = len(w)
    nblocks = (n + BLOCK - 1) // BLOCK
    absmax = []
    packed = bytearray((n + 1) // 2)
    for b in range(nblocks):
        s, e = b * BLOCK, min(n, (b + 1) * BLOCK)
        amax = max(abs(v) for v in w[s:e])
        if amax == 0.0:
            raise ValueError(f"block {b} is all zeros (bitsandbytes would divide by zero)")
        absmax.append(amax)
        inv = f32(1.0 / amax)
        x = f32_list([v * inv for v in w[s:e]])
        if (e - s) % 2:
            x.append(0.0)  # an odd total pairs the last value with a padding 0
        for i in range(0, len(x), 2):
            packed[(s + i) // 2] = encode4(x[i]) << 4 | encode4(x[i + 1])
    out = {"n": n, "nblocks": nblocks, "packed": bytes(packed), "double_quant": double_quant}
    if not double_quant:
        out["absmax"] = absmax
        return out
    if nested_map is None or len(nested_map) != 256:
        raise ValueError("double quantization needs bitsandbytes' 256-value nested map")
    off = offset_mean(absmax)
    q = bytearray(nblocks)
    absmax2 = []
    for j in range((nblocks + NESTED_BLOCK - 1) // NESTED_BLOCK):
        s, e = j * NESTED_BLOCK, min(nblocks, (j + 1) * NESTED_BLOCK)
        d = [f32(a - off) for a in absmax[s:e]]
        amax2 = max(abs(v) for v in d)
        absmax2.append(amax2)
        inv = f32(1.0 / amax2)
        for b, v in enumerate(d):
            q[s + b] = encode8(nested_map, f32(v * inv))
    out.update(absmax_q=bytes(q), absmax2=absmax2, offset=off)
    return out


def dequantize(qt, nested_map=None):
    """The fp32 products nf4[code] * absmax that bitsandbytes' dequantize_4bit
    computes (it then rounds them to the weight's 16-bit dtype: bf16_round)."""
    if qt["double_quant"]:
        absmax = [f32(f32(nested_map[c] * qt["absmax2"][b // NESTED_BLOCK]) + qt["offset"])
                  for b, c in enumerate(qt["absmax_q"])]
    else:
        absmax = qt["absmax"]
    out = []
    for i in range(qt["n"]):
        byte = qt["packed"][i // 2]
        code = byte >> 4 if i % 2 == 0 else byte & 0xF
        out.append(f32(NF4[code] * absmax[i // BLOCK]))
    return out


def quant_state_json(shape, offset, dtype="bfloat16"):
    """The bytes of P.weight.quant_state.bitsandbytes__nf4: bitsandbytes'
    keys in its order, json.dumps formatting (the offset as Python prints the
    fp32 value widened to double)."""
    d = {"quant_type": "nf4", "blocksize": BLOCK, "dtype": dtype, "shape": list(shape),
         "nested_blocksize": NESTED_BLOCK, "nested_dtype": "float32", "nested_offset": offset}
    return json.dumps(d).encode("utf-8")


# --------------------------------------------- safetensors without torch

def read_safetensors(path):
    """{name: (dtype, shape, raw bytes)} and the metadata of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    out = {}
    for k, v in header.items():
        a, b = v["data_offsets"]
        out[k] = (v["dtype"], v["shape"], data[a:b])
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (dtype, shape, raw bytes)}; names in sorted order."""
    header, blobs, pos = {}, [], 0
    for k in sorted(tensors):
        dtype, shape, raw = tensors[k]
        header[k] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)


def f32_from_bytes(raw):
    a = array.array("f", raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tolist()


def load_maps(path):
    """(quant_map [16], nested_quant_map [256]) from tests/data/bnb_nf4_maps.safetensors."""
    t, _ = read_safetensors(path)
    qm = f32_from_bytes(t["quant_map"][2])
    nm = f32_from_bytes(t["nested_quant_map"][2])
    if qm != NF4:
        raise ValueError(f"{path}: quant_map differs from the NF4 table")
    if len(nm) != 256 or nm != sorted(nm):
        raise ValueError(f"{path}: nested_quant_map is not 256 sorted values")
    return qm, nm


# ---------------------------------------------------------------- self test

def _self_test(shared, maps_path):
    ok = True
    qm, nested = load_maps(maps_path)

    ref, _ = read_safetensors(os.path.join(shared, "fixtures/nf4-bitsandbytes.safetensors"))
    for name in ("down_proj", "odd_shape"):
        dtype, shape, raw = ref[f"{name}.input"]
        w = bf16_bytes_to_floats(raw)
        for mode, dq in (("plain", False), ("dq", True)):
            qt = quantize(w, double_quant=dq, nested_map=nested)
            checks = {"packed": qt["packed"] == ref[f"{name}.{mode}.packed"][2]}
            if dq:
                checks["absmax"] = qt["absmax_q"] == ref[f"{name}.dq.absmax"][2]
                checks["nested_absmax"] = qt["absmax2"] == f32_from_bytes(ref[f"{name}.dq.nested_absmax"][2])
                checks["nested_offset"] = [qt["offset"]] == f32_from_bytes(ref[f"{name}.dq.nested_offset"][2])
                checks["nested_quant_map"] = nested == f32_from_bytes(ref[f"{name}.dq.nested_quant_map"][2])
            else:
                checks["absmax"] = qt["absmax"] == f32_from_bytes(ref[f"{name}.plain.absmax"][2])
            deq = [bf16_round(v) for v in dequantize(qt, nested)]
            checks["dequantized"] = deq == bf16_bytes_to_floats(ref[f"{name}.{mode}.dequantized"][2])
            for k, v in checks.items():
                print(f"nf4-bitsandbytes {name}.{mode}.{k}: {'same' if v else 'DIFFERENT'}")
                ok &= v

    src, _ = read_safetensors(os.path.join(shared, "fixtures/tiny-llama/model.safetensors"))
    bnb, _ = read_safetensors(os.path.join(shared, "fixtures/tiny-llama-bnb-4bit/model.safetensors"))
    count = 0
    for k in sorted(src):
        if not k.endswith("_proj.weight"):
            continue
        dtype, shape, raw = src[k]
        qt = quantize(bf16_bytes_to_floats(raw), double_quant=True, nested_map=nested)
        same = (qt["packed"] == bnb[k][2] and qt["absmax_q"] == bnb[k + ".absmax"][2]
                and qt["absmax2"] == f32_from_bytes(bnb[k + ".nested_absmax"][2])
                and quant_state_json(shape, qt["offset"]) == bnb[k + ".quant_state.bitsandbytes__nf4"][2]
                and f32_from_bytes(bnb[k + ".quant_map"][2]) == qm
                and f32_from_bytes(bnb[k + ".nested_quant_map"][2]) == nested
                and bnb[k][1] == [(len(qt["packed"])), 1])
        count += 1
        if not same:
            print(f"tiny-llama-bnb-4bit {k}: DIFFERENT")
        ok &= same
    print(f"tiny-llama-bnb-4bit: {count} quantized weights compared byte for byte")
    print("nf4_ref self-test:", "ok" if ok else "FAILED")
    return ok


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--self-test", action="store_true", help="compare with bitsandbytes' own files")
    ap.add_argument("--shared", default=os.environ.get("DSFT_SHARED", "/work/shared"))
    ap.add_argument("--maps", default=os.path.join(here, "..", "tests", "data", "bnb_nf4_maps.safetensors"))
    a = ap.parse_args()
    if not a.self_test:
        ap.print_help()
        return 0
    return 0 if _self_test(a.shared, a.maps) else 1


if __name__ == "__main__":
    sys.exit(main())
