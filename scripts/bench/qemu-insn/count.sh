#!/usr/bin/env bash
# Counts the aarch64 instructions of one exam, per function, as a Raspberry Pi 4 would execute
# them: papilla-device (from scripts/cross-build.sh) under qemu-aarch64 -cpu cortex-a72 with a
# small TCG plugin (insn_sym.c). qemu-user times are not Pi times; instruction counts are what
# the Pi estimate in BENCHMARKS.md is built on.
#
#   scripts/bench/qemu-insn/count.sh [OUT_DIR]     # default /tmp/papilla-insn
#
# Needs Debian's qemu-user 7.2 (plugin API 1; it ships no plugin header, so the header is taken
# from Debian's qemu source package through a private apt state), gcc, python3, binutils.
# Writes OUT_DIR/{segment,bench}.tsv and OUT_DIR/summary.md. About 2 minutes emulated.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT="${1:-/tmp/papilla-insn}"
HERE=scripts/bench/qemu-insn
mkdir -p "$OUT/include"
if [ ! -e "$OUT/include/qemu-plugin.h" ]; then
  apt_dir="$OUT/apt"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/src"
  cat > "$apt_dir/src.sources" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  opts=(-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
        -o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt_dir"
        -o "Dir::Etc::sourceparts=$apt_dir")
  apt-get "${opts[@]}" update -qq
  # The binary package's version less its binNMU suffix (+bN) is the source's.
  version="$(dpkg-query -W -f='${Version}' qemu-user)"
  (cd "$apt_dir/src" && apt-get "${opts[@]}" source --download-only -qq "qemu=${version%+b*}")
  tar -xJf "$apt_dir"/src/qemu_*.orig.tar.xz -C "$OUT" --wildcards '*/include/qemu/qemu-plugin.h'
  find "$OUT" -path '*/include/qemu/qemu-plugin.h' -exec cp {} "$OUT/include/qemu-plugin.h" \;
fi
gcc -O2 -shared -fPIC -I "$OUT/include" -o "$OUT/libinsn_sym.so" "$HERE/insn_sym.c" -lpthread
BIN="$(scripts/cross-build.sh bin)"
[ -x "$BIN" ] || scripts/cross-build.sh build
count() {
  local tag="$1"; shift
  qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu cortex-a72 \
    -plugin "$OUT/libinsn_sym.so,out=$OUT/$tag.tsv" "$BIN" "$@" > "$OUT/$tag.stdout"
}
count segment segment samples/wikimedia_haggstrom_normal_left_eye_1411.jpg \
  --bundle models/papilla-default.papilla --threads 1 --json --out "$OUT/segment-out"
count bench bench samples/idrid_sample_b.jpg --bundle models/papilla-default.papilla \
  --runs 3 --threads 1 --json
python3 "$HERE/summarize.py" "segment=$OUT/segment.tsv" "bench=$OUT/bench.tsv" > "$OUT/summary.md"
echo "$OUT/summary.md"
