#!/usr/bin/env python3
"""Compares two arms of held-out judgements (scripts/judge-run.sh outputs), eye by eye.

One training run of a recipe is one draw: two draws of 0.8.1's recipe differ by 0.0065 in the
pooled held-out criterion (MODEL_CARD.md, "Run-to-run noise, measured"), more than the gains
candidates were asked to show. So a recipe change is judged as arms of runs (seeds), and the
two kinds of noise are kept apart:

- eye sampling: each eye's criterion is averaged over its arm's runs, and the arms' difference
  is taken eye by eye (the same held-out eyes in every run), with its standard error over eyes;
- run to run: the spread of the runs' pooled criteria within each arm, and where both arms have
  two runs or more, the standard error of the difference of the arms' means from it.

    scripts/compare-arms.py [--form f32|int8] [--json] --a OUT [OUT ...] --b OUT [OUT ...]

Each OUT is a judge-run.sh output folder (its scores/FORM-SET.json, `papilla evaluate --json`
with per-image results) or a folder holding those files directly. The criterion is the
trainer's and judge-run.sh's, per eye: (disc Dice + cup Dice) / 2 - |vCDR error|, whose mean
over a set is the set's criterion; pooled = every eye of every set, equally weighted. Every OUT
must hold the same sets and, per set, the same eyes; otherwise it names the folder and exits 2.
"""

import argparse
import glob
import json
import math
import os
import statistics
import sys
from statistics import fmean as mean


class Refused(Exception):
    pass


def eye_criteria(path):
    try:
        with open(path) as f:
            report = json.load(f)
        return {im["name"]: (im["disc_dice"] + im["cup_dice"]) / 2 - abs(im["vcdr_error"])
                for im in report["images"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Refused(f"{path}: not a `papilla evaluate --json` report with per-image results ({e})")


def load_run(out, form):
    scores = os.path.join(out, "scores")
    folder = scores if os.path.isdir(scores) else out
    files = sorted(glob.glob(os.path.join(folder, f"{form}-*.json")))
    if not files:
        raise Refused(f"{out}: no {form}-SET.json scores (a judge-run.sh output folder?)")
    return {os.path.basename(p)[len(form) + 1:-5]: eye_criteria(p) for p in files}


def check_same_eyes(out, run, first_out, first):
    """Refuses a run whose sets or held-out eyes are not the first run's."""
    if sorted(run) != sorted(first):
        raise Refused(f"{out}: sets {sorted(run)} differ from {first_out}'s {sorted(first)}")
    for name, eyes in run.items():
        if set(eyes) != set(first[name]):
            odd = sorted(set(eyes) ^ set(first[name]))
            raise Refused(f"{out}: held-out eyes of {name} differ from {first_out}'s "
                          f"({len(odd)} not in both, e.g. {odd[0]}): another split")


def summary(runs_a, runs_b, names):
    """Arms' criteria and their difference (b - a) over the eyes of `names` (set, eye) pairs."""
    def per_eye(runs):
        return [mean([run[s][e] for run in runs]) for s, e in names]

    def run_scores(runs):
        return [mean([run[s][e] for s, e in names]) for run in runs]

    a, b = per_eye(runs_a), per_eye(runs_b)
    diff = [y - x for x, y in zip(a, b)]
    n = len(diff)
    ra, rb = run_scores(runs_a), run_scores(runs_b)
    out = {
        "n": n,
        "a": mean(a), "b": mean(b),
        "a_runs": ra, "b_runs": rb,
        "diff": mean(diff),
        "diff_se_eyes": statistics.stdev(diff) / math.sqrt(n) if n > 1 else None,
        "diff_se_runs": None,
    }
    if len(ra) > 1 and len(rb) > 1:
        out["diff_se_runs"] = math.sqrt(statistics.variance(ra) / len(ra)
                                        + statistics.variance(rb) / len(rb))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--form", default="f32", choices=["f32", "int8"])
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--a", nargs="+", required=True, metavar="OUT", help="arm A's runs")
    ap.add_argument("--b", nargs="+", required=True, metavar="OUT", help="arm B's runs")
    args = ap.parse_args()
    try:
        runs = [load_run(out, args.form) for out in args.a + args.b]
        for out, run in zip(args.a + args.b, runs):
            check_same_eyes(out, run, args.a[0], runs[0])
    except Refused as e:
        print(f"compare-arms.py: {e}", file=sys.stderr)
        return 2
    runs_a, runs_b = runs[:len(args.a)], runs[len(args.a):]
    sets = sorted(runs_a[0])
    result = {"form": args.form, "a": args.a, "b": args.b, "sets": {}}
    for s in sets:
        result["sets"][s] = summary(runs_a, runs_b, [(s, e) for e in sorted(runs_a[0][s])])
    everything = [(s, e) for s in sets for e in sorted(runs_a[0][s])]
    result["pooled"] = summary(runs_a, runs_b, everything)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    def se(v):
        return "n/a" if v is None else f"{v:.4f}"

    def runs(v):
        return " ".join(f"{x:.4f}" for x in v)

    print(f"{args.form}: arm A {len(runs_a)} run(s), arm B {len(runs_b)} run(s); criterion per "
          f"eye, each eye averaged over its arm's runs; B - A paired by eye")
    for name, r in list(result["sets"].items()) + [("pooled", result["pooled"])]:
        print(f"{name} ({r['n']} eyes): A {r['a']:.4f} [{runs(r['a_runs'])}], "
              f"B {r['b']:.4f} [{runs(r['b_runs'])}]; B - A {r['diff']:+.4f} "
              f"(SE over eyes {se(r['diff_se_eyes'])}, over runs {se(r['diff_se_runs'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
