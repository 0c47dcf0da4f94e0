#!/usr/bin/env bash
# The test command of the Quick start and of CI: installs what is missing, then checks formatting, lints and runs
# every test. Dependencies are optimised even in test builds (Cargo.toml), so the suite stays within minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
rustup component list --installed 2>/dev/null | grep -q rustfmt && cargo fmt --all -- --check
rustup component list --installed 2>/dev/null | grep -q clippy && cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --all-targets
