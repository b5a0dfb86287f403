#!/usr/bin/env bash
# lite0n: second draw of the 8-epoch base (init seed 1), as run 2026-12-07 03:47-05:51 on the
# 2-core AMD EPYC machine. Paths are that machine's.
set -euo pipefail
cd /work/main
P=/root/.cache/papilla/tch-target/release/papilla  # a --features tch build
R=/work/runs/n
D=/work/data
W=/root/.cache/papilla/efficientnet-lite0.safetensors
ts() { echo "$(date -u +%H:%M:%S) $*" | tee -a /work/runs/lite0n-ts.log; }
common=(--depth 4 --warmup-epochs 1 --optimizer adamw --lr 0.003 --ce-weight 1 --rotate 10 --checkpoint-every 0)
SEGS=(--data $D/refuge512/train --data $D/refuge-zeiss --data $D/rimone-dl)
if [ ! -f $R/loc128/model-best.bpk ]; then
  ts locator
  $P train --backend tch --data $D/refuge512/train --out $R/loc128 --size 128 --epochs 10 \
    "${common[@]}" --base-channels 8 --scale 0.15 --translate 0.05 --threads 2
  cp $R/loc128/model-last.bpk $R/loc128/model-best.bpk
fi
ts segmenter
if [ -f $R/lite0/config.json ]; then resume=(--resume); else resume=(); fi
$P train --backend tch "${SEGS[@]}" --out $R/lite0 --size 224 --epochs 8 \
  --encoder efficientnet-lite0 --pretrained $W --anti-alias --warmup-epochs 1 --optimizer adamw \
  --lr 0.001 --ce-weight 1 --rotate 10 --checkpoint-every 1 --vflip 0 \
  --scale 0.3 --roi-context 2.2 --loss nested --roi-min-side 0.2 --translate 0.08 \
  --large-cup-repeat 3 --camera-augment --vcdr-weight 1 --init-seed 1 --threads 2 "${resume[@]}"
cp $R/lite0/model-last.bpk $R/lite0/model-best.bpk
ts average
rm -rf $R/lite0-avg
$P average --run $R/lite0 --last 3 --out $R/lite0-avg
ts batchnorm
$P train --backend tch "${SEGS[@]}" --out $R/lite0-avg --resume --epochs 9 --restart-lr 0 --checkpoint-every 0 --threads 2
cp $R/lite0-avg/model-last.bpk $R/lite0-avg/model-best.bpk
ts judge
INT8=1 PAPILLA=$P scripts/judge-run.sh $R/lite0-avg $R/loc128 $D $R/judge
ts done
