#!/usr/bin/env python3
"""tests/cli/lib/adapter_diff.py A.safetensors B.safetensors: the largest absolute
difference between same-named tensors, and the largest absolute value, as
"max_abs_diff X max_abs Y". The standard library only: safetensors is an
8-byte header length, a JSON header, then the raw little-endian data."""
import json
import struct
import sys


def tensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        blob = data[a:b]
        if t["dtype"] == "F32":
            vals = struct.unpack("<%df" % (len(blob) // 4), blob)
        elif t["dtype"] == "BF16":
            halves = struct.unpack("<%dH" % (len(blob) // 2), blob)
            vals = [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]
        elif t["dtype"] == "F16":
            vals = struct.unpack("<%de" % (len(blob) // 2), blob)
        else:
            sys.exit("%s: %s: unexpected dtype %s" % (path, name, t["dtype"]))
        out[name] = (t["shape"], vals)
    return out


def main():
    a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
    if sorted(a) != sorted(b):
        sys.exit("the two files hold different tensors")
    diff = biggest = 0.0
    for name in a:
        if a[name][0] != b[name][0]:
            sys.exit("%s: shapes %s and %s" % (name, a[name][0], b[name][0]))
        for x, y in zip(a[name][1], b[name][1]):
            diff = max(diff, abs(x - y))
            biggest = max(biggest, abs(x))
    print("max_abs_diff %.9g max_abs %.9g" % (diff, biggest))


main()
