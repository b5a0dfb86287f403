#!/usr/bin/env python3
"""Where predicted discs and cups sit against the truth: a bias in placement or size shows here
before it shows in Dice. Model card, "Vertical flips".

    papilla predict --model B.papilla --input DATA/refuge512/train --out PRED
    python3 scripts/mask_offsets.py PRED DATA/refuge512/train/Disc_Cup_Masks

PRED holds 0/128/255 BMPs (`papilla predict`); TRUTH the masks of the same stems (.bmp or
.png). Prints the median offset of the predicted disc's centroid from the true one (pixels and
disc radii, + is down / right), the median area ratio, and the cup's centroid offset.
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def centroid(mask):
    y, x = np.nonzero(mask)
    return np.array([y.mean(), x.mean()]) if len(y) else np.array([np.nan, np.nan])


def main(pred_dir, truth_dir):
    rows = []
    for p in sorted(Path(pred_dir).glob("*.bmp")):
        matches = sorted(Path(truth_dir).glob(p.stem + ".*"))
        if not matches:
            sys.exit(f"{p}: no mask of that name in {truth_dir}")
        truth = np.array(Image.open(matches[0]))
        truth = truth[..., 0] if truth.ndim == 3 else truth
        pred = np.array(Image.open(p))
        if pred.shape != truth.shape:
            sys.exit(f"{p}: {pred.shape} against the truth's {truth.shape}")
        td, pd = truth < 255, pred < 255
        radius = np.sqrt(td.sum() / np.pi)
        disc = centroid(pd) - centroid(td)
        cup = centroid(pred == 0) - centroid(truth == 0)
        dice = 2 * (td & pd).sum() / max(td.sum() + pd.sum(), 1)
        rows.append([dice, pd.sum() / td.sum(), *disc, *(disc / radius), *(cup / radius)])
    if not rows:
        sys.exit(f"{pred_dir}: no .bmp predictions")
    a = np.array(rows)
    med = lambda c: np.nanmedian(a[:, c])
    print(f"n {len(a)}, disc Dice mean {a[:, 0].mean():.4f} median {med(0):.4f}")
    print(f"disc area, predicted / true: median {med(1):.4f}")
    print(f"disc centroid offset (down, right): {med(2):+.3f} px, {med(3):+.3f} px"
          f" = {med(4):+.4f}, {med(5):+.4f} disc radii")
    print(f"cup centroid offset (down, right): {med(6):+.4f}, {med(7):+.4f} disc radii")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
