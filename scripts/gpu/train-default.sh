#!/usr/bin/env bash
# Trains the whole default model (both stages, scripts/train-default-model.sh's recipe) on a lent
# GPU machine from a pack made by scripts/gpu/pack.sh, and leaves what should come back in OUT:
#
#   probe.txt            scripts/gpu/probe.sh's findings and the road it chose
#   check-*.json         one training step on the backend against flex, at each stage's real
#                        input size and network (128 px plain locator, 224 px anti-aliased
#                        EfficientNet-Lite0 segmenter), gradients included
#   runs/loc128/, runs/lite0/, runs/lite0-avg/   config, state (backend, device, threads),
#                        metrics, curves, model-best.bpk and model-last.bpk (optimiser states and
#                        the epoch checkpoints stay behind: they are large); lite0-avg, the
#                        segmenter's last epochs averaged with BatchNorm re-estimated, is the one
#                        that ships
#   summary.txt          seconds per epoch of each stage, and how the run ended
#
# It refuses to train when the probe finds no NVIDIA Vulkan driver (BACKEND=wgpu) or when the
# step check differs: GPU weights are trusted only after that check (issue 14: software Vulkan
# computed wrong weight gradients at 256 px). Run from the repository root:
#
#   OUT=/some/dir scripts/gpu/train-default.sh gpu-pack
#
# Environment: OUT (default ./gpu-out; the device tool sets it), BACKEND (wgpu; cpu or tch to
# test the kit without a GPU), SMOKE=1 (1 and 3 epochs a stage), TOLERANCE (of the step check, 1e-2).
# Exit codes: 0 trained, 3 no usable GPU road (probe.txt says why), 4 the step check differs,
# other: a training stage failed (its log is in OUT).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
pack="$(cd "${1:-gpu-pack}" && pwd)" || { echo "train-default.sh: no pack folder ${1:-gpu-pack}" >&2; exit 2; }
OUT="${OUT:-$repo/gpu-out}"
BACKEND="${BACKEND:-wgpu}"
mkdir -p "$OUT"
log() { echo "$*" | tee -a "$OUT/summary.txt" >&2; }
: > "$OUT/summary.txt"

bash "$here/probe.sh" > "$OUT/probe.txt"
route="$(probe_value "$OUT/probe.txt" route)"
log "probe: $route"
if [ "$BACKEND" = wgpu ] && [ "${route%% *}" != vulkan ]; then
  log "refused: BACKEND=wgpu needs NVIDIA's Vulkan driver here; see probe.txt"
  exit 3
fi

work="${TMPDIR:-/tmp}/papilla-gpu.$$"
mkdir -p "$work"
gunzip -c "$pack/papilla.gz" > "$work/papilla" && chmod +x "$work/papilla" || { log "cannot unpack $pack/papilla.gz"; exit 2; }
export LD_LIBRARY_PATH="$pack/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
PAPILLA="$work/papilla"

# The step check at each stage's input size and network, as the recipe trains them.
for stage in "128 plain" "224 efficientnet-lite0 --anti-alias"; do
  set -- $stage
  start=$(date +%s)
  "$PAPILLA" check-backend --backend "$BACKEND" --size "$1" --base-channels 8 --encoder "$2" ${3:-} \
    --batch 4 --tolerance "${TOLERANCE:-1e-2}" --json > "$OUT/check-$1.json" 2>> "$OUT/check.log"
  rc=$?
  log "step check at $1 px, $2: exit $rc in $(( $(date +%s) - start )) s ($(tr -d '\n ' < "$OUT/check-$1.json" | cut -c1-200))"
  if [ "$rc" -ne 0 ]; then
    log "refused: one training step on $BACKEND differs from flex at $1 px (or the check failed); no weights trained here are trusted"
    exit 4
  fi
done

start=$(date +%s)
weights="$pack/efficientnet-lite0.safetensors"
[ -f "$weights" ] || { log "no ImageNet weights in the pack: the encoder starts from fresh weights"; weights=none; }
PAPILLA="$PAPILLA" BACKEND="$BACKEND" ONLY_TRAIN=1 SMOKE="${SMOKE:-}" LITE0_WEIGHTS="$weights" \
  bash "$repo/scripts/train-default-model.sh" "$pack/data" "$work/runs" > "$OUT/train.log" 2>&1
rc=$?
log "training: exit $rc after $(( $(date +%s) - start )) s (log: train.log)"
for run in loc128 lite0 lite0-avg; do
  m="$work/runs/$run/metrics.csv"
  [ -f "$m" ] || continue
  # metrics.csv: epoch,lr,train_loss,val_disc_dice,val_cup_dice,val_vcdr_mae,score,seconds,images_per_s
  log "$run: $(awk -F, 'NR > 1 {n++; s += $8; ips += $9; last = $0} END {if (n) printf "%d epochs, %.1f s/epoch, %.1f img/s; last: %s", n, s / n, ips / n, last}' "$m")"
done
mkdir -p "$OUT/runs"
for run in loc128 lite0 lite0-avg; do
  [ -d "$work/runs/$run" ] || continue
  mkdir -p "$OUT/runs/$run"
  for f in config.json state.json metrics.csv curves.png model-best.bpk model-last.bpk; do
    [ -f "$work/runs/$run/$f" ] && cp "$work/runs/$run/$f" "$OUT/runs/$run/"
  done
done
rm -rf "$work"
exit "$rc"
