#!/usr/bin/env bash
# Packs what a lent GPU machine needs to train the default model into one folder that the device
# tool can carry (64 MiB with the working tree, no registries there): the Vulkan build of
# `papilla` gzipped, libvulkan.so.1 beside it, the segmenter's ImageNet EfficientNet-Lite0
# weights (12 MB) and compact copies of GAMMA-layout training folders (photographs as JPEG,
# masks as 8-bit PNG: a 512 px BMP mask is 263 KB, its PNG 2-4 KB).
# Refuses, before the run, a pack that would not fit beside the working tree.
#
#   cargo build --release -p papilla-host --features gpu      # the Vulkan build (~20 min)
#   scripts/gpu/pack.sh --out gpu-pack ../data/refuge512/train
#
# Environment: PAPILLA_BIN  the binary to carry (default: the release build in the target dir)
#              LIBVULKAN    libvulkan.so.1 to carry (default: the system's; `none` to skip)
#              BUDGET_MIB   what the device tool carries in all (default 64)
#              LITE0_WEIGHTS  the weights to carry (default: scripts/fetch-efficientnet-lite0.py's
#                           file, downloaded once; `none`: carry none, the kit then trains the
#                           encoder from fresh weights, for tests of the kit only)
# Only GAMMA layouts (`fundus color images/` + `Disc_Cup_Masks/`); never a test split, never
# Drishti-GS1. Needs python3 with Pillow.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
say() { echo "pack.sh: $*" >&2; }

out="$repo/gpu-pack"
folders=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) folders+=("$1"); shift ;;
  esac
done
[ ${#folders[@]} -gt 0 ] || { say "usage: pack.sh [--out DIR] GAMMA_FOLDER..."; exit 2; }
for f in "${folders[@]}"; do
  case "$f" in
    *[Dd]rishti*|*/test|*/test/) say "$f: test splits and Drishti-GS1 never travel for training"; exit 2 ;;
  esac
  [ -d "$f/fundus color images" ] || { say "$f: not a GAMMA layout (no 'fundus color images/')"; exit 2; }
done

bin="${PAPILLA_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/papilla}"
[ -x "$bin" ] || { say "$bin: no papilla binary (build it: cargo build --release -p papilla-host --features gpu)"; exit 2; }
vulkan="${LIBVULKAN:-}"
if [ -z "$vulkan" ]; then
  vulkan="$( { ldconfig -p 2>/dev/null || true; } | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}')"
  [ -n "$vulkan" ] || { say "no libvulkan.so.1 here: apt-get install libvulkan1, or LIBVULKAN=none"; exit 2; }
fi

rm -rf "$out.partial"
mkdir -p "$out.partial/lib" "$out.partial/data"
gzip -9 -c "$bin" > "$out.partial/papilla.gz"
[ "$vulkan" = none ] || cp -L "$vulkan" "$out.partial/lib/libvulkan.so.1"
weights="${LITE0_WEIGHTS:-$(python3 "$repo/scripts/fetch-efficientnet-lite0.py")}"
[ "$weights" = none ] || cp "$weights" "$out.partial/efficientnet-lite0.safetensors"
for f in "${folders[@]}"; do
  # parent/name, as the recipe reads it: ../data/refuge512/train -> data/refuge512/train
  abs="$(cd "$f" && pwd)"
  name="$(basename "$(dirname "$abs")")/$(basename "$abs")"
  python3 - "$f" "$out.partial/data/$name" <<'PY'
import os, shutil, sys
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
photos, masks = os.path.join(src, "fundus color images"), None
for m in ("Disc_Cup_Masks", "Disc_Cup_Mask"):
    if os.path.isdir(os.path.join(src, m)):
        masks = os.path.join(src, m)
if masks is None:
    sys.exit(f"pack.sh: {src}: no Disc_Cup_Masks/")
os.makedirs(os.path.join(dst, "fundus color images"))
os.makedirs(os.path.join(dst, "Disc_Cup_Masks"))
n = 0
for name in sorted(os.listdir(photos)):
    stem, ext = os.path.splitext(name)
    if ext.lower() not in (".jpg", ".jpeg", ".png"):
        continue
    mask = next((os.path.join(masks, stem + e) for e in (".bmp", ".png") if os.path.exists(os.path.join(masks, stem + e))), None)
    if mask is None:
        continue  # the loader would skip it too
    target = os.path.join(dst, "fundus color images", stem + ".jpg")
    if ext.lower() in (".jpg", ".jpeg"):
        shutil.copyfile(os.path.join(photos, name), target)
    else:
        Image.open(os.path.join(photos, name)).convert("RGB").save(target, quality=95)
    m = Image.open(mask)
    if m.mode not in ("L", "P", "1"):
        m = m.convert("L")  # RGB masks whose channels agree (the loader's rule)
    m.convert("L").save(os.path.join(dst, "Disc_Cup_Masks", stem + ".png"), optimize=True)
    n += 1
print(f"{src}: {n} pairs", file=sys.stderr)
PY
done
pack=$(du -sb "$out.partial" | cut -f1)
tree=$(tree_bytes "$repo")
budget=$(( ${BUDGET_MIB:-64} * 1024 * 1024 ))
{
  echo "papilla gpu pack, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "binary: $bin ($(stat -c %s "$bin") bytes, gzipped $(stat -c %s "$out.partial/papilla.gz"))"
  echo "libvulkan: $vulkan"
  echo "efficientnet-lite0: $weights"
  for f in "${folders[@]}"; do echo "data: $f"; done
  echo "pack_bytes: $pack"
  echo "tree_bytes: $tree"
  echo "budget_bytes: $budget"
} > "$out.partial/MANIFEST"
if [ $(( pack + tree )) -gt "$budget" ]; then
  say "too large: pack $((pack / 1048576)) MiB + working tree $((tree / 1048576)) MiB > ${BUDGET_MIB:-64} MiB; pack fewer folders"
  rm -rf "$out.partial"
  exit 1
fi
rm -rf "$out"
mv "$out.partial" "$out"
say "$out: $((pack / 1048576)) MiB (+ $((tree / 1048576)) MiB of working tree) of ${BUDGET_MIB:-64} MiB"
