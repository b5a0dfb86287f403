#!/usr/bin/env bash
# Regenerates docs/report.png, the README's picture of `papilla evaluate --report`: a small
# UNet trained for a minute on synthetic photographs (papilla synth), evaluated on 12 more,
# compared with a 4-epoch run of the same recipe, and the page rendered by headless
# Chromium (Debian package `chromium`). No data set is used or shipped.
#
#   scripts/report-example.sh [OUT.png]        default docs/report.png
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/report.png}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/papilla/dev-target}"
cargo build --release -q -p papilla-host
papilla="$CARGO_TARGET_DIR/release/papilla"
tiny=(--size 64 --batch 4 --depth 2 --base-channels 8 --optimizer adamw --lr 0.01
  --warmup-epochs 1 --ce-weight 1 --no-augment --val-fraction 0.2)
"$papilla" synth --out "$work/train" --count 32 --size 96 --seed 0 --disc 0.3
"$papilla" synth --out "$work/test" --count 12 --size 96 --seed 1000 --disc 0.3
"$papilla" train --data "$work/train" --out "$work/early" --epochs 4 "${tiny[@]}"
"$papilla" train --data "$work/train" --out "$work/run" --epochs 24 "${tiny[@]}"
"$papilla" evaluate --model "$work/early" --data "$work/test" --report "$work/early-report" >/dev/null
"$papilla" evaluate --model "$work/run" --data "$work/test" --report "$work/report" --worst 4 \
  --compare "$work/early-report/report.json"
profile="$(mktemp -d)"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1100,2300 \
  --screenshot="$work/page.png" "file://$work/report/index.html"
rm -rf "$profile"
mkdir -p "$(dirname "$out")"
# A 64-colour palette keeps the picture small enough to commit.
python3 -c "
from PIL import Image
im = Image.open('$work/page.png').convert('RGB')
im = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.LANCZOS)
im.quantize(64).save('$out', optimize=True)
"
echo "$out: $(stat -c %s "$out") bytes"
