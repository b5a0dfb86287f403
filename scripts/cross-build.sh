#!/usr/bin/env bash
# Cross-builds papilla-device for a 64-bit Raspberry Pi OS (Pi 3, 4, 5, Zero 2 W):
# target aarch64-unknown-linux-gnu, with both GPIO backends (rpi: rppal; cdev: kernel GPIO).
#
#   scripts/cross-build.sh            # -> target/aarch64-unknown-linux-gnu/release/papilla-device
#   scripts/cross-build.sh --flash pi@camera.local
#
# Needs, once: `rustup target add aarch64-unknown-linux-gnu` and a cross linker
# (Debian/Ubuntu: `apt install gcc-aarch64-linux-gnu`). Everything is pure Rust except the
# linker, so no sysroot is needed. Not run in CI (no aarch64 standard library there); CI checks
# that the rpi and cdev features compile for the host instead.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
rustup target list --installed 2>/dev/null | grep -qx "$TARGET" || {
  echo "cross-build.sh: run 'rustup target add $TARGET' first" >&2; exit 2; }
command -v aarch64-linux-gnu-gcc >/dev/null || {
  echo "cross-build.sh: install the cross linker: apt install gcc-aarch64-linux-gnu" >&2; exit 2; }
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# The Pi 4's Cortex-A72 and the Pi 5's A76 both have NEON; tract picks its arm64 kernels at run time.
cargo build --release -p papilla-device --features rpi,cdev --target "$TARGET"
BIN="target/$TARGET/release/papilla-device"
ls -l "$BIN"
if [ "${1:-}" = --flash ]; then
  HOST="${2:?--flash needs user@host}"
  # Copy the binary, the installer, the config template, the unit and the shipped model, then install.
  ssh "$HOST" 'mkdir -p papilla/scripts papilla/models'
  scp "$BIN" "$HOST:papilla/papilla-device"
  scp scripts/install-device.sh scripts/device.toml scripts/papilla-device.service "$HOST:papilla/scripts/"
  scp models/papilla-default.papilla "$HOST:papilla/models/"
  ssh -t "$HOST" 'sudo papilla/scripts/install-device.sh papilla/papilla-device'
fi
