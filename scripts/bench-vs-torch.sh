#!/usr/bin/env bash
# Training throughput of nfbench against PyTorch on the same network, batch and resolution, on this machine's CPU.
#
#   scripts/bench-vs-torch.sh [--preset FILE] [--set KEY=VALUE]... [--runs N] [--steps N] [--threads N]
#
# Installs torch into .venv when it is missing (PyPI), builds nfbench in release mode, writes the measured network's
# plan with `nfbench bench --plan-out`, then runs `nfbench bench --json` and `benches/torch_reference.py` alternately
# (>= 3 times each by default, so drift on a shared machine hits both alike). Each pair gives one ratio
# (nfbench img/s / torch img/s); the last line printed is the median: `ratio_vs_torch=X.XX`.
# Everything measured is kept under bench-out/<timestamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
steps=20
threads=2
bench_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --preset) bench_args+=(--preset "$2"); shift 2 ;;
    --set) bench_args+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    *) echo "bench-vs-torch: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$runs" -lt 1 ]; then echo "bench-vs-torch: --runs must be >= 1" >&2; exit 2; fi

py=.venv/bin/python
if ! { [ -x "$py" ] && "$py" -c 'import torch' 2>/dev/null; }; then
  echo "bench-vs-torch: installing torch into .venv (PyPI; large download on first use)" >&2
  python3 -m venv .venv
  "$py" -m pip install --quiet --progress-bar off torch
fi

cargo build --release --quiet --bin nfbench
nfbench="${CARGO_TARGET_DIR:-target}/release/nfbench"

out="bench-out/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
echo "bench-vs-torch: results in $out ($runs runs x $steps steps each, $threads threads)" >&2

export RAYON_NUM_THREADS="$threads"
"$nfbench" bench "${bench_args[@]}" --steps 1 --warmup 0 --json --plan-out "$out/plan.json" > /dev/null
for i in $(seq 1 "$runs"); do
  "$nfbench" bench "${bench_args[@]}" --steps "$steps" --json | tee -a "$out/nfbench.jsonl"
  "$py" benches/torch_reference.py "$out/plan.json" --steps "$steps" --threads "$threads" | tee -a "$out/torch.jsonl"
done

"$py" - "$out" <<'EOF'
import json, statistics, sys
out = sys.argv[1]
ours = [json.loads(l) for l in open(f"{out}/nfbench.jsonl")]
theirs = [json.loads(l) for l in open(f"{out}/torch.jsonl")]
ratios = [a["images_per_sec"] / b["images_per_sec"] for a, b in zip(ours, theirs)]
med = lambda rows, k: statistics.median(r[k] for r in rows)
print(f"model={ours[0]['model']} batch={ours[0]['batch_size']} resolution={ours[0]['resolution']}")
for name, rows in (("nfbench", ours), ("torch", theirs)):
    split = " ".join(f"{k}={med(rows, k + '_ms'):.1f}" for k in ("forward", "backward", "agc", "optimiser", "statistics"))
    print(f"{name:8} img/s={med(rows, 'images_per_sec'):.1f} step_ms={med(rows, 'step_ms'):.1f} "
          f"peak_rss_mb={med(rows, 'peak_rss_mb'):.0f} ms: {split}")
print("pair ratios: " + " ".join(f"{r:.2f}" for r in ratios))
print(f"ratio_vs_torch={statistics.median(ratios):.2f}")
EOF
