#!/usr/bin/env bash
# lite0s: lite0r's recipe (the 8-epoch base, RIM-ONE DL's large cups drawn twice, the others three times, lite0n's locator) with
# the default init seed (lite0m's and 0.8.1's) instead of --init-seed 1. Rule /work/runs/lite0s-RULE.txt. Run 2026-12-07, 2-core EPYC.
set -euo pipefail
cd /work/main
P=/root/.cache/papilla/tch-target/release/papilla  # a --features tch build
R=/work/runs/s
L=/work/runs/n/loc128  # lite0n's locator, reused
D=/work/data
W=/root/.cache/papilla/efficientnet-lite0.safetensors
ts() { echo "$(date -u +%H:%M:%S) $*" | tee -a /work/runs/lite0s-ts.log; }
common=(--depth 4 --warmup-epochs 1 --optimizer adamw --lr 0.003 --ce-weight 1 --rotate 10 --checkpoint-every 0)
SEGS=(--data $D/refuge512/train --data $D/refuge-zeiss --data $D/rimone-dl)
ts segmenter
if [ -f $R/lite0/config.json ]; then resume=(--resume); else resume=(); fi
$P train --backend tch "${SEGS[@]}" --out $R/lite0 --size 224 --epochs 8 \
  --encoder efficientnet-lite0 --pretrained $W --anti-alias --warmup-epochs 1 --optimizer adamw \
  --lr 0.001 --ce-weight 1 --rotate 10 --checkpoint-every 1 --vflip 0 \
  --scale 0.3 --roi-context 2.2 --loss nested --roi-min-side 0.2 --translate 0.08 \
  --large-cup-repeat 3 --folder-large-cup-repeat rimone-dl=2 --camera-augment --vcdr-weight 1 --threads 2 "${resume[@]}"
cp $R/lite0/model-last.bpk $R/lite0/model-best.bpk
ts average
rm -rf $R/lite0-avg
$P average --run $R/lite0 --last 3 --out $R/lite0-avg
ts batchnorm
$P train --backend tch "${SEGS[@]}" --out $R/lite0-avg --resume --epochs 9 --restart-lr 0 --checkpoint-every 0 --threads 2
cp $R/lite0-avg/model-last.bpk $R/lite0-avg/model-best.bpk
ts judge
INT8=1 PAPILLA=$P KEEP=models/judged/lite0s scripts/judge-run.sh $R/lite0-avg $L $D $R/judge
ts done
