#!/usr/bin/env bash
# Fine-tuning against training from scratch on the shipped CIFAR-10 subset: pre-train on its first five classes,
# then train on the other five for the same steps twice, once from the pre-trained weights (`model.init_from`, a
# new 5-way head) and once from scratch, and print val top-1 at every evaluation of both.
#
#   scripts/finetune-experiment.sh [OUT_DIR] [PRETRAIN_STEPS] [STEPS] [EVAL_EVERY]
#
# Python with h5py and numpy: NFBENCH_VENV if set, else .venv (h5py installed into it on first use). nfbench:
# NFBENCH_BIN if set, else a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-ft-out/$(date +%Y%m%d-%H%M%S)}"
pre_steps="${2:-500}"
steps="${3:-250}"
every="${4:-25}"
venv="${NFBENCH_VENV:-.venv}"
py="$venv/bin/python"
if ! { [ -x "$py" ] && "$py" -c 'import h5py, numpy' 2>/dev/null; }; then
  python3 -m venv "$venv"
  "$py" -m pip install --quiet --progress-bar off h5py numpy
fi
if [ -z "${NFBENCH_BIN:-}" ]; then
  cargo build --release --quiet --bin nfbench
fi
nfbench="${NFBENCH_BIN:-target/release/nfbench}"
mkdir -p "$out"
"$py" scripts/split_classes.py data/cifar10-subset.h5 "$out/first5.h5" 0 1 2 3 4
"$py" scripts/split_classes.py data/cifar10-subset.h5 "$out/last5.h5" 5 6 7 8 9

common=(--preset presets/default.toml --headless --set run.eval_every="$every" --set data.eval_images=1000)
"$nfbench" train "${common[@]}" --steps "$pre_steps" --set data.path="$out/first5.h5" \
  --set run.checkpoint_every="$pre_steps" --run-dir "$out/pretrain"
ckpt=$(ls "$out"/pretrain/checkpoints/step-*.safetensors | sort -V | tail -1)
"$nfbench" train "${common[@]}" --steps "$steps" --set data.path="$out/last5.h5" \
  --set model.init_from="\"$ckpt\"" --run-dir "$out/finetune"
"$nfbench" train "${common[@]}" --steps "$steps" --set data.path="$out/last5.h5" --run-dir "$out/scratch"

"$py" - "$out" <<'PY'
import sys, h5py
out = sys.argv[1]
def curve(run):
    with h5py.File(f"{out}/{run}/metrics.h5", "r") as f:
        t = f["eval"]
        return list(zip(t["step"][:], t["top1"][:]))
ft, sc = curve("finetune"), curve("scratch")
print("step  finetune_top1  scratch_top1")
for (s, a), (_, b) in zip(ft, sc):
    print(f"{s:5d}  {a:13.4f}  {b:12.4f}")
PY
