#!/usr/bin/env bash
# Reproduces models/papilla-default.papilla (0.8.1): trains the locator on REFUGE-512 train
# (whole photographs, 10% held out) and the segmenter, an EfficientNet-Lite0 encoder started
# from ImageNet weights under a UNet decoder, on three cameras -- REFUGE-512 train (Canon),
# REFUGE's Zeiss training crops and RIM-ONE DL train (10% of the 1060 eyes held out) -- in one
# cosine cycle of 12 epochs at 224 px with the per-image Dice loss, anti-aliased, without
# vertical flips; averages the cycle's last 4 epochs and re-estimates BatchNorm for the
# average (one epoch at learning rate 0); picks the run-time crop width and the padding of
# disc-centred crops on the eyes the segmenter held out (`evaluate --held-out-of`; never a test
# split), exports the int8 bundle (signed when SIGN_KEY is set), and scores it on the test
# splits. DATA is the folder written by `../shared/data/extract.sh refuge ...`
# (DATA/refuge512), `... rimone ...` (DATA/rimone-dl) and `... zeiss ...` (DATA/refuge-zeiss).
# 0.8.1 was trained with BACKEND=tch (a `--features tch` build): about 6-7 min an epoch, 13
# epochs, on 2 idle CPU cores (flex: several hours, and other initial weights, since each
# backend draws its own); another 2-core machine (2026-12-06, AMD EPYC) took 1.74 s a batch of
# 4, about 10 min an epoch, so the whole script there runs about 2.5 h. Ctrl-C saves a
# checkpoint, and the same train command with --resume continues.
#
# Environment (the GPU kit, scripts/gpu/train-default.sh, sets them):
#   BACKEND     burn backend of every training stage: cpu (flex, default), tch (libtorch, 3-4x
#               faster; a `--features tch` build) or wgpu
#   PAPILLA     the papilla binary to run (default: cargo run --release)
#   ONLY_TRAIN  1: stop after the training stages (choose, export and score elsewhere)
#   SMOKE       1: 1 and 3 epochs a stage instead of 10 and 12, to test the script itself
#   LITE0_WEIGHTS  the ImageNet EfficientNet-Lite0 safetensors (default: what
#               scripts/fetch-efficientnet-lite0.py downloads once; `none`: the encoder starts
#               from fresh weights, for tests of the script only)
#   LARGE_CUP_REPEAT  N: the segmenter draws eyes with true vCDR >= 0.6 N times an epoch
#               (default 3, as 0.5.0-0.8.1 were trained; 0.4.0 used 1)
#   STYLE_MIX   P: Fourier style mixing probability (default 0, as 0.8.1 was trained)
#   FOLDER_REPEAT  space-separated FOLDER=N: the segmenter draws every eye of that --data folder
#               N times as often (`train --folder-repeat`; e.g. "rimone-dl=2"; default: none, as
#               0.8.1 was trained)
#   FOLDER_LARGE_CUP_REPEAT  space-separated FOLDER=N: that folder's large cups drawn N times
#               instead of LARGE_CUP_REPEAT (`train --folder-large-cup-repeat`; e.g.
#               "rimone-dl=2"; default: none, as 0.8.1 was trained)
#   SEG_EPOCHS  N: the segmenter's cosine cycle in epochs (default 12, as 0.8.1 was trained);
#               the BatchNorm epoch is N + 1
#   AVERAGE_LAST  N: how many of the cycle's last epochs are averaged (default 4: epochs 9-12)
#   INIT_SEED   N: the segmenter's --init-seed (default: none, as 0.8.1 was trained): the same
#               eyes held out, other initial weights and draws, to measure run-to-run noise
#   MODEL_VERSION     the bundles' version (default 0.8.1, the shipped one)
#   SHIP        0: leave models/ alone (default 1: copy the int8 bundle there)
#   SKIP_TRAIN  1: reuse the runs in RUNS_DIR (e.g. brought back by the GPU kit) and only
#               choose, export and score (the choices re-read the data folders the runs'
#               config.json names, to find the eyes they held out: those paths must exist here)
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
# Epochs of each stage; SMOKE keeps the stages' order with 1-3 epochs. Checked before any work.
loc_epochs=10
seg_epochs="${SEG_EPOCHS:-12}"
last="${AVERAGE_LAST:-4}"
[ "${SMOKE:-}" = 1 ] && { loc_epochs=1; seg_epochs=3; last=2; }
if ! [ "$seg_epochs" -ge 1 ] 2>/dev/null; then
  echo "train-default-model.sh: SEG_EPOCHS=$seg_epochs must be a whole number of epochs, 1 or more" >&2
  exit 2
fi
if ! [ "$last" -ge 1 ] 2>/dev/null || [ "$last" -gt "$seg_epochs" ]; then
  echo "train-default-model.sh: AVERAGE_LAST=$last must be 1 to the cycle's $seg_epochs epochs" >&2
  exit 2
fi
common=(--depth 4 --warmup-epochs 1 --optimizer adamw --lr 0.003 --ce-weight 1
        --rotate 10 --checkpoint-every 0)

if [ "${SKIP_TRAIN:-}" != 1 ]; then
  # Stage 1: the locator, the whole photograph at 128 px.
  train --data "$DATA/refuge512/train" --out "$RUNS/loc128" --size 128 --epochs "$loc_epochs" \
    "${common[@]}" --base-channels 8 --scale 0.15 --translate 0.05
  # The locator only has to find the disc: its last epoch ships. The trainer's criterion (mean
  # Dice minus vCDR MAE) needs a cup, which a 128 px locator may never draw; then it keeps
  # epoch 1 (seen with tch's initial weights: disc 0.56 at epoch 1, 0.93 at epoch 10).
  cp "$RUNS/loc128/model-last.bpk" "$RUNS/loc128/model-best.bpk"
  # Stage 2: the segmenter, EfficientNet-Lite0's encoder from ImageNet weights under a UNet
  # decoder, anti-aliased (its five stride-2 layers run at stride 1 and a fixed binomial blur
  # subsamples: without it the vCDR moved 0.016 with a 1-3 px shift of the photograph, and with
  # the device's JPEG decoder; 2.61 GFLOP at 224 px), a 224 px crop 2.2 disc diameters wide
  # around the (true) disc, shifted and scaled as a locator's error would; three cameras, the
  # disc-centred crops (Zeiss, RIM-ONE) mirrored outwards to that context; large cups drawn 3
  # times; camera augmentation and the soft-vCDR loss term; the Dice of disc and cup per image
  # (`--loss nested`: a small healthy cup weighs as much as a large one, as the REFUGE metrics
  # average); no vertical flips (a fundus photograph has an up and a down); one cosine cycle of
  # SEG_EPOCHS (12) epochs at peak 0.001, every epoch's checkpoint kept for the average below.
  # A set that is absent is left out with a warning (the GPU kit packs GAMMA layouts only, so it
  # carries no RIM-ONE): the result is then not 0.8.1's recipe.
  SEGS=(--data "$DATA/refuge512/train")
  for extra in refuge-zeiss rimone-dl; do
    if [ -d "$DATA/$extra" ]; then SEGS+=(--data "$DATA/$extra")
    else echo "train-default-model.sh: warning: no $DATA/$extra; the segmenter trains without it" >&2; fi
  done
  repeats=()
  for r in ${FOLDER_REPEAT:-}; do repeats+=(--folder-repeat "$r"); done
  for r in ${FOLDER_LARGE_CUP_REPEAT:-}; do repeats+=(--folder-large-cup-repeat "$r"); done
  weights="${LITE0_WEIGHTS:-$(python3 scripts/fetch-efficientnet-lite0.py)}"
  pretrained=(--pretrained "$weights")
  [ "$weights" = none ] && pretrained=()
  train "${SEGS[@]}" --out "$RUNS/lite0" --size 224 --epochs "$seg_epochs" \
    --encoder efficientnet-lite0 "${pretrained[@]}" --anti-alias --warmup-epochs 1 --optimizer adamw \
    --lr 0.001 --ce-weight 1 --rotate 10 --checkpoint-every 1 --vflip 0 \
    --scale 0.3 --roi-context 2.2 --loss nested --roi-min-side 0.2 --translate 0.08 \
    --large-cup-repeat "${LARGE_CUP_REPEAT:-3}" --camera-augment --vcdr-weight 1 \
    --style-mix "${STYLE_MIX:-0}" ${INIT_SEED:+--init-seed "$INIT_SEED"} "${repeats[@]}"
  cp "$RUNS/lite0/model-last.bpk" "$RUNS/lite0/model-best.bpk"
  # Stage 3: the cycle's last AVERAGE_LAST epochs (4: 9-12; SMOKE: 2) averaged, then one epoch
  # at learning rate 0 on the same data, which moves only BatchNorm's running statistics to the averaged
  # weights' (so chosen for 0.8.1, whose held-out eyes score 0.8639 pooled against 0.8.0's
  # 0.8608; MODEL_CARD.md). Its last checkpoint ships.
  rm -rf "$RUNS/lite0-avg"
  papilla average --run "$RUNS/lite0" --last "$last" --out "$RUNS/lite0-avg"
  train "${SEGS[@]}" --out "$RUNS/lite0-avg" --resume --epochs "$(( seg_epochs + 1 ))" \
    --restart-lr 0 --checkpoint-every 0
  cp "$RUNS/lite0-avg/model-last.bpk" "$RUNS/lite0-avg/model-best.bpk"
fi
SEG="$RUNS/lite0-avg"
if [ "${ONLY_TRAIN:-}" = 1 ]; then
  echo "trained: locator $RUNS/loc128, segmenter $SEG"
  exit 0
fi

# The run-time crop width (locator disc diameters, 1.6-2.1, on the held-out REFUGE-512
# photographs) and the padding of disc-centred crops (1.4-1.8, on the held-out Zeiss and RIM-ONE
# DL crops together): chosen on the eyes the segmenter held out (never trained on, never a test
# split), f32, with the ellipse fit that ships, by the trainer's criterion (mean Dice minus vCDR
# MAE). scripts/judge-run.sh also scores the chosen bundle per camera and pooled (judge.json).
PAPILLA="${PAPILLA:-}" scripts/judge-run.sh "$SEG" "$RUNS/loc128" "$DATA" "$RUNS/judge"
read -r best pad < <(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["crop"], j["pad"])' "$RUNS/judge/judge.json")
# Flip TTA would run the 224 px segmenter twice: 0.38 + 2 x 2.61 GFLOP, over the 4 allowed.
tta=none

# Both stages in one bundle: f32, and int8 (QDQ, per-channel weights, 32 calibration photographs
# of the training split). The self-test is the CC0 sample photograph.
for form in f32 int8; do
  extra=()
  [ "$form" = int8 ] && extra=(--int8 --int8-form qdq --calibration "$DATA/refuge512/train" --calib-images 32)
  [ -n "${SIGN_KEY:-}" ] && extra+=(--sign "$SIGN_KEY")
  papilla export --checkpoint "$SEG" --locator "$RUNS/loc128" --roi-context "$best" \
    --shape-fit ellipse --disc-centred-pad "$pad" --tta "$tta" \
    --out "$RUNS/papilla-default-$form.papilla" --name papilla-default --model-version "${MODEL_VERSION:-0.8.1}" \
    --selftest-image samples/wikimedia_haggstrom_normal_left_eye_1411.jpg "${extra[@]}"
  papilla evaluate --model "$RUNS/papilla-default-$form.papilla" --data "$DATA/refuge512/test" \
    --json --csv "$RUNS/refuge-test-$form.csv" > "$RUNS/refuge-test-$form.json"
  if [ -d "$DATA/rimone-dl" ]; then
    papilla evaluate --model "$RUNS/papilla-default-$form.papilla" --data "$DATA/rimone-dl" \
      --disc-centred --json --csv "$RUNS/rimone-test-$form.csv" > "$RUNS/rimone-test-$form.json"
  fi
  # REFUGE's training set (Zeiss crops): trained on since 0.6.0, so a training-set figure.
  if [ -d "$DATA/refuge-zeiss" ]; then
    papilla evaluate --model "$RUNS/papilla-default-$form.papilla" --data "$DATA/refuge-zeiss" \
      --disc-centred --json --csv "$RUNS/zeiss-$form.csv" > "$RUNS/zeiss-$form.json"
  fi
done
if [ "${SHIP:-1}" = 1 ]; then
  cp "$RUNS/papilla-default-int8.papilla" models/papilla-default.papilla
fi
