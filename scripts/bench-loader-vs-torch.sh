#!/usr/bin/env bash
# JPEG loader throughput of nfbench against torchvision and PIL on the same files, on this machine's CPU.
#
#   scripts/bench-loader-vs-torch.sh [--runs N] [--images N] [--resolution R] [--corpus DIR] [--seed S]
#
# 1. Builds an ImageNet-like corpus (scripts/make-jpeg-corpus.py) from the photographs bundled in scikit-image's
#    wheel (downloaded with `pip download --no-deps`, never installed): windows of them cut and re-encoded with
#    short sides 333-500 px, quality 90-96, a quarter 4:4:4, a few greyscale; `--corpus DIR` reuses one.
# 2. Times, alternately (round robin, `--runs` rounds, so drift on a shared machine hits every entry alike) and on
#    the same files, at 1 and 2 threads: nfbench's training loader (read + Inception crop + crop-region decode +
#    bicubic resize + flip + batch) with libjpeg-turbo and with the zune-jpeg fallback, torchvision (`decode_jpeg` +
#    v2 RandomResizedCrop + flip in a DataLoader with as many workers) and PIL ImageFolder; whole-image decoding
#    alone against torchvision's `decode_jpeg`; and crop-region + DCT-scaled decoding against decoding the whole
#    image (one thread). The loader's RSS after each of 3 epochs comes from the last 1-thread turbo run.
# 3. Prints the medians and ratios; the last line is `ratio_vs_torchvision=X.XX` (nfbench turbo / torchvision,
#    1 thread, median of the per-round ratios).
#
# Python: .venv (created with torch, torchvision and pillow from PyPI when missing); NFBENCH_PYTHON=/path/to/python
# uses an existing interpreter that has them. Results are kept under bench-out/loader-<timestamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
images=2000
resolution=192
seed=0
corpus=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --resolution) resolution="$2"; shift 2 ;;
    --corpus) corpus="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    -h|--help) sed -n 2,22p "$0"; exit 0 ;;
    *) echo "bench-loader-vs-torch: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$runs" -lt 1 ]; then echo "bench-loader-vs-torch: --runs must be >= 1" >&2; exit 2; fi

py="${NFBENCH_PYTHON:-.venv/bin/python}"
if ! { [ -x "$py" ] && "$py" -c 'import torch, torchvision, PIL' 2>/dev/null; }; then
  if [ -n "${NFBENCH_PYTHON:-}" ]; then
    echo "bench-loader-vs-torch: $py lacks torch, torchvision or pillow" >&2; exit 1
  fi
  echo "bench-loader-vs-torch: installing torch, torchvision and pillow into .venv (PyPI; large on first use)" >&2
  python3 -m venv .venv
  "$py" -m pip install --quiet --progress-bar off torch torchvision pillow
fi

out="bench-out/loader-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
if [ -z "$corpus" ]; then
  corpus="$out/corpus"
  "$py" -m pip download --quiet --no-deps --progress-bar off scikit-image -d "$out/wheels" >&2
  "$py" scripts/make-jpeg-corpus.py --out "$corpus" --images "$images" --val 0 --seed "$seed" \
    --photos "$(ls "$out"/wheels/scikit_image-*.whl | head -1)" >&2
fi

cargo bench --quiet --bench loader --no-run 2>/dev/null
bench=$(ls -t target/release/deps/loader-* | grep -v '\.d$' | head -1)
echo "bench-loader-vs-torch: results in $out ($runs rounds, corpus $corpus, $resolution px)" >&2

ours() { "$bench" --jpeg "$corpus" --resolution "$resolution" "$@"; }
theirs() { "$py" benches/loader_torch_reference.py "$corpus" --resolution "$resolution" "$@"; }
for round in $(seq 1 "$runs"); do
  for t in 1 2; do
    ours --mode train --threads "$t" --decoder turbo --epochs $([ "$t" = 1 ] && echo 3 || echo 1) | tee -a "$out/all.jsonl"
    theirs --impl torchvision --mode train --threads "$t" | tee -a "$out/all.jsonl"
    ours --mode train --threads "$t" --decoder zune | tee -a "$out/all.jsonl"
    theirs --impl pil --mode train --threads "$t" | tee -a "$out/all.jsonl"
  done
  ours --mode decode --threads 1 --decoder turbo | tee -a "$out/all.jsonl"
  theirs --impl torchvision --mode decode --threads 1 | tee -a "$out/all.jsonl"
  ours --mode crop --decoder turbo | tee -a "$out/all.jsonl"
done

"$py" - "$out/all.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def rates(impl, mode, threads):
    return [r["images_per_sec"] for r in rows if r["impl"] == impl and r["mode"] == mode and r["threads"] == threads]
def med(xs):
    return statistics.median(xs) if xs else float("nan")
def ratio(a, b):
    pairs = [x / y for x, y in zip(a, b)]
    return med(pairs)
print("median img/s over rounds (train: read + crop + decode + resize 192 + flip + batch):")
for t in (1, 2):
    for impl in ("nfbench-turbojpeg", "nfbench-zune", "torchvision", "pil"):
        print(f"  train threads={t} {impl:18s} {med(rates(impl, 'train', t)):8.1f}")
tv1, tu1 = rates("torchvision", "train", 1), rates("nfbench-turbojpeg", "train", 1)
print(f"ratio nfbench-turbojpeg / torchvision, 1 thread: {ratio(tu1, tv1):.2f}; 2 threads: "
      f"{ratio(rates('nfbench-turbojpeg', 'train', 2), rates('torchvision', 'train', 2)):.2f}")
print(f"ratio nfbench-turbojpeg / pil, 1 thread: {ratio(tu1, rates('pil', 'train', 1)):.2f}; 2 threads: "
      f"{ratio(rates('nfbench-turbojpeg', 'train', 2), rates('pil', 'train', 2)):.2f}")
print(f"ratio nfbench-zune / torchvision, 1 thread: {ratio(rates('nfbench-zune', 'train', 1), tv1):.2f}")
print(f"scaling nfbench-turbojpeg 2 threads / 1 thread: {med(rates('nfbench-turbojpeg', 'train', 2)) / med(tu1):.2f}")
print(f"decode alone, 1 thread: nfbench-turbojpeg {med(rates('nfbench-turbojpeg', 'decode', 1)):.1f} img/s, "
      f"torchvision {med(rates('torchvision', 'decode', 1)):.1f} img/s, ratio "
      f"{ratio(rates('nfbench-turbojpeg', 'decode', 1), rates('torchvision', 'decode', 1)):.2f}")
crop = [r for r in rows if r["mode"] == "crop"]
print(f"crop-region + scaled decode vs whole decode (+ the same resize), 1 thread: "
      f"{med([r['region_images_per_sec'] for r in crop]):.1f} vs {med([r['whole_images_per_sec'] for r in crop]):.1f} "
      f"img/s, speed-up {med([r['region_speedup'] for r in crop]):.2f}x")
rss = [r["rss_mib_per_epoch"] for r in rows if r.get("rss_mib_per_epoch") and len(r["rss_mib_per_epoch"]) > 1]
if rss:
    print(f"nfbench loader RSS after each epoch (MiB, last 3-epoch run): {rss[-1]}")
print(f"ratio_vs_torchvision={ratio(tu1, tv1):.2f}")
PY
