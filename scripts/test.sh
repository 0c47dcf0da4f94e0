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
