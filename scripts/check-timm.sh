#!/usr/bin/env bash
# Proof that imported timm weights compute timm's function: logits and per-block signal statistics within 1e-4
# (relative to their scale, f32) for a small dm_nfnet configuration, dm_nfnet_f0 and nf_resnet50, negative controls
# (a fold left out, the padding mode swapped) off by more than 10x that, and nfbench's timm export loading with
# timm's load_state_dict(strict=True) to the same logits.
#
#   scripts/check-timm.sh [FIXTURE_DIR]
#
# Python: NFBENCH_VENV (a venv with torch, timm, safetensors) if set, else .venv-timm, created here with torch (CPU)
# and timm from PyPI on first use. Steps: scripts/check_timm.py make DIR (timm side), then
# `NFBENCH_TIMM_FIXTURES=DIR cargo test --test weights_timm` (Rust side; writes DIR/exported/), then
# scripts/check_timm.py verify DIR. The fixtures stay in DIR (a temp dir when none is given).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${NFBENCH_VENV:-.venv-timm}"
py="$venv/bin/python"
if ! { [ -x "$py" ] && "$py" -c 'import torch, timm, safetensors' 2>/dev/null; }; then
  if [ -n "${NFBENCH_VENV:-}" ]; then
    echo "check-timm: $venv lacks torch/timm/safetensors" >&2; exit 2
  fi
  echo "check-timm: installing torch (CPU), timm and safetensors into $venv (PyPI; large download on first use)" >&2
  python3 -m venv "$venv"
  "$py" -m pip install --quiet --progress-bar off --index-url https://download.pytorch.org/whl/cpu torch
  "$py" -m pip install --quiet --progress-bar off timm safetensors
fi

dir="${1:-$(mktemp -d -t nfbench-timm.XXXXXX)}"
echo "check-timm: fixtures in $dir" >&2
"$py" scripts/check_timm.py make "$dir"
NFBENCH_TIMM_FIXTURES="$dir" cargo test --locked --test weights_timm -- --nocapture
"$py" scripts/check_timm.py verify "$dir"
echo "check-timm: ok"
