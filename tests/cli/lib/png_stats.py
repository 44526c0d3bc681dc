#!/usr/bin/env python3
"""png_stats.py FILE.png - what a screenshot shows, for the report's browser
test: width, height, distinct colours, the share of pixels that differ from
the page background (its most common colour), and how many pixels in the
top half are close to the plots' first series colour (#1f77b4). Decodes 8-bit RGB/RGBA PNGs
with zlib only (no imaging library), as Chromium writes them."""
import struct
import sys
import zlib


def decode(path):
    data = open(path, 'rb').read()
    if data[:8] != b'\x89PNG\r\n\x1a\n':
        sys.exit(f'{path}: not a PNG file')
    pos, idat, w = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b'IHDR':
            w, h, depth, ctype, _, _, interlace = struct.unpack('>IIBBBBB', body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                sys.exit(f'{path}: only 8-bit RGB/RGBA non-interlaced PNGs are read (depth {depth}, type {ctype})')
            bpp = 3 if ctype == 2 else 4
        elif kind == b'IDAT':
            idat.append(body)
        pos += 12 + n
    if w is None:
        sys.exit(f'{path}: no IHDR chunk')
    raw = zlib.decompress(b''.join(idat))
    stride = w * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        elif f != 0:
            sys.exit(f'{path}: bad filter {f} on row {y}')
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def main():
    w, h, bpp, rows = decode(sys.argv[1])
    counts, top = {}, {}
    for y, line in enumerate(rows):
        for i in range(0, len(line), bpp):
            px = line[i:i + 3]
            counts[px] = counts.get(px, 0) + 1
            if y < h // 2:
                top[px] = top.get(px, 0) + 1
    background = max(counts, key=counts.get)
    other = w * h - counts[background]
    blue = sum(c for px, c in top.items() if abs(px[0] - 31) + abs(px[1] - 119) + abs(px[2] - 180) < 40)
    print(f'width {w} height {h} colours {len(counts)} non_background {other / (w * h):.4f} series_blue {blue}')


if __name__ == '__main__':
    main()
