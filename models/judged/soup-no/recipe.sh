#!/usr/bin/env bash
# A weight soup of the two arms (lite0n epochs 6-8 + lite0o epochs 6-8, both init seed 1), decided
# after both were judged: /work/runs/o/soup-src holds lite0n's run files and links to the six
# checkpoints numbered 3-8, so `papilla average --last 6` averages them.
set -euo pipefail
cd /work/main
P=/root/.cache/papilla/tch-target/release/papilla; D=/work/data; R=/work/runs/o
ts() { echo "$(date -u +%H:%M:%S) $*" | tee -a /work/runs/soup-ts.log; }
SEGS=(--data $D/refuge512/train --data $D/refuge-zeiss --data $D/rimone-dl)
# The folder, as made by hand before this script ran (now part of it, so the record is whole):
S=$R/soup-src
if [ ! -d $S ]; then
  mkdir -p $S
  (cd /work/runs/n/lite0 && cp config.json state.json metrics.csv held-out.txt optim-last.bpk model-last.bpk $S/)
  for e in 6 7 8; do
    ln -s /work/runs/n/lite0/model-epoch-000$e.bpk $S/model-epoch-000$((e - 3)).bpk
    ln -s /work/runs/o/lite0/model-epoch-000$e.bpk $S/model-epoch-000$e.bpk
  done
fi
ts average
$P average --run $R/soup-src --last 6 --out $R/soup
ts batchnorm
$P train --backend tch "${SEGS[@]}" --out $R/soup --resume --epochs 9 --restart-lr 0 --checkpoint-every 0 --threads 2
cp $R/soup/model-last.bpk $R/soup/model-best.bpk
ts judge
INT8=1 PAPILLA=$P scripts/judge-run.sh $R/soup /work/runs/n/loc128 $D $R/judge-soup
ts done
