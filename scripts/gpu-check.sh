#!/usr/bin/env bash
# The device check, on a machine with an NVIDIA GPU (driver >= 580 / CUDA 13.0 for the CUDA 13 build):
#
#   scripts/gpu-check.sh [--bin PATH] [--steps N] [--batch N] [--resolution PX] [--dtype bf16|f32] [--no-torch]
#
# 1. Finds the CUDA 13 runtime libraries (libcudart/libcublas/libcublasLt/libcurand/libnvrtc) in Python
#    site-packages (nvidia/cu13/lib, as a PyTorch cu130 install carries them), in .cuda/ (scripts/cuda-build.sh),
#    or a system CUDA, and puts them on LD_LIBRARY_PATH for the binary.
# 2. Runs the CUDA tests: the carried test binaries in target-cuda/gpu-tests/ when there (built by
#    `scripts/cuda-build.sh --tests`), else `cargo test --release --features cuda --test gpu_cuda` when cargo is here.
# 3. Trains nf_resnet50 at 224 px, batch 64, bf16 for 200 steps through `nfbench bench` (the trainer's own step:
#    AGC, SGD Nesterov, label smoothing), and prints img/s and peak device memory (nvidia-smi, sampled every 100 ms,
#    whole process, so both sides are measured alike).
# 4. When python3 has torch (and optionally timm), runs the same step in PyTorch (benches/gpu_torch_reference.py)
#    and prints the ratio. Same machine, same call.
# Writes everything to gpu-check-out/ (or $OUT when set, as on the device tool) and a summary at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

bin=${NFBENCH_BIN:-}
steps=200 batch=64 res=224 dtype=bf16 torch=1
preset=presets/nf_resnet50_imagenet.toml
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift ;;
    --steps) steps=$2; shift ;;
    --batch) batch=$2; shift ;;
    --resolution) res=$2; shift ;;
    --dtype) dtype=$2; shift ;;
    --preset) preset=$2; shift ;;
    --no-torch) torch=0 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
out=${OUT:-$repo/gpu-check-out}
tdir=${CARGO_TARGET_DIR:-target-cuda}   # where scripts/cuda-build.sh put the binary and the test binaries
mkdir -p "$out"
summary=$out/summary.txt
: >"$summary"
say() { echo "gpu-check: $*" | tee -a "$summary" >&2; }
fail=0

# --- 0. the GPU -------------------------------------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  say "no NVIDIA GPU here (nvidia-smi -L failed): nothing to check"; exit 1
fi
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader | head -n1)
say "GPU: $gpu"

# --- 1. CUDA 13 runtime libraries ---------------------------------------------------------------------------------
needed=(libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13)
candidates=()
py=${PYTHON:-$(command -v python3 || command -v python || true)}
if [ -n "$py" ]; then
  # Every nvidia/cu13/lib (and nvidia/*/lib, older wheel layouts) under the interpreter's site-packages.
  while IFS= read -r d; do candidates+=("$d"); done < <("$py" - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = set(getattr(site, "getsitepackages", lambda: [])() + [site.getusersitepackages()] + sys.path)
for r in sorted(p for p in roots if p and os.path.isdir(p)):
    for d in sorted(glob.glob(os.path.join(r, "nvidia", "cu13", "lib")) + glob.glob(os.path.join(r, "nvidia", "*", "lib"))):
        print(d)
PY
)
fi
candidates+=("$repo/.cuda/nvidia/cu13/lib" /usr/local/cuda/lib64 /usr/local/cuda-13.0/lib64)
libdirs=()
for lib in "${needed[@]}"; do
  found=""
  if ldconfig -p 2>/dev/null | grep -q "$lib "; then found=system; fi
  for d in "${candidates[@]}"; do
    [ -n "$found" ] && break
    if [ -e "$d/$lib" ]; then found=$d; libdirs+=("$d"); fi
  done
  # Only a warning here: ldd on the binary below says whether it can start.
  [ -n "$found" ] || say "warning: $lib not found (a PyTorch cu130 install, or the nvidia-* cu13 wheels, have it)"
done
ld_extra=$(printf '%s\n' "${libdirs[@]}" | awk 'NF && !seen[$0]++' | paste -sd: -)
export LD_LIBRARY_PATH="${ld_extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "LD_LIBRARY_PATH += ${ld_extra:-(system libraries)}"

# --- the binary -----------------------------------------------------------------------------------------------------
if [ -z "$bin" ]; then
  for b in "$tdir/release/nfbench-stripped" "$tdir/release/nfbench" target/release/nfbench; do
    [ -x "$b" ] && { bin=$b; break; }
  done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  say "no CUDA nfbench binary (build it with scripts/cuda-build.sh, or pass --bin)"; exit 1
fi
if ldd "$bin" | grep -q "not found"; then
  say "the binary's libraries do not all resolve:"; ldd "$bin" | grep "not found" | tee -a "$summary" >&2; exit 1
fi
say "binary: $bin"

# Peak device memory of the whole GPU while a command runs (nvidia-smi every 100 ms), in MiB.
run_sampled() { # run_sampled NAME CMD...: output to $out/NAME.log, peak to $out/NAME.mem
  local name=$1; shift
  local base
  base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -n1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$out/$name.smi" 2>/dev/null &
  local smi=$!
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  local peak
  peak=$(sort -n "$out/$name.smi" | tail -n1)
  # Above what was in use before (other processes, an idle context); n/a when it ran too briefly to sample.
  if [[ "$peak" =~ ^[0-9]+$ ]] && [[ "$base" =~ ^[0-9]+$ ]]; then
    echo $(( peak > base ? peak - base : 0 )) >"$out/$name.mem"
  else
    echo n/a >"$out/$name.mem"
  fi
  return $rc
}

# --- 2. tests on cuda -------------------------------------------------------------------------------------------
export NFBENCH_TEST_DEVICE=cuda:0
ran_tests=0
if [ -d "$tdir/gpu-tests" ]; then
  for t in "$tdir"/gpu-tests/*; do
    [ -x "$t" ] || continue
    ran_tests=1
    if "$t" --test-threads=1 >"$out/test-$(basename "$t").log" 2>&1; then
      say "tests $(basename "$t"): $(grep -E '^test result' "$out/test-$(basename "$t").log" | tail -n1)"
    else
      say "tests $(basename "$t") FAILED (see $out/test-$(basename "$t").log)"; fail=1
    fi
  done
fi
# A CUDA development machine (cargo and nvcc here) builds and runs them itself.
if [ $ran_tests = 0 ] && command -v cargo >/dev/null && command -v nvcc >/dev/null; then
  ran_tests=1
  if cargo test --release --features cuda --test gpu_cuda >"$out/test-cargo.log" 2>&1; then
    say "tests (cargo): $(grep -E '^test result' "$out/test-cargo.log" | tail -n1)"
  else
    say "tests (cargo) FAILED (see $out/test-cargo.log)"; fail=1
  fi
fi
[ $ran_tests = 1 ] || say "tests skipped: no target-cuda/gpu-tests/ carried (scripts/cuda-build.sh --tests) and no cargo + nvcc here"

# --- 3. nfbench: nf_resnet50, 224 px, batch 64, bf16, 200 steps ------------------------------------------------------
sets=(--set "model.name=nf_resnet50" --set "data.batch_size=$batch" --set "data.resolution=$res"
  --set "run.dtype=$dtype" --set "run.device=cuda:0")
ours=""
if run_sampled nfbench "$bin" bench --preset "$preset" "${sets[@]}" --steps "$steps" --json; then
  line=$(grep -E '^\{' "$out/nfbench.log" | tail -n1)
  ours=$("$py" -c 'import json,sys
d=json.loads(sys.argv[1])
def find(o):
    if isinstance(o, dict) and isinstance(o.get("images_per_sec"), (int, float)):
        return o["images_per_sec"]
    if isinstance(o, dict):
        for k, v in o.items():
            kk = k.lower()
            if isinstance(v, (int, float)) and ("img" in kk or "image" in kk) and ("per_s" in kk or kk.endswith("_s") or "sec" in kk):
                return v
        for v in o.values():
            r = find(v)
            if r is not None: return r
print(find(d) or "")' "$line" 2>/dev/null)
  say "nfbench: nf_resnet50 ${res}px batch $batch (run.dtype=$dtype asked), $steps steps: ${ours:-?} img/s, peak device memory $(cat "$out/nfbench.mem") MiB"
  say "nfbench json: $line"
else
  say "nfbench bench FAILED: $(tail -n3 "$out/nfbench.log" | tr '\n' ' ')"; fail=1
fi

# --- 4. PyTorch side by side ----------------------------------------------------------------------------------------
# nfbench's JSON says which precision it ran when it reports one; otherwise PyTorch runs both bf16 and f32 so the
# ratio against the matching precision can be read off.
ran_dtype=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1]).get("dtype",""))' "${line:-{\}}" 2>/dev/null)
if [ -n "$ran_dtype" ]; then torch_dtypes=("$ran_dtype"); else torch_dtypes=("$dtype" f32); fi
[ -n "$ran_dtype" ] || say "note: nfbench bench reports no dtype; PyTorch runs ${torch_dtypes[*]} (see which matches)"
if [ $torch = 1 ] && [ -n "$py" ] && "$py" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  for dt in $(printf '%s\n' "${torch_dtypes[@]}" | awk '!seen[$0]++'); do
    if run_sampled "torch-$dt" "$py" benches/gpu_torch_reference.py --steps "$steps" --batch "$batch" \
        --resolution "$res" --dtype "$dt" --json; then
      tl=$(grep -E '^\{' "$out/torch-$dt.log" | tail -n1)
      theirs=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["img_per_s"])' "$tl" 2>/dev/null)
      say "$(grep -E '^pytorch' "$out/torch-$dt.log" | tail -n1), peak device memory $(cat "$out/torch-$dt.mem") MiB"
      if [ -n "$ours" ] && [ -n "$theirs" ]; then
        say "ratio nfbench / pytorch $dt img/s: $("$py" -c "print(f'{$ours / $theirs:.3f}')")"
      fi
    else
      say "pytorch reference ($dt) FAILED: $(tail -n3 "$out/torch-$dt.log" | tr '\n' ' ')"; fail=1
    fi
  done
else
  say "no CUDA-enabled torch in ${py:-python3}: PyTorch side-by-side skipped"
fi

say "done; logs in $out"
exit $fail
