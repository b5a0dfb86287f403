#!/usr/bin/env bash
# lite0o: the 8-epoch base (lite0n, init seed 1) with large cups drawn twice an epoch instead of
# three times, lite0n's locator reused. Run 2026-12-07 on the 2-core AMD EPYC machine.
set -euo pipefail
cd /work/main
P=/root/.cache/papilla/tch-target/release/papilla  # a --features tch build
R=/work/runs/o
L=/work/runs/n/loc128  # lite0n's locator, reused
D=/work/data
W=/root/.cache/papilla/efficientnet-lite0.safetensors
ts() { echo "$(date -u +%H:%M:%S) $*" | tee -a /work/runs/lite0o-ts.log; }
common=(--depth 4 --warmup-epochs 1 --optimizer adamw --lr 0.003 --ce-weight 1 --rotate 10 --checkpoint-every 0)
SEGS=(--data $D/refuge512/train --data $D/refuge-zeiss --data $D/rimone-dl)
ts segmenter
if [ -f $R/lite0/config.json ]; then resume=(--resume); else resume=(); fi
$P train --backend tch "${SEGS[@]}" --out $R/lite0 --size 224 --epochs 8 \
  --encoder efficientnet-lite0 --pretrained $W --anti-alias --warmup-epochs 1 --optimizer adamw \
  --lr 0.001 --ce-weight 1 --rotate 10 --checkpoint-every 1 --vflip 0 \
  --scale 0.3 --roi-context 2.2 --loss nested --roi-min-side 0.2 --translate 0.08 \
  --large-cup-repeat 2 --camera-augment --vcdr-weight 1 --init-seed 1 --threads 2 "${resume[@]}"
cp $R/lite0/model-last.bpk $R/lite0/model-best.bpk
ts average
rm -rf $R/lite0-avg
$P average --run $R/lite0 --last 3 --out $R/lite0-avg
ts batchnorm
$P train --backend tch "${SEGS[@]}" --out $R/lite0-avg --resume --epochs 9 --restart-lr 0 --checkpoint-every 0 --threads 2
cp $R/lite0-avg/model-last.bpk $R/lite0-avg/model-best.bpk
ts judge
INT8=1 PAPILLA=$P scripts/judge-run.sh $R/lite0-avg $L $D $R/judge
ts done
