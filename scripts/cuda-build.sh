#!/usr/bin/env bash
# Reproducible CUDA build of nfbench for machines without a CUDA install (and without a GPU).
#
#   scripts/cuda-build.sh [--cudnn] [--tests] [--prefix DIR] [-- EXTRA CARGO ARGS]
#
# 1. Fetches the CUDA 13.0 toolkit parts candle needs as PyPI wheels into one prefix (default .cuda/ in the repo,
#    git-ignored): nvcc, crt headers, nvvm (cicc), cudart, cccl, nvrtc, cublas, curand (+ cudnn with --cudnn).
# 2. Makes the unversioned .so links the linker looks for, and a link-time stub of the driver library libcuda.so
#    (the system's own when there is one, else Debian non-free's libcuda1 unpacked without installing it).
# 3. Builds `cargo build --release --features cuda` (or `cudnn`) with CUDA_COMPUTE_CAP from nvidia-smi, 90 (H100 /
#    H200) when no GPU can be queried; its own target dir (target-cuda/) so the CPU build is never invalidated.
# 4. Writes a stripped copy next to the binary (small enough to carry to a GPU machine) and prints the binary's
#    path as its last line. --tests also builds tests/gpu_cuda.rs and puts a stripped copy of its test binary in
#    target-cuda/gpu-tests/, where scripts/gpu-check.sh runs it on a machine without cargo.
# Idempotent: every step is skipped when its result is already there; candle-kernels' nvcc compile (~13 min on 2
# cores) happens once. Users with their own CUDA 12/13 install need none of this: see README "## GPU".
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

feature=cuda
tests=0
prefix=${NFBENCH_CUDA_PREFIX:-$repo/.cuda}
cargo_extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cudnn) feature=cudnn ;;
    --tests) tests=1 ;;
    --prefix) prefix=$2; shift ;;
    --) shift; cargo_extra=("$@"); break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "cuda-build: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "cuda-build: $*" >&2; }
die() { echo "cuda-build: error: $*" >&2; exit 1; }

# Pinned to CUDA 13.0: the GPU machines run driver 580 (CUDA 13.0), so PTX must not be newer than 13.0.
wheels=(
  "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-nvvm==13.0.88"
  "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cccl==13.0.85" "nvidia-cuda-nvrtc==13.0.88"
  "nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.35"
)
cudnn_wheel="nvidia-cudnn-cu13==9.*"
cu=$prefix/nvidia/cu13
stubs=$prefix/stubs
python=${PYTHON:-$(command -v python3 || command -v python || true)}

pip_install() { # pip_install MARKER WHEEL...: installs into the prefix once; the marker records what was asked.
  local marker=$prefix/.installed-$1; shift
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$*" ]; then return 0; fi
  [ -n "$python" ] || die "python3 with pip is needed to fetch the CUDA wheels"
  log "fetching $* into $prefix"
  "$python" -m pip install --quiet --root-user-action=ignore --no-deps --upgrade --target "$prefix" "$@" \
    || die "pip could not fetch the CUDA wheels (network? PyPI reachable?)"
  echo "$*" >"$marker"
}

fetch_toolkit() {
  mkdir -p "$prefix"
  pip_install toolkit "${wheels[@]}"
  [ -x "$cu/bin/nvcc" ] || die "no nvcc at $cu/bin/nvcc after installing the wheels"
  [ -f "$cu/include/crt/host_config.h" ] || die "crt headers missing (nvidia-cuda-crt) under $cu/include"
  [ -x "$cu/nvvm/bin/cicc" ] || die "cicc missing (nvidia-nvvm) under $cu/nvvm/bin"
  if [ "$feature" = cudnn ]; then
    pip_install cudnn "$cudnn_wheel"
  fi
}

# The linker wants lib<name>.so; the wheels ship only the sonames (libcublas.so.13, ...).
link_unversioned() {
  local dir=$1 name f
  for name in cudart cublas cublasLt curand nvrtc cudnn; do
    [ -e "$dir/lib$name.so" ] && continue
    f=$(find "$dir" -maxdepth 1 -name "lib$name.so.[0-9]*" | sort | head -n1)
    [ -n "$f" ] && ln -sf "$(basename "$f")" "$dir/lib$name.so"
  done
  return 0
}

# libcuda.so is the driver: needed only to link here; on a GPU machine the driver's own libcuda.so.1 is loaded.
make_driver_stub() {
  mkdir -p "$stubs"
  [ -e "$stubs/libcuda.so" ] && return 0
  local sys
  sys=$( { ldconfig -p 2>/dev/null || true; } | awk '/libcuda\.so(\.1)? / {print $NF; exit}')
  if [ -n "$sys" ]; then
    log "linking against the system driver library $sys"
    ln -sf "$sys" "$stubs/libcuda.so"
    return 0
  fi
  # Debian's non-free libcuda1, downloaded with a private apt state: nothing on the system is changed.
  command -v apt-get >/dev/null || die "no libcuda.so on this system and no apt-get to fetch Debian's libcuda1; \
put any libcuda.so (driver >= 525) at $stubs/libcuda.so"
  local tmp codename
  tmp=$(mktemp -d)
  codename=$( . /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-bookworm}" )
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb"
  echo "deb [trusted=yes] http://deb.debian.org/debian $codename non-free" >"$tmp/sources.list"
  local aptopts=(-o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::State::Lists="$tmp/lists" -o Dir::Cache="$tmp/cache" -o Debug::NoLocking=1 -qq)
  # As root, apt drops to the _apt user, which cannot write a private mktemp dir: stay root for this download.
  [ "$(id -u)" -eq 0 ] && aptopts+=(-o APT::Sandbox::User=root)
  log "fetching Debian $codename non-free libcuda1 for the link stub"
  apt-get "${aptopts[@]}" update || die "apt-get update of Debian non-free failed"
  (cd "$tmp/deb" && apt-get "${aptopts[@]}" download libcuda1) || die "apt-get download libcuda1 failed"
  dpkg -x "$tmp"/deb/libcuda1_*.deb "$tmp/x"
  find "$tmp/x" -name 'libcuda.so*' -exec cp -a {} "$stubs/" \;
  rm -rf "$tmp"
  if [ ! -e "$stubs/libcuda.so" ]; then
    local f
    f=$(find "$stubs" -name 'libcuda.so.[0-9]*' | sort | tail -n1)
    [ -n "$f" ] || die "libcuda1 held no libcuda.so"
    ln -sf "$(basename "$f")" "$stubs/libcuda.so"
  fi
}

compute_cap() {
  if [ -n "${CUDA_COMPUTE_CAP:-}" ]; then echo "$CUDA_COMPUTE_CAP"; return; fi
  local cap
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .' || true)
  if [[ "$cap" =~ ^[0-9]+$ ]]; then echo "$cap"; else echo 90; fi
}

fetch_toolkit
link_unversioned "$cu/lib"
cudnn_lib=""
if [ "$feature" = cudnn ]; then
  cudnn_lib=$(dirname "$(find "$prefix/nvidia" -name 'libcudnn.so.[0-9]*' | head -n1)")
  [ -n "$cudnn_lib" ] && [ "$cudnn_lib" != . ] || die "--cudnn: no libcudnn.so.* under $prefix/nvidia"
  link_unversioned "$cudnn_lib"
fi
make_driver_stub

cap=$(compute_cap)
target=${CARGO_TARGET_DIR:-$repo/target-cuda}
export PATH="$cu/bin:$PATH"
export CUDA_ROOT="$cu" CUDA_PATH="$cu" CUDA_HOME="$cu" CUDA_COMPUTE_CAP="$cap" CARGO_TARGET_DIR="$target"
# candle-kernels' build (cudaforge) runs nvcc on half the cores by default; all of them is twice as fast.
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc 2>/dev/null || echo 2)}"
export LIBRARY_PATH="$cu/lib:$stubs${cudnn_lib:+:$cudnn_lib}${LIBRARY_PATH:+:$LIBRARY_PATH}"
# Build scripts that run nvcc-built code or probe the libs at build time need them too.
export LD_LIBRARY_PATH="$cu/lib:$stubs${cudnn_lib:+:$cudnn_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
log "nvcc $("$cu/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), compute cap $cap, feature $feature"
log "cargo build --release --features $feature (first build compiles candle-kernels: ~13 min on 2 cores)"
start=$(date +%s)
cargo build --release --features "$feature" --bin nfbench ${cargo_extra[@]+"${cargo_extra[@]}"}
bin=$target/release/nfbench
[ -x "$bin" ] || die "cargo finished but $bin is missing"
strip_copy=$target/release/nfbench-stripped
if command -v strip >/dev/null; then
  strip -o "$strip_copy" "$bin" && log "stripped copy (to carry): $strip_copy ($(du -h "$strip_copy" | cut -f1))"
fi
if [ $tests = 1 ]; then
  log "building the CUDA tests (tests/gpu_cuda.rs)"
  exe=$(cargo test --release --features "$feature" --test gpu_cuda --no-run --message-format=json \
    ${cargo_extra[@]+"${cargo_extra[@]}"} | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
  [ -n "$exe" ] && [ -x "$exe" ] || die "cargo built no gpu_cuda test executable"
  mkdir -p "$target/gpu-tests"
  strip -o "$target/gpu-tests/gpu_cuda" "$exe" 2>/dev/null || cp "$exe" "$target/gpu-tests/gpu_cuda"
  log "CUDA tests (to carry): $target/gpu-tests/gpu_cuda ($(du -h "$target/gpu-tests/gpu_cuda" | cut -f1))"
fi
log "built in $(( $(date +%s) - start )) s; at run time put the CUDA 13 libs on LD_LIBRARY_PATH ($cu/lib here, \
nvidia/cu13/lib in a PyTorch cu130 site-packages on GPU machines; scripts/gpu-check.sh finds them)"
echo "$bin"
