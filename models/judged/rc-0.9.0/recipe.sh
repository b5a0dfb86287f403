#!/usr/bin/env bash
# Release candidate 0.9.0 (rc), as run 2026-12-07 19:41-22:09 on the 2-core AMD EPYC machine: its training: scripts/train-default-model.sh's stages exactly (ONLY_TRAIN),
# BACKEND=tch, with FOLDER_LARGE_CUP_REPEAT="rimone-dl=2" (release rule: rule.txt beside this file), written out
# here so that each stage resumes across sessions (the script's own train calls start afresh).
set -euo pipefail
cd /work/main
P=/root/.cache/papilla/tch-target/release/papilla  # a --features tch build
R=/work/runs/rc
D=/work/data
W=/root/.cache/papilla/efficientnet-lite0.safetensors
ts() { echo "$(date -u +%H:%M:%S) $*" | tee -a /work/runs/rc-ts.log; }
common=(--depth 4 --warmup-epochs 1 --optimizer adamw --lr 0.003 --ce-weight 1 --rotate 10 --checkpoint-every 0)
SEGS=(--data $D/refuge512/train --data $D/refuge-zeiss --data $D/rimone-dl)
done_epochs() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["epoch"])' "$1/state.json" 2>/dev/null || echo 0; }
if [ "$(done_epochs $R/loc128)" -lt 10 ]; then
  ts locator
  rm -rf $R/loc128
  $P train --backend tch --data $D/refuge512/train --out $R/loc128 --size 128 --epochs 10 \
    "${common[@]}" --base-channels 8 --scale 0.15 --translate 0.05 --threads 2
  cp $R/loc128/model-last.bpk $R/loc128/model-best.bpk
fi
ts segmenter
if [ -f $R/lite0/config.json ]; then resume=(--resume); else resume=(); fi
$P train --backend tch "${SEGS[@]}" --out $R/lite0 --size 224 --epochs 12 \
  --encoder efficientnet-lite0 --pretrained $W --anti-alias --warmup-epochs 1 --optimizer adamw \
  --lr 0.001 --ce-weight 1 --rotate 10 --checkpoint-every 1 --vflip 0 \
  --scale 0.3 --roi-context 2.2 --loss nested --roi-min-side 0.2 --translate 0.08 \
  --large-cup-repeat 3 --camera-augment --vcdr-weight 1 --style-mix 0 \
  --folder-large-cup-repeat rimone-dl=2 --threads 2 "${resume[@]}"
cp $R/lite0/model-last.bpk $R/lite0/model-best.bpk
ts average
rm -rf $R/lite0-avg
$P average --run $R/lite0 --last 4 --out $R/lite0-avg
ts batchnorm
$P train --backend tch "${SEGS[@]}" --out $R/lite0-avg --resume --epochs 13 --restart-lr 0 --checkpoint-every 0 --threads 2
cp $R/lite0-avg/model-last.bpk $R/lite0-avg/model-best.bpk
ts judge
INT8=1 PAPILLA=$P KEEP=models/judged/rc-0.9.0 scripts/judge-run.sh $R/lite0-avg $R/loc128 $D $R/judge-heldout
ts done
