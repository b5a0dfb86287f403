#!/usr/bin/env python3
"""How far a bundle's vCDR moves when the photograph moves by a pixel or is decoded otherwise.

    python3 scripts/shift_sensitivity.py BUNDLE PHOTO... [--papilla PATH] [--shifts 3]

For each photograph: the photograph as Pillow decodes it, and cut by 1..N columns on the left
(the same eye, its pixel grid moved), each segmented by `papilla predict --model BUNDLE` (the
host road), plus the original JPEG through `papilla predict` itself (the `image` crate's
decoder). Prints one JSON object per photograph: each variant's vCDR (REFUGE definition on the
stored mask), the spread over the shifts and the decoder difference. A network whose stride-2
layers alias moves its vCDR with the grid; the device's scaled JPEG decode moves the grid too.
Needs Pillow and numpy.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
from PIL import Image


def vcdr(mask):
    disc = (mask < 255).sum(axis=0).max()
    return float((mask == 0).sum(axis=0).max() / disc) if disc else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("photos", nargs="+")
    ap.add_argument("--papilla", default="papilla", help="the papilla binary")
    ap.add_argument("--shifts", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        os.makedirs(inp)
        for i, photo in enumerate(a.photos):
            im = Image.open(photo).convert("RGB")
            w, h = im.size
            for dx in range(a.shifts + 1):
                im.crop((dx, 0, w, h)).save(os.path.join(inp, f"p{i}_shift{dx}.png"))
            shutil.copyfile(photo, os.path.join(inp, f"p{i}_jpeg" + os.path.splitext(photo)[1]))
        subprocess.run([a.papilla, "predict", "--model", a.bundle, "--input", inp, "--out", out],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i, photo in enumerate(a.photos):
            read = lambda name: vcdr(np.array(Image.open(os.path.join(out, name + ".bmp")).convert("L")))
            shifts = [read(f"p{i}_shift{dx}") for dx in range(a.shifts + 1)]
            jpeg = read(f"p{i}_jpeg")
            print(json.dumps({"photo": photo, "vcdr_by_shift": [round(v, 4) for v in shifts],
                              "shift_spread": round(max(shifts) - min(shifts), 4),
                              "vcdr_own_decoder": round(jpeg, 4),
                              "decoder_difference": round(abs(jpeg - shifts[0]), 4)}))


if __name__ == "__main__":
    main()
