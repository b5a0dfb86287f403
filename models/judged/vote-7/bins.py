# RIM-ONE held-out cup Dice for true vCDR < 0.4 and >= 0.4, each bundle and the vote (ens.py's scorer).
import importlib.util, numpy as np
# /work/ens/ens.py is models/judged/vote-7/recipe.py
spec = importlib.util.spec_from_file_location("e", "/work/ens/ens.py")
import sys; sys.argv = ["x"]
import io, contextlib
with contextlib.redirect_stdout(io.StringIO()):
    e = importlib.util.module_from_spec(spec); spec.loader.exec_module(e)
from PIL import Image
rows = {k: {"lo": [], "hi": []} for k in list(e.B) + ["vote"]}
for stem, img, t in e.sets["rimone-dl"]:
    td, tc = e.truth(t); vt = e.vh(tc) / e.vh(td)
    ms = {k: np.array(Image.open(f"/work/ens/pred/{k}/rimone-dl/{stem}.bmp").convert("L")) for k in e.B}
    dv = sum((m < 255).astype(int) for m in ms.values()); cv = sum((m == 0).astype(int) for m in ms.values())
    disc = dv * 2 > len(ms); cup = (cv * 2 > len(ms)) & disc
    b = "lo" if vt < 0.4 else "hi"
    for k, m in ms.items(): rows[k][b].append(e.dice(m == 0, tc))
    rows["vote"][b].append(e.dice(cup, tc))
for k, v in rows.items():
    print(f"{k:14s} small cups (n {len(v['lo'])}) {np.mean(v['lo']):.4f}  others (n {len(v['hi'])}) {np.mean(v['hi']):.4f}")
