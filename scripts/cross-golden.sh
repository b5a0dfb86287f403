#!/usr/bin/env bash
# The golden exam, aarch64 against x86-64: segments the same photographs with the same bundle
# with the host's papilla-device and with the aarch64 build under qemu-user, and requires the
# masks to agree on >= 99.9% of pixels and the vCDR within 0.005 (tract runs NEON kernels on
# aarch64 and AVX/FMA ones here, so a few boundary pixels may differ; nothing more may).
#
#   scripts/cross-golden.sh [IMAGE...]     # default: the shipped CC0 sample
#
# Needs the aarch64 binary (scripts/cross-build.sh build) and python3 with numpy and Pillow
# (scripts/requirements-test.txt). Builds the x86-64 binary in CARGO_TARGET_DIR if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/papilla/ci-target}"
BUNDLE="${BUNDLE:-models/papilla-default.papilla}"
[ $# -gt 0 ] || set -- samples/wikimedia_haggstrom_normal_left_eye_1411.jpg
X86="$CARGO_TARGET_DIR/release/papilla-device"
[ -x "$X86" ] || cargo build --release -p papilla-device
ARM="$(scripts/cross-build.sh bin)"
[ -x "$ARM" ] || { echo "cross-golden.sh: $ARM missing: run scripts/cross-build.sh build" >&2; exit 2; }
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
# One thread each: four emulated threads on a 2-core CI machine mostly wait for each other;
# tract splits a product by tiles, not along its sums, so the thread count leaves the mask alone.
"$X86" segment --bundle "$BUNDLE" --threads 1 --out "$OUT/x86_64" --json "$@" >/dev/null
start=$(date +%s%N)
scripts/cross-build.sh run segment --bundle "$BUNDLE" --threads 1 --out "$OUT/aarch64" --json "$@" >/dev/null
echo "aarch64 under qemu: $(( ($(date +%s%N) - start) / 1000000 )) ms for $# photograph(s) (emulation, not a Pi time)"
python3 - "$OUT" "$@" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
out, images = Path(sys.argv[1]), sys.argv[2:]
bad = 0
for image in images:
    stem = Path(image).stem
    masks = {a: np.asarray(Image.open(out / a / f"{stem}.bmp").convert("L")) for a in ("x86_64", "aarch64")}
    vcdr = {a: json.loads((out / a / f"{stem}.json").read_text())["vcdr"] for a in masks}
    x, a = masks["x86_64"], masks["aarch64"]
    if x.shape != a.shape:
        print(f"{stem}: mask sizes differ: {x.shape} vs {a.shape}")
        bad += 1
        continue
    equal = float((x == a).mean())
    dv = abs(vcdr["x86_64"] - vcdr["aarch64"])
    disc = {k: int((m < 255).sum()) for k, m in masks.items()}
    ok = equal >= 0.999 and dv <= 0.005
    bad += not ok
    print(f"{stem}: {'ok' if ok else 'FAIL'}: {100 * equal:.4f}% of {x.size} pixels equal, "
          f"vCDR {vcdr['x86_64']:.4f} (x86-64) vs {vcdr['aarch64']:.4f} (aarch64), "
          f"disc {disc['x86_64']} vs {disc['aarch64']} px")
sys.exit(1 if bad else 0)
EOF
