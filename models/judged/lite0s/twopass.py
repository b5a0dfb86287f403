"""Disc-sized padding for disc-centred crops, simulated with the CLI (held-out Zeiss and RIM-ONE crops only):
pass 1 = the bundle at its own padding; D = the predicted disc's larger extent (px), L = the crop's
longer side; pass 2 = the same bundle with --disc-centred K*D/L (per photograph). Scored with ens.py's
scorer (which reproduces `papilla evaluate`). Usage: twopass.py NAME BUNDLE PASS1_PAD"""
import contextlib, importlib.util, io, os, subprocess, sys
import numpy as np
from PIL import Image
name, bundle, pad1 = sys.argv[1], sys.argv[2], sys.argv[3]
# /work/ens/ens.py is models/judged/vote-7/recipe.py
spec = importlib.util.spec_from_file_location("e", "/work/ens/ens.py"); argv = sys.argv; sys.argv = ["x"]
with contextlib.redirect_stdout(io.StringIO()):
    e = importlib.util.module_from_spec(spec); spec.loader.exec_module(e)
sys.argv = argv
O = f"/work/ens/twopass/{name}"
def predict(inp, out, pad):
    subprocess.run([e.P, "predict", "--model", bundle, "--input", inp, "--out", out, "--threads", "2",
                    "--disc-centred", str(pad)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
res = {}
for s in ("refuge-zeiss", "rimone-dl"):
    items = e.sets[s]; p1 = f"{O}/p1/{s}"
    if not os.path.isdir(p1): predict(f"/work/ens/in/{s}", p1, pad1)
    for K in (1.8, 2.0, 2.2):
        scores = []
        for stem, img, t in items:
            m = np.array(Image.open(f"{p1}/{stem}.bmp").convert("L")) < 255
            ys, xs = np.nonzero(m)
            D = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) if len(ys) else max(m.shape)
            pad = max(1.0, round(K * D / max(m.shape), 3))
            single = f"{O}/one/{stem}"; os.makedirs(single, exist_ok=True)
            link = f"{single}/{os.path.basename(img)}"
            if not os.path.exists(link): os.symlink(img, link)
            out = f"{O}/k{K}/{s}"
            if not os.path.exists(f"{out}/{stem}.bmp"): predict(single, out, pad)
            pm = np.array(Image.open(f"{out}/{stem}.bmp").convert("L"))
            td, tc = e.truth(t)
            scores.append(e.score(pm < 255, pm == 0, td, tc))
        d, c, err = (float(np.mean([x[i] for x in scores])) for i in range(3))
        res[(s, K)] = (d + c) / 2 - err
        print(f"{name} {s} K {K}: disc {d:.4f} cup {c:.4f} vCDR MAE {err:.4f} criterion {(d+c)/2-err:.4f}", flush=True)
for K in (1.8, 2.0, 2.2):
    print(f"{name} K {K}: crops (73) {(34*res[('refuge-zeiss',K)] + 39*res[('rimone-dl',K)])/73:.4f}")
