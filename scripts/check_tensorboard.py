#!/usr/bin/env python3
"""Check ds-ft's TensorBoard event files with TensorBoard's own reader.

    python3 scripts/check_tensorboard.py RUN_DIR [RUN_DIR ...]
    python3 scripts/check_tensorboard.py --selftest path/to/ds-ft

For each run folder, every event file in RUN_DIR/tensorboard/ is read with
tensorboard's EventAccumulator (as `tensorboard --logdir` does, orphaned data
purged) and compared with RUN_DIR/metrics.jsonl: the same tags (train/KEY for
training rows, eval/NAME/KEY for evaluation rows, every number but "step"),
and for each tag the same steps with exactly the same values (the JSON number
rounded to float32).

--selftest runs the tiny recipe three ways in a scratch folder and checks each:
a plain run; a run killed with SIGKILL between two checkpoints and resumed
(TensorBoard must drop the steps the resumed run logs again); and a fresh run
into that same folder (the earlier run's events must not show).
Needs: pip's tensorboard (no TensorFlow needed). Run it from the checkout.
"""
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def f32(x):
    return struct.unpack('<f', struct.pack('<f', float(x)))[0]


def expected(run):
    want = {}
    with open(os.path.join(run, 'metrics.jsonl')) as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            name = row.get('eval')
            for key, v in row.items():
                if key == 'step' or isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                tag = f'eval/{name}/{key}' if name is not None else f'train/{key}'
                want.setdefault(tag, []).append((row['step'], f32(v)))
    return want


def check(run):
    acc = EventAccumulator(os.path.join(run, 'tensorboard'), size_guidance={'scalars': 0})
    acc.Reload()
    got = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()['scalars']}
    want = expected(run)
    problems = []
    for tag in sorted(set(want) | set(got)):
        w, g = sorted(want.get(tag, [])), sorted(got.get(tag, []))
        if w != g:
            problems.append(f'{tag}: metrics.jsonl {w[:6]}... ({len(w)}), events {g[:6]}... ({len(g)})')
    points = sum(len(v) for v in want.values())
    if problems:
        print(f'FAIL {run}:\n  ' + '\n  '.join(problems[:20]))
        return False
    print(f'ok {run}: {len(want)} tags, {points} values, all equal to metrics.jsonl')
    return True


def last_step(run):
    try:
        with open(os.path.join(run, 'metrics.jsonl')) as f:
            steps = [json.loads(l)['step'] for l in f if l.strip().endswith('}')]
        return max(steps) if steps else 0
    except FileNotFoundError:
        return 0


def selftest(dsft):
    tmp = tempfile.mkdtemp(prefix='tb-check-')
    base = ['recipes/tiny.yaml', 'train.max_steps=60', 'train.logging_steps=1', 'save.every_steps=20',
            'eval.every_steps=30', 'eval.limit=16', 'save.merge=false', 'train.tensorboard=true', 'device=cpu']
    ok = True
    plain = os.path.join(tmp, 'plain')
    subprocess.run([dsft] + base + [f'output_dir={plain}'], check=True, stderr=subprocess.DEVNULL)
    ok &= check(plain)

    killed = os.path.join(tmp, 'killed')
    p = subprocess.Popen([dsft] + base + [f'output_dir={killed}'], stderr=subprocess.DEVNULL)
    while p.poll() is None and last_step(killed) < 27:   # past the checkpoint at 20, before the one at 40
        time.sleep(0.01)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait()
        print(f'killed at step {last_step(killed)}, resuming from the checkpoint at step 20')
        subprocess.run([dsft] + base + [f'output_dir={killed}', '--resume'], check=True, stderr=subprocess.DEVNULL)
        ok &= check(killed)
    else:
        print('the run ended before it could be killed: the resume case was not checked')
        ok = False

    subprocess.run([dsft] + base + [f'output_dir={killed}', 'train.learning_rate=1e-3'], check=True,
                   stderr=subprocess.DEVNULL)
    ok &= check(killed)
    return ok


def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--selftest':
        ok = selftest(os.path.abspath(sys.argv[2]))
    elif len(sys.argv) >= 2 and not sys.argv[1].startswith('-'):
        ok = all([check(run) for run in sys.argv[1:]])
    else:
        sys.exit(__doc__)
    print('tensorboard check: ' + ('all equal' if ok else 'FAILED'))
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
