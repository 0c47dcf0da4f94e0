#!/usr/bin/env bash
# TensorBoard reads what `nfbench export --tensorboard` writes, with the same steps and values as metrics.h5.
#
#   scripts/check-tensorboard.sh [RUN_DIR]
#
# Without RUN_DIR it trains a small run first (nf_resnet8_cifar, 40 steps, into a temporary directory). It exports
# the run, reads the event file back with TensorBoard's own reader
# (tensorboard.backend.event_processing.event_accumulator) and the record with h5py, and compares every tag's step
# list and values (float32, as TensorBoard stores them). Python: $NFBENCH_PYTHON if set (it must have tensorboard,
# h5py and numpy), else .venv/bin/python, into which tensorboard, h5py and numpy are installed from PyPI if missing.
# Prints `check-tensorboard: ok (N tags, M points)` and exits 0, or says which tag differs and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

py="${NFBENCH_PYTHON:-.venv/bin/python}"
if ! "$py" -c 'import tensorboard, h5py, numpy' 2>/dev/null; then
  if [ -n "${NFBENCH_PYTHON:-}" ]; then
    echo "check-tensorboard: $py lacks tensorboard, h5py or numpy" >&2; exit 2
  fi
  echo "check-tensorboard: installing tensorboard, h5py and numpy into .venv (PyPI)" >&2
  python3 -m venv .venv
  "$py" -m pip install --quiet --progress-bar off tensorboard h5py numpy
fi

cargo build --quiet --bin nfbench
nfbench=target/debug/nfbench
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

run="${1:-}"
if [ -z "$run" ]; then
  run="$work/run"
  "$nfbench" train --headless --steps 40 --set model.name=nf_resnet8_cifar --set data.eval_images=200 \
    --set run.eval_every=10 --set run.stats_every=5 --set run.checkpoint_every=40 --run-dir "$run" 2> "$work/train.log" \
    || { cat "$work/train.log" >&2; exit 1; }
fi
"$nfbench" export "$run" --tensorboard "$work/tb" > /dev/null

"$py" - "$run/metrics.h5" "$work/tb" <<'EOF'
import sys
import h5py, numpy as np
from tensorboard.backend.event_processing import event_accumulator

h5_path, tb_dir = sys.argv[1], sys.argv[2]
acc = event_accumulator.EventAccumulator(tb_dir, size_guidance={event_accumulator.SCALARS: 0})
acc.Reload()
f = h5py.File(h5_path, "r", locking=False)

def series(steps, values):
    steps, values = np.asarray(steps), np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    return steps[keep].astype(np.int64), values[keep].astype(np.float32)

want = {}
for tag, col in (("train/loss", "loss"), ("train/lr", "lr"), ("train/lambda", "lambda"),
                 ("train/clipped_fraction", "clipped_fraction")):
    want[tag] = series(f["steps/step"][:], f["steps"][col][:])
for tag, col in (("val/top1", "top1"), ("val/loss", "loss")):
    want[tag] = series(f["eval/step"][:], f["eval"][col][:])
if "layers/agc" in f:
    g = f["layers/agc"]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs["names"]]
    for field in ("max_ratio", "mean_ratio"):
        for i, name in enumerate(names):
            want[f"agc/{field}/{name}"] = series(g["step"][:], g[field][:, i])
want = {k: v for k, v in want.items() if len(v[0])}

have = set(acc.Tags()["scalars"])
bad = []
if have != set(want):
    bad.append(f"tags differ: only in TensorBoard {sorted(have - set(want))[:5]}, "
               f"only in metrics.h5 {sorted(set(want) - have)[:5]}")
points = 0
for tag in sorted(set(want) & have):
    events = acc.Scalars(tag)
    steps = np.array([e.step for e in events], dtype=np.int64)
    values = np.array([e.value for e in events], dtype=np.float32)
    w_steps, w_values = want[tag]
    points += len(events)
    if len(steps) != len(w_steps) or (steps != w_steps).any():
        bad.append(f"{tag}: steps {len(steps)} in TensorBoard, {len(w_steps)} in metrics.h5")
    elif not np.array_equal(values, w_values):
        i = int(np.argmax(values != w_values))
        bad.append(f"{tag}: step {steps[i]}: {values[i]} in TensorBoard, {w_values[i]} in metrics.h5")
if bad:
    print("check-tensorboard: FAILED\n  " + "\n  ".join(bad))
    sys.exit(1)
print(f"check-tensorboard: ok ({len(want)} tags, {points} points, steps {len(f['steps/step'])})")
EOF
