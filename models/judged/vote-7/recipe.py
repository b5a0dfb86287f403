"""Majority-vote ensemble of the judged runs' int8 bundles on the 106 held-out eyes (never a test split).
Predict masks with each bundle (papilla predict, each bundle's own crop/padding), vote per pixel
(disc: > half the bundles draw disc or cup; cup: > half draw cup, inside the disc), score with the
REFUGE definitions; first checks that this scoring reproduces evaluate's per-eye Dice for one bundle."""
import glob, json, os, subprocess, sys
import numpy as np
from PIL import Image
P = "/root/.cache/papilla/tch-target/release/papilla"
D = "/work/data"; J = "/work/main/models/judged"; O = "/work/ens"
B = {"0.8.1-shipped": "/work/main/models/papilla-default.papilla", "lite0n": "/work/runs/n/judge/cand-int8.papilla",
     "lite0o": "/work/runs/o/judge/cand-int8.papilla", "lite0p": "/work/runs/p/judge/cand-int8.papilla",
     "lite0q": "/work/runs/q/judge/cand-int8.papilla", "lite0r": "/work/runs/r/judge/cand-int8.papilla",
     "rc-0.9.0": "/work/runs/rc/judge-heldout/cand-int8.papilla"}
held = [l.strip() for l in open(f"{J}/lite0r/held-out.txt") if l.strip()]
sets = {"rimone-dl": [], "refuge-zeiss": [], "refuge512": []}
for h in held:
    f, stem = h.split("/", 1)
    if f == "rimone-dl":
        img = f"{D}/rimone-dl/partitioned_randomly/images/train/{stem}.png"
        g = glob.glob(f"{D}/rimone-dl/RIM-ONE_DL_reference_segmentations/*/{stem}-1-")
        cls = glob.glob(f"{D}/rimone-dl/RIM-ONE_DL_reference_segmentations/*/{stem}-1-Disc-T.png")[0]
        truth = (cls, cls.replace("-Disc-T", "-Cup-T"))
        sets["rimone-dl"].append((stem, img, truth))
    elif f == "refuge-zeiss":
        img = glob.glob(f"{D}/refuge-zeiss/fundus color images/{stem}.*")[0]
        sets["refuge-zeiss"].append((stem, img, f"{D}/refuge-zeiss/Disc_Cup_Masks/{stem}.png"))
    else:
        img = glob.glob(f"{D}/refuge512/train/fundus color images/{stem}.*")[0]
        sets["refuge512"].append((stem, img, f"{D}/refuge512/train/Disc_Cup_Masks/{stem}.bmp"))
def truth(t):
    if isinstance(t, tuple):
        disc = np.array(Image.open(t[0]).convert("L")) > 127; cup = np.array(Image.open(t[1]).convert("L")) > 127
    else:
        # Snapped to the nearest of 0/128/255, as `papilla evaluate` reads REFUGE-512's resized masks.
        m = np.array(Image.open(t).convert("L")).astype(int); disc = m < 192; cup = m < 64
    return disc, cup
def dice(a, b):
    s = a.sum() + b.sum(); return 1.0 if s == 0 else 2 * (a & b).sum() / s
def vh(m): return m.sum(axis=0).max()
def score(disc, cup, tdisc, tcup):
    v = vh(cup) / max(vh(disc), 1); vt = vh(tcup) / max(vh(tdisc), 1)
    return dice(disc, tdisc), dice(cup, tcup), abs(v - vt)
if "predict" in sys.argv:
    for s, items in sets.items():
        inp = f"{O}/in/{s}"; os.makedirs(inp, exist_ok=True)
        for stem, img, _ in items:
            dst = f"{inp}/{stem}{os.path.splitext(img)[1]}"
            if not os.path.exists(dst): os.symlink(img, dst)
        for name, b in B.items():
            out = f"{O}/pred/{name}/{s}"
            if os.path.isdir(out) and len(os.listdir(out)) == len(items): continue
            args = [P, "predict", "--model", b, "--input", inp, "--out", out, "--threads", "2"]
            if s != "refuge512": args.append("--disc-centred")
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
res = {}
for s, items in sets.items():
    ev = {im["name"].split("/", 1)[1]: im for im in json.load(open(f"{J}/lite0r/int8-{s}.json"))["images"]}
    per = {k: [] for k in list(B) + ["vote"]}
    for stem, img, t in items:
        tdisc, tcup = truth(t)
        ms = {k: np.array(Image.open(f"{O}/pred/{k}/{s}/{stem}.bmp").convert("L")) for k in B}
        for k, m in ms.items():
            per[k].append(score(m < 255, m == 0, tdisc, tcup))
        dv = sum((m < 255).astype(int) for m in ms.values()); cv = sum((m == 0).astype(int) for m in ms.values())
        disc = dv * 2 > len(B); cup = (cv * 2 > len(B)) & disc
        per["vote"].append(score(disc, cup, tdisc, tcup))
        chk = per["lite0r"][-1]
        if abs(chk[1] - ev[stem]["cup_dice"]) > 0.02: print("check", s, stem, chk[1], ev[stem]["cup_dice"])
    res[s] = {k: [float(np.mean([x[i] for x in v])) for i in range(3)] for k, v in per.items()}
    res[s]["n"] = len(items)
    print(s, len(items))
    for k, (d, c, e) in res[s].items() if False else ((k, v) for k, v in res[s].items() if k != "n"):
        print(f"  {k:14s} disc {d:.4f} cup {c:.4f} vCDR MAE {e:.4f} criterion {(d+c)/2-e:.4f}")
tot = sum(res[s]["n"] for s in res)
for k in list(B) + ["vote"]:
    pooled = sum(res[s]["n"] * ((res[s][k][0] + res[s][k][1]) / 2 - res[s][k][2]) for s in res) / tot
    print(f"pooled {k:14s} {pooled:.4f}")
json.dump(res, open(f"{O}/ens.json", "w"), indent=1)
