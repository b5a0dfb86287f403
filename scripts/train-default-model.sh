#!/usr/bin/env bash
# Reproduces models/papilla-default.papilla: trains the locator and the segmenter on REFUGE-512
# train (V0001-V0400, 10% held out for validation), fine-tunes the segmenter with a second,
# lower cosine cycle, picks the run-time crop width on the REFUGE training split and the
# padding of disc-centred crops on the RIM-ONE DL training split, exports the int8 bundle
# (signed when SIGN_KEY is set), and scores it on the test splits. DATA is the folder written by
# `../shared/data/extract.sh refuge ...` (REFUGE-512 in DATA/refuge512) and `... rimone ...`
# (DATA/rimone-dl). 0.5.0 was trained with BACKEND=tch (a `--features tch` build): about 45
# min of training on 2 CPU cores shared with a build (flex: about 3.5 h, and other initial
# weights, since each backend draws its own). Ctrl-C saves a checkpoint, and the same train
# command with --resume continues.
#
# Environment (the GPU kit, scripts/gpu/train-default.sh, sets them):
#   BACKEND     burn backend of every training stage: cpu (flex, default), tch (libtorch, 3-4x
#               faster; a `--features tch` build) or wgpu
#   PAPILLA     the papilla binary to run (default: cargo run --release)
#   ONLY_TRAIN  1: stop after the training stages (choose, export and score elsewhere)
#   SMOKE       1: 1-4 epochs a stage instead of 10-70, to test the script itself
#   LARGE_CUP_REPEAT  N: the segmenter draws eyes with true vCDR >= 0.6 N times an epoch
#               (default 3, as 0.5.0 was trained; 0.4.0 used 1)
#   MODEL_VERSION     the bundles' version (default 0.5.0, the shipped one)
#   SHIP        0: leave models/ alone (default 1: copy the int8 bundle there)
#   SKIP_TRAIN  1: reuse the runs in RUNS_DIR (e.g. brought back by the GPU kit) and only
#               choose, export and score
set -euo pipefail
DATA="${1:?usage: scripts/train-default-model.sh DATA_DIR [RUNS_DIR]}"
RUNS="${2:-runs}"
cd "$(dirname "$0")/.."
BACKEND="${BACKEND:-cpu}"
if [ -n "${PAPILLA:-}" ]; then
  papilla() { "$PAPILLA" "$@"; }
else
  papilla() { cargo run --release -q -p papilla-host -- "$@"; }
fi
train() { papilla train --backend "$BACKEND" "$@"; }
# Epochs a stage ends at; SMOKE keeps the stages' order with 1-4 epochs.
ep() {
  if [ "${SMOKE:-}" = 1 ]; then
    case "$1" in 10|20) echo 1 ;; 40) echo 2 ;; 60) echo 3 ;; *) echo 4 ;; esac
  else
    echo "$1"
  fi
}
common=(--depth 4 --warmup-epochs 1 --optimizer adamw --lr 0.003 --ce-weight 1
        --rotate 10 --checkpoint-every 0)

if [ "${SKIP_TRAIN:-}" != 1 ]; then
  # Stage 1: the locator, the whole photograph at 128 px.
  train --data "$DATA/refuge512/train" --out "$RUNS/loc128" --size 128 --epochs "$(ep 10)" \
    "${common[@]}" --base-channels 8 --scale 0.15 --translate 0.05
  # The locator only has to find the disc: its last epoch ships. The trainer's criterion (mean
  # Dice minus vCDR MAE) needs a cup, which a 128 px locator may never draw; then it keeps
  # epoch 1 (seen with tch's initial weights: disc 0.56 at epoch 1, 0.93 at epoch 10).
  cp "$RUNS/loc128/model-last.bpk" "$RUNS/loc128/model-best.bpk"
  # Stage 2: the segmenter, 12 base channels, a 176 px crop 2.5 disc diameters wide around the
  # (true) disc, shifted and scaled as a locator's error would.
  train --data "$DATA/refuge512/train" --out "$RUNS/seg176w12" --size 176 --epochs "$(ep 20)" \
    "${common[@]}" --base-channels 12 --scale 0.1 --roi-context 2.5 --roi-min-side 0.2 \
    --translate 0.08 --large-cup-repeat "${LARGE_CUP_REPEAT:-3}"

  # Stage 2b: a second cosine cycle from the last checkpoint, peak lr 0.001, 20 more epochs.
  rm -rf "$RUNS/seg176w12x"; cp -r "$RUNS/seg176w12" "$RUNS/seg176w12x"
  sed -i 's/"lr": 0.003/"lr": 0.001/' "$RUNS/seg176w12x/config.json"
  train --data "$DATA/refuge512/train" --out "$RUNS/seg176w12x" --resume --epochs "$(ep 40)"
  # Stage 2c: a third cycle, peak lr 0.0005, on crops 2.3 true diameters wide (closer to the
  # locator's crops at run time), 20 more epochs.
  rm -rf "$RUNS/seg176w12y"; cp -r "$RUNS/seg176w12x" "$RUNS/seg176w12y"
  python3 -c 'import json, sys; p = sys.argv[1]; c = json.load(open(p)); c["lr"] = 0.0005; c["preprocess"]["roi"]["context"] = 2.3; json.dump(c, open(p, "w"), indent=2)' "$RUNS/seg176w12y/config.json"
  train --data "$DATA/refuge512/train" --out "$RUNS/seg176w12y" --resume --epochs "$(ep 60)"
  # Stage 2d: a warm restart (1 warm-up epoch to lr 0.0005, cosine to zero over 10 epochs) with
  # scale augmentation 0.3 instead of 0.1, so the segmenter leans less on the disc's size in the
  # crop. The validation criterion changed with the crops after epoch 40 and cannot tell a cycle's
  # last epochs apart: the last epoch is the one that ships.
  rm -rf "$RUNS/seg176w12z"; cp -r "$RUNS/seg176w12y" "$RUNS/seg176w12z"
  python3 -c 'import json, sys; p = sys.argv[1]; c = json.load(open(p)); c["augment"]["scale"] = 0.3; json.dump(c, open(p, "w"), indent=2)' "$RUNS/seg176w12z/config.json"
  train --data "$DATA/refuge512/train" --out "$RUNS/seg176w12z" --resume --epochs "$(ep 70)" --restart-lr 0.0005
  cp "$RUNS/seg176w12z/model-last.bpk" "$RUNS/seg176w12z/model-best.bpk"
fi
SEG="$RUNS/seg176w12z"
if [ "${ONLY_TRAIN:-}" = 1 ]; then
  echo "trained: locator $RUNS/loc128, segmenter $SEG"
  exit 0
fi

# The trainer's own criterion, mean Dice minus vCDR MAE, of `papilla evaluate --json`.
criterion() {
  python3 -c 'import json,sys; j=json.load(sys.stdin); print((j["disc_dice"]+j["cup_dice"])/2-j["vcdr_mae"])'
}
better() { python3 -c "import sys; sys.exit(0 if $1 > $2 else 1)"; }

# The run-time crop width, in locator disc diameters: chosen on the TRAINING split (never the
# test split), f32, with the ellipse fit that ships.
best=""; best_score=-1
for ctx in 1.7 1.8 1.85 1.9 2.0 2.1 2.2; do
  papilla export --checkpoint "$SEG" --locator "$RUNS/loc128" --roi-context "$ctx" \
    --shape-fit ellipse --out "$RUNS/ctx-$ctx.papilla" >/dev/null
  score=$(papilla evaluate --model "$RUNS/ctx-$ctx.papilla" --data "$DATA/refuge512/train" --json | criterion)
  echo "roi-context $ctx: train score $score"
  if better "$score" "$best_score"; then best=$ctx; best_score=$score; fi
done
echo "chosen roi-context: $best"

# The padding of disc-centred crops, on RIM-ONE DL's TRAINING split.
pad=""; pad_score=-1
for p in 1.3 1.4 1.5 1.6 1.7 1.8 1.9; do
  score=$(papilla evaluate --model "$RUNS/ctx-$best.papilla" --data "$DATA/rimone-dl" \
    --rimone-split train --disc-centred "$p" --json | criterion)
  echo "disc-centred pad $p: RIM-ONE train score $score"
  if better "$score" "$pad_score"; then pad=$p; pad_score=$score; fi
done
echo "chosen disc-centred pad: $pad"

# Flip test-time augmentation (twice the segmenter's cost), on the TRAINING split at that crop.
papilla export --checkpoint "$SEG" --locator "$RUNS/loc128" --roi-context "$best" \
  --shape-fit ellipse --tta hflip --out "$RUNS/ctx-$best-hflip.papilla" >/dev/null
tta_score=$(papilla evaluate --model "$RUNS/ctx-$best-hflip.papilla" --data "$DATA/refuge512/train" --json | criterion)
echo "tta hflip at roi-context $best: train score $tta_score"
tta=none
if better "$tta_score" "$best_score"; then tta=hflip; fi
echo "chosen tta: $tta"

# Both stages in one bundle: f32, and int8 (QDQ, per-channel weights, 32 calibration photographs
# of the training split). The self-test is the CC0 sample photograph.
for form in f32 int8; do
  extra=()
  [ "$form" = int8 ] && extra=(--int8 --int8-form qdq --calibration "$DATA/refuge512/train" --calib-images 32)
  [ -n "${SIGN_KEY:-}" ] && extra+=(--sign "$SIGN_KEY")
  papilla export --checkpoint "$SEG" --locator "$RUNS/loc128" --roi-context "$best" \
    --shape-fit ellipse --disc-centred-pad "$pad" --tta "$tta" \
    --out "$RUNS/papilla-default-$form.papilla" --name papilla-default --model-version "${MODEL_VERSION:-0.5.0}" \
    --selftest-image samples/wikimedia_haggstrom_normal_left_eye_1411.jpg "${extra[@]}"
  papilla evaluate --model "$RUNS/papilla-default-$form.papilla" --data "$DATA/refuge512/test" \
    --json --csv "$RUNS/refuge-test-$form.csv" > "$RUNS/refuge-test-$form.json"
  papilla evaluate --model "$RUNS/papilla-default-$form.papilla" --data "$DATA/rimone-dl" \
    --disc-centred --json --csv "$RUNS/rimone-test-$form.csv" > "$RUNS/rimone-test-$form.json"
  # REFUGE's training set (Zeiss crops), a camera this model never trained on (DATA/refuge-zeiss
  # from `extract.sh zeiss`; skipped when absent).
  if [ -d "$DATA/refuge-zeiss" ]; then
    papilla evaluate --model "$RUNS/papilla-default-$form.papilla" --data "$DATA/refuge-zeiss" \
      --disc-centred --json --csv "$RUNS/zeiss-$form.csv" > "$RUNS/zeiss-$form.json"
  fi
done
if [ "${SHIP:-1}" = 1 ]; then
  cp "$RUNS/papilla-default-int8.papilla" models/papilla-default.papilla
fi
