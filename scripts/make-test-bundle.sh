#!/usr/bin/env bash
# Makes device/tests/fixtures/synthetic-c2f.papilla: a KB-sized coarse-to-fine bundle (locator +
# segmenter, depth 2, 8 base channels) trained on the synthetic generator's photographs, so the
# device's loop, storage, power-cut and soak tests do not depend on the shipped model or its
# quality (issue 15). Only the named acceptance tests read models/papilla-default.papilla.
#
# Re-run when the bundle format gains a major version; commit the result.
#   scripts/make-test-bundle.sh            # uses `cargo run --release -p papilla-host`
#   PAPILLA=path/to/papilla scripts/make-test-bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PAPILLA:-}" ]; then papilla() { "$PAPILLA" "$@"; }
else papilla() { cargo run -q --release -p papilla-host -- "$@"; }; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=device/tests/fixtures/synthetic-c2f.papilla
mkdir -p "$(dirname "$out")"

papilla synth --out "$tmp/synth" --count 64 --size 320 --seed 5000
common=(--size 64 --batch 4 --depth 2 --base-channels 8 --optimizer adamw --lr 0.005
        --warmup-epochs 1 --ce-weight 1 --checkpoint-every 0 --threads "${THREADS:-2}")
papilla train --data "$tmp/synth" --out "$tmp/loc" --epochs 12 "${common[@]}"
cp "$tmp/loc/model-last.bpk" "$tmp/loc/model-best.bpk"
papilla train --data "$tmp/synth" --out "$tmp/seg" --epochs 30 --roi-context 2.5 "${common[@]}"
# A small self-test photograph keeps the bundle small (the PNG of a 640 px one is ~500 KB).
papilla synth --out "$tmp/selftest" --count 1 --size 128 --seed 9000
papilla export --checkpoint "$tmp/seg" --locator "$tmp/loc" --shape-fit ellipse \
  --name papilla-test --model-version 0.0.1 --out "$out" \
  --selftest-image "$(ls "$tmp/selftest/fundus color images/"*)"
ls -l "$out"
