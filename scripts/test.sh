#!/usr/bin/env bash
# The test command of the Quick start and of CI: installs what is missing, then checks formatting, lints and runs
# every test. Dependencies are optimised even in test builds (Cargo.toml), so the suite stays within minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Formatting and lints are part of the test: install rustfmt and clippy when missing, and fail without them.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi
cargo fmt --version >/dev/null 2>&1 || { echo "test.sh: rustfmt is not available" >&2; exit 1; }
cargo clippy --version >/dev/null 2>&1 || { echo "test.sh: clippy is not available" >&2; exit 1; }
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --all-targets
# The kernels pick their instruction set once per process (NFBENCH_CONV_DIRECT, read through a OnceLock), so the
# AVX2 shifted-frame kernels never run on an AVX-512 machine and the im2col fallback never runs where either does:
# the kernel tests again under each dispatch (tests that cannot run print a `skipped: ...` line).
kernel_tests=(--test kernels_direct --test kernels_conv --test kernels_fused --test kernels_ws_pool --test model_layers)
NFBENCH_CONV_DIRECT=avx2 cargo test --locked "${kernel_tests[@]}"
NFBENCH_CONV_DIRECT=0 cargo test --locked "${kernel_tests[@]}"
