#!/usr/bin/env bash
# Installs what nfbench needs to build and test on Debian: the HDF5 C library (libhdf5-dev 1.10), pkg-config, tmux (for the workbench's end-to-end test),
# and cmake + nasm (libjpeg-turbo's vendored build).
# Idempotent: does nothing when they are present. Needs root (or sudo) only when something is missing.
set -euo pipefail

need=()
pkg-config --exists hdf5 2>/dev/null || [ -f /usr/include/hdf5/serial/hdf5.h ] || need+=(libhdf5-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# tmux drives the workbench end-to-end test (tests/tui_e2e.rs skips, saying so, without it).
command -v tmux >/dev/null 2>&1 || need+=(tmux)
# cmake and nasm build the vendored libjpeg-turbo (cargo feature `turbojpeg`, on by default) with its SIMD code.
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v nasm >/dev/null 2>&1 || need+=(nasm)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} with apt-get" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust from https://rustup.rs" >&2
  exit 1
fi
