#!/usr/bin/env bash
# Cross-builds papilla-device for a 64-bit Raspberry Pi OS (Pi 3, 4, 5, Zero 2 W): target
# aarch64-unknown-linux-gnu, with both GPIO backends (rpi: rppal; cdev: kernel GPIO), and runs
# aarch64 code here under qemu-user.
#
#   scripts/cross-build.sh [build]          # -> $CROSS_TARGET_DIR/aarch64-unknown-linux-gnu/release/papilla-device
#   scripts/cross-build.sh build --flash pi@camera.local
#   scripts/cross-build.sh test [ARGS...]   # the device's test suite as aarch64 code, under qemu
#   scripts/cross-build.sh run ARGS...      # the aarch64 binary under qemu (e.g. run segment x.jpg)
#   scripts/cross-build.sh bin              # prints the binary's path (after build)
#
# The target's standard library, in this order:
#   1. installed (`rustup target add aarch64-unknown-linux-gnu`): an ordinary cross build;
#   2. otherwise built from source with cargo's -Zbuild-std, from the rust-src `library/` folder
#      named by PAPILLA_RUST_SRC (it must match this rustc's version; CI points it at
#      ../shared/toolchains/rust-1.95.0/library). The folder is linked where rustup's rust-src
#      component would put it, if nothing is there yet. std's own dependencies come from crates.io.
# Missing tools are installed with apt-get (root) or sudo apt-get: the cross linker
# (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross) and qemu-user.
#
# Environment: PAPILLA_RUST_SRC (above); QEMU_CPU (default cortex-a72, the Pi 4); CROSS_TARGET_DIR (default
# ~/.cache/papilla/aarch64-target: outside the clone, and apart from the host's target dir, whose
# build scripts would otherwise rerun under RUSTC_BOOTSTRAP); CROSS_FEATURES (default rpi,cdev).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
SYSROOT_LIB=/usr/aarch64-linux-gnu
export CARGO_TARGET_DIR="${CROSS_TARGET_DIR:-$HOME/.cache/papilla/aarch64-target}"
export CARGO_INCREMENTAL=0
BIN="$CARGO_TARGET_DIR/$TARGET/release/papilla-device"
# The Pi 4's CPU (NEON, no fp16, dot product or SVE): tract then runs the kernels a Pi 4 runs,
# and 8x faster under emulation than with qemu's default "max" CPU, whose SVE tract would pick.
QEMU="qemu-aarch64 -L $SYSROOT_LIB -cpu ${QEMU_CPU:-cortex-a72}"
die() { echo "cross-build.sh: $*" >&2; exit 2; }

need_tools() {
  local missing=()
  command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
  [ -e "$SYSROOT_LIB/lib/libc.so.6" ] || missing+=(libc6-dev-arm64-cross)
  command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
  [ ${#missing[@]} -eq 0 ] && return
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "cross-build.sh: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Sets BUILD_STD to the cargo flags the target's std needs (none when rustup installed it).
choose_std() {
  BUILD_STD=()
  local sysroot
  sysroot="$(rustc --print sysroot)"
  if [ -d "$sysroot/lib/rustlib/$TARGET/lib" ]; then
    echo "cross-build.sh: $TARGET std installed (rustup); ordinary cross build" >&2
    return
  fi
  local src_link="$sysroot/lib/rustlib/src/rust/library"
  if [ ! -e "$src_link/std/Cargo.toml" ]; then
    [ -n "${PAPILLA_RUST_SRC:-}" ] || die "no $TARGET standard library: run 'rustup target add $TARGET', or set PAPILLA_RUST_SRC to a rust-src library/ folder of rustc $(rustc --version | cut -d' ' -f2) (e.g. ../shared/toolchains/rust-1.95.0/library)"
    [ -e "$PAPILLA_RUST_SRC/std/Cargo.toml" ] || die "PAPILLA_RUST_SRC=$PAPILLA_RUST_SRC has no std/Cargo.toml: not a rust-src library/ folder"
    mkdir -p "$(dirname "$src_link")"
    ln -sfn "$(cd "$PAPILLA_RUST_SRC" && pwd)" "$src_link"
    echo "cross-build.sh: linked $src_link -> $PAPILLA_RUST_SRC" >&2
  fi
  echo "cross-build.sh: building $TARGET std from $src_link (-Zbuild-std)" >&2
  # build-std is a nightly cargo feature; RUSTC_BOOTSTRAP allows it on this stable toolchain.
  export RUSTC_BOOTSTRAP=1
  BUILD_STD=(-Zbuild-std=std,panic_abort)
}

setup() {
  need_tools
  choose_std
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  # cargo test/run go through qemu; the tests that spawn the binary read PAPILLA_TEST_RUNNER, and
  # PAPILLA_TEST_SLOWDOWN stretches their timing windows (an exam is ~50x slower emulated).
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$QEMU"
  export PAPILLA_TEST_RUNNER="$QEMU"
  export PAPILLA_TEST_SLOWDOWN="${PAPILLA_TEST_SLOWDOWN:-40}"
}

cmd="${1:-build}"
[ $# -gt 0 ] && shift
case "$cmd" in
  build)
    setup
    # The Pi 4's Cortex-A72 and the Pi 5's A76 both have NEON; tract picks its arm64 kernels at
    # run time.
    cargo build --release -p papilla-device --features "${CROSS_FEATURES:-rpi,cdev}" \
      --target "$TARGET" "${BUILD_STD[@]}"
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
    ;;
  test)
    setup
    # The shipped features, so the binary the tests spawn is the one that ships (the tests drive
    # the mock board whatever is compiled in).
    cargo test --release -p papilla-device --features "${CROSS_FEATURES:-rpi,cdev}" \
      --target "$TARGET" "${BUILD_STD[@]}" "$@"
    ;;
  run)
    [ -x "$BIN" ] || die "$BIN missing: run scripts/cross-build.sh build first"
    need_tools
    exec $QEMU "$BIN" "$@"
    ;;
  bin)
    echo "$BIN"
    ;;
  *)
    die "unknown command '$cmd' (build, test, run, bin)"
    ;;
esac
