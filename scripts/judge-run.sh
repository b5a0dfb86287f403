#!/usr/bin/env bash
# Judges a trained segmenter on the eyes it held out, the way every model since 0.8.0 was chosen
# (MODEL_CARD.md, "Choices, on the held-out validation eyes"): the run-time crop width among
# CROPS on the held-out REFUGE-512 photographs, then the padding of disc-centred crops among PADS
# on the held-out Zeiss and RIM-ONE DL crops together, then the bundle with both choices scored
# per camera and pooled. The score is the trainer's criterion, mean Dice minus vCDR MAE of
# `papilla evaluate --json` (f32, ellipse fit); pooled = the per-camera scores weighted by their
# eye counts. Never a test split: only `--held-out-of` eyes of the training folders are read.
#
#   scripts/judge-run.sh SEG_RUN LOCATOR_RUN DATA OUT_DIR
#
# Relative paths are taken from the repository root (the script runs there).
# DATA is laid out as for scripts/train-default-model.sh (DATA/refuge512/train, and where present
# DATA/refuge-zeiss and DATA/rimone-dl); absent sets are left out. Writes OUT_DIR/ctx-*.papilla,
# OUT_DIR/cand-f32.papilla (and cand-int8 with INT8=1) and OUT_DIR/judge.json (every score, the
# choices, the pooled criterion); prints one line a step.
#
# Environment:
#   PAPILLA  the papilla binary (default: cargo run --release)
#   CROPS    crop widths to try, locator disc diameters (default "1.6 1.7 1.8 1.9 2.0 2.1")
#   PADS     disc-centred paddings to try (default "1.4 1.6 1.8")
#   INT8     1: also export the int8 bundle (QDQ, 32 calibration photographs of DATA/refuge512/
#            train) and score it the same way
#   GATE     a pooled f32 criterion the run must reach: prints PASS or FAIL and exits 0 or 4
#   THREADS  threads of each evaluation (default: all cores)
#   KEEP     a folder to keep the judgement in for later pairing (models/judged/NAME, see its
#            README): the per-set scores of the bundle (f32-SET.json, int8-SET.json), judge.json
#            and the run's held-out.txt. Refused up front if it already holds a judge.json.
set -euo pipefail
SEG="${1:?usage: scripts/judge-run.sh SEG_RUN LOCATOR_RUN DATA OUT_DIR}"
LOC="${2:?usage: scripts/judge-run.sh SEG_RUN LOCATOR_RUN DATA OUT_DIR}"
DATA="${3:?usage: scripts/judge-run.sh SEG_RUN LOCATOR_RUN DATA OUT_DIR}"
OUT="${4:?usage: scripts/judge-run.sh SEG_RUN LOCATOR_RUN DATA OUT_DIR}"
cd "$(dirname "$0")/.."
if [ -n "${PAPILLA:-}" ]; then
  papilla() { "$PAPILLA" "$@"; }
else
  papilla() { cargo run --release -q -p papilla-host -- "$@"; }
fi
for d in "$SEG" "$LOC" "$DATA/refuge512/train"; do
  [ -d "$d" ] || { echo "judge-run.sh: $d: no such folder" >&2; exit 2; }
done
if [ -n "${KEEP:-}" ]; then
  if [ -e "$KEEP/judge.json" ]; then
    echo "judge-run.sh: KEEP=$KEEP already holds a judgement (judge.json): choose a new folder" >&2
    exit 2
  fi
  # Runs from before held-out.txt can be judged (their split is drawn again), not kept.
  [ -f "$SEG/held-out.txt" ] || { echo "judge-run.sh: KEEP needs $SEG/held-out.txt, which this run lacks" >&2; exit 2; }
fi
mkdir -p "$OUT"
held=(--held-out-of "$SEG")
[ -n "${THREADS:-}" ] && held+=(--threads "$THREADS")
# Every evaluation's JSON is kept in OUT/scores; judge.json is computed from them.
scores="$OUT/scores"
rm -rf "$scores"; mkdir -p "$scores"
crit() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print((j["disc_dice"]+j["cup_dice"])/2-j["vcdr_mae"])' "$1"; }
# Prints the first NAME of NAME SCORE pairs with the highest score (ties keep the earlier one).
best() { python3 -c 'import sys; a=sys.argv[1:]; print(max(zip(a[::2], map(float, a[1::2])), key=lambda p: p[1])[0])' "$@"; }

crop_args=()
for c in ${CROPS:-1.6 1.7 1.8 1.9 2.0 2.1}; do
  papilla export --checkpoint "$SEG" --locator "$LOC" --roi-context "$c" --shape-fit ellipse \
    --out "$OUT/ctx-$c.papilla" >/dev/null
  papilla evaluate --model "$OUT/ctx-$c.papilla" --data "$DATA/refuge512/train" "${held[@]}" \
    --json > "$scores/crop-$c.json"
  score=$(crit "$scores/crop-$c.json")
  echo "crop $c: held-out REFUGE-512 $score"
  crop_args+=("$c" "$score")
done
crop=$(best "${crop_args[@]}")
echo "chosen crop: $crop"

CROPSETS=()
for set in refuge-zeiss rimone-dl; do [ -d "$DATA/$set" ] && CROPSETS+=(--data "$DATA/$set"); done
pad=1.8
if [ ${#CROPSETS[@]} -gt 0 ]; then
  pad_args=()
  for p in ${PADS:-1.4 1.6 1.8}; do
    papilla evaluate --model "$OUT/ctx-$crop.papilla" "${CROPSETS[@]}" --rimone-split train \
      --disc-centred "$p" "${held[@]}" --json > "$scores/pad-$p.json"
    score=$(crit "$scores/pad-$p.json")
    echo "pad $p: held-out crops $score"
    pad_args+=("$p" "$score")
  done
  pad=$(best "${pad_args[@]}")
else
  echo "judge-run.sh: no $DATA/refuge-zeiss or $DATA/rimone-dl: padding left at $pad" >&2
fi
echo "chosen pad: $pad"

forms=(f32); [ "${INT8:-}" = 1 ] && forms+=(int8)
for form in "${forms[@]}"; do
  extra=()
  [ "$form" = int8 ] && extra=(--int8 --int8-form qdq --calibration "$DATA/refuge512/train" --calib-images 32)
  papilla export --checkpoint "$SEG" --locator "$LOC" --roi-context "$crop" --shape-fit ellipse \
    --disc-centred-pad "$pad" --tta none --out "$OUT/cand-$form.papilla" "${extra[@]}" >/dev/null
  papilla evaluate --model "$OUT/cand-$form.papilla" --data "$DATA/refuge512/train" "${held[@]}" \
    --json > "$scores/$form-refuge512.json"
  for set in refuge-zeiss rimone-dl; do
    [ -d "$DATA/$set" ] || continue
    papilla evaluate --model "$OUT/cand-$form.papilla" --data "$DATA/$set" --rimone-split train \
      --disc-centred "${held[@]}" --json > "$scores/$form-$set.json"
  done
done

status=0
python3 - "$OUT/judge.json" "$scores" "$crop" "$pad" "${GATE:-}" "${forms[@]}" <<'PY' || status=$?
import glob, json, os, sys
out, scores, crop, pad, gate, *forms = sys.argv[1:]
def load(p):
    j = json.load(open(p))
    keep = {k: j[k] for k in ("n", "disc_dice", "cup_dice", "vcdr_mae")}
    keep["criterion"] = (j["disc_dice"] + j["cup_dice"]) / 2 - j["vcdr_mae"]
    return keep
def named(prefix):
    return {os.path.basename(p)[len(prefix):-5]: load(p)["criterion"]
            for p in sorted(glob.glob(f"{scores}/{prefix}*.json"))}
result = {"crop": float(crop), "pad": float(pad), "crops": named("crop-"), "pads": named("pad-")}
for form in forms:
    sets = {os.path.basename(p)[len(form) + 1:-5]: load(p)
            for p in sorted(glob.glob(f"{scores}/{form}-*.json"))}
    n = sum(s["n"] for s in sets.values())
    pooled = sum(s["n"] * s["criterion"] for s in sets.values()) / n
    result[form] = {"sets": sets, "n": n, "pooled": pooled}
    per = ", ".join(f"{k} {v['criterion']:.4f} ({v['n']})" for k, v in sets.items())
    print(f"{form}: {per}; pooled {pooled:.4f} ({n} eyes)")
json.dump(result, open(out, "w"), indent=2)
if gate:
    ok = result["f32"]["pooled"] >= float(gate)
    print(f"gate: pooled f32 {result['f32']['pooled']:.4f} {'>=' if ok else '<'} {gate}: "
          + ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 4)
PY
# Kept even when a GATE fails (4): a failed candidate is still a paired measurement.
if [ -n "${KEEP:-}" ] && { [ $status = 0 ] || [ $status = 4 ]; }; then
  mkdir -p "$KEEP"
  for form in "${forms[@]}"; do cp "$scores/$form"-*.json "$KEEP/"; done
  cp "$OUT/judge.json" "$KEEP/"
  cp "$SEG/held-out.txt" "$KEEP/"
  echo "kept in $KEEP"
fi
exit $status
