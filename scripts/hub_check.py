#!/usr/bin/env python3
"""scripts/hub_check.py - ds-ft's Hugging Face model ids against huggingface_hub itself.

Lays out a Hub cache as huggingface_hub does (models--ORG--NAME, refs/, snapshots/:
refs/main, a tag, refs/pr/3 and a bare commit), then for each id asks
huggingface_hub's try_to_load_from_cache where config.json is and `ds-ft inspect ID`
which folder it reads, under HF_HUB_CACHE, HF_HOME and the default ~/.cache. Both
must name the same snapshot, and an id the cache lacks must be missing for both.
Needs huggingface_hub (transformers brings it); no network.

    python3 scripts/hub_check.py --dsft build/ds-ft --model models/tiny
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

COMMITS = {"main": "0123456789abcdef0123456789abcdef01234567", "v1": "89abcdef0123456789abcdef0123456789abcdef",
           "refs/pr/3": "dbd6f0e98a1f2c9978e2d0c6370cdfc563218527"}


def lay_out(cache, model):
    repo = os.path.join(cache, "models--acme--tiny")
    for ref, commit in COMMITS.items():
        os.makedirs(os.path.dirname(os.path.join(repo, "refs", ref)), exist_ok=True)
        with open(os.path.join(repo, "refs", ref), "w") as f:
            f.write(commit)
        snap = os.path.join(repo, "snapshots", commit)
        if not os.path.isdir(snap):
            shutil.copytree(model, snap)


def hub_answer(env, repo_id, revision):
    """huggingface_hub's own lookup, in a child process so that it reads `env` at import."""
    code = ("import sys; from huggingface_hub import try_to_load_from_cache as t; "
            "p = t(sys.argv[1], 'config.json', revision=sys.argv[2] or None); "
            "print(p if isinstance(p, str) else '')")
    out = subprocess.run([sys.executable, "-c", code, repo_id, revision], env=env, capture_output=True, text=True,
                         check=True)
    path = out.stdout.strip()
    return os.path.realpath(os.path.dirname(path)) if path else None


def dsft_answer(dsft, env, name):
    out = subprocess.run([dsft, "inspect", name], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():
        if line.startswith("model folder"):
            return os.path.realpath(line.split(None, 2)[2])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsft", required=True)
    ap.add_argument("--model", default="models/tiny")
    a = ap.parse_args()
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        layouts = {"HF_HUB_CACHE": os.path.join(tmp, "cache"), "HF_HOME": os.path.join(tmp, "home", "hub"),
                   "HOME": os.path.join(tmp, "user", ".cache", "huggingface", "hub")}
        for var, cache in layouts.items():
            lay_out(cache, a.model)
            env = {k: v for k, v in os.environ.items()
                   if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME")}
            env[var] = {"HF_HUB_CACHE": cache, "HF_HOME": os.path.dirname(cache),
                        "HOME": os.path.join(tmp, "user")}[var]
            for revision in ["", "main", "v1", "refs/pr/3", COMMITS["v1"], "v9"]:
                for repo_id in ["acme/tiny", "acme/none"]:
                    name = repo_id + ("@" + revision if revision else "")
                    want, got = hub_answer(env, repo_id, revision), dsft_answer(a.dsft, env, name)
                    ok = want == got
                    fails += not ok
                    print(f"{'ok' if ok else 'FAIL'}: {var} {name}: huggingface_hub {want}, ds-ft {got}")
    print(f"hub_check: {fails} failure(s)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
