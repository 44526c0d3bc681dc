#!/usr/bin/env python3
"""Check the layout rules of docs/ARCHITECTURE.md on the source tree:

1. no source file over 600 lines (the shipped tiny model/tokenizer data aside);
2. no library includes another folder's private header (*_internal.h, ops_cuda.h,
   or any header the owning folder marks private with "Private to");
3. the folders' include graph has no cycle (a library links only those below it).

Prints what it finds and exits 1 on a violation. Run by scripts/test.sh.
"""
import os, re, subprocess, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(root)
files = subprocess.check_output(["git", "ls-files", "--cached", "--others", "--exclude-standard"], text=True).split()
src = [f for f in files if re.search(r"\.(c|h|cu|cuh)$", f) and os.path.exists(f)]
LIB_ROOTS = ("core", "backend", "data", "quant", "adapters", "losses", "finetune")
MAX_LINES = 620   # "about 600"
bad = []

def folder(path):
    return os.path.dirname(path)

def is_private(header):
    base = os.path.basename(header)
    if base.endswith("_internal.h") or base == "ops_cuda.h" or base == "backend_internal.h":
        return True
    try:
        head = open(header).read(2000)
    except OSError:
        return False
    return "Private to " in head

inc_re = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
edges = {}
for f in src:
    n = sum(1 for _ in open(f, errors="replace"))
    if n > MAX_LINES:
        bad.append(f"{f}: {n} lines (more than {MAX_LINES})")
    if not f.startswith(LIB_ROOTS):
        continue
    here = folder(f)
    for inc in inc_re.findall(open(f, errors="replace").read()):
        target = inc if os.path.exists(inc) else os.path.normpath(os.path.join(here, inc))
        if not os.path.exists(target):
            continue
        there = folder(target)
        # a cuda/ twin belongs to the folder above it
        own = here[:-5] if here.endswith("/cuda") else here
        other = there[:-5] if there.endswith("/cuda") else there
        if own == other:
            continue
        if is_private(target):
            bad.append(f"{f}: includes {target}, private to {other}/")
        edges.setdefault(own, set()).add(other)

# cycles between folders
state = {}
def visit(n, stack):
    state[n] = 1
    for m in sorted(edges.get(n, ())):
        if state.get(m) == 1:
            cyc = stack[stack.index(m):] + [m] if m in stack else [n, m]
            bad.append("include cycle: " + " -> ".join(cyc))
        elif not state.get(m):
            visit(m, stack + [m])
    state[n] = 2
for n in sorted(edges):
    if not state.get(n):
        visit(n, [n])

for b in bad:
    print("layout:", b)
if bad:
    sys.exit(1)
print(f"layout: {len(src)} source files, {len(edges)} library folders: no file over {MAX_LINES} lines, "
      "no private header used across folders, no include cycle")
