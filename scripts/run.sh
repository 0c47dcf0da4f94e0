#!/usr/bin/env bash
# The main job of the Quick start: installs what is missing, builds, and opens the workbench training the default
# preset on the shipped CIFAR-10 subset. Extra arguments go to `nfbench` (e.g. `scripts/run.sh train --headless`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
exec target/release/nfbench "$@"
