"""Tests of scripts/compare-arms.py on hand-computed figures (run by .ci/run:
`python3 -m unittest discover -s scripts -p 'test_*.py'`)."""

import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare-arms.py")


def scores(folder, name, eyes):
    """`papilla evaluate --json`-shaped per-image results: (name, disc, cup, vCDR error)."""
    os.makedirs(folder, exist_ok=True)
    images = [{"name": n, "disc_dice": d, "cup_dice": c, "vcdr_error": e} for n, d, c, e in eyes]
    with open(os.path.join(folder, name), "w") as f:
        json.dump({"images": images}, f)


def compare(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


class CompareArms(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        p = self.p
        # Arm A: two runs in judge-run.sh's layout (OUT/scores/f32-SET.json); arm B: two runs
        # with the files directly in the folder. Sets "x" (2 eyes) and "y" (1 eye).
        scores(p("a1/scores"), "f32-x.json", [("e1", 0.9, 0.7, 0.1), ("e2", 0.8, 0.6, -0.1)])
        scores(p("a1/scores"), "f32-y.json", [("e3", 1.0, 0.8, 0.0)])
        scores(p("a2/scores"), "f32-x.json", [("e2", 0.8, 0.8, 0.0), ("e1", 0.9, 0.9, 0.0)])
        scores(p("a2/scores"), "f32-y.json", [("e3", 0.8, 0.8, 0.2)])
        scores(p("b1"), "f32-x.json", [("e1", 1.0, 1.0, 0.0), ("e2", 0.8, 0.6, 0.0)])
        scores(p("b1"), "f32-y.json", [("e3", 0.9, 0.9, 0.1)])
        scores(p("b2"), "f32-x.json", [("e1", 1.0, 0.8, 0.0), ("e2", 0.8, 0.6, 0.2)])
        scores(p("b2"), "f32-y.json", [("e3", 0.9, 0.9, 0.1)])

    def tearDown(self):
        self.tmp.cleanup()

    def p(self, name):
        return os.path.join(self.root, name)

    def run_json(self, *args):
        r = compare("--json", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_pairs_eyes_across_runs_and_keeps_run_noise_apart(self):
        p = self.p
        j = self.run_json("--a", p("a1"), p("a2"), "--b", p("b1"), p("b2"))
        # Criterion per eye = (disc + cup) / 2 - |error|. A: e1 (0.7, 0.9) e2 (0.6, 0.8)
        # e3 (0.9, 0.6); B: e1 (1.0, 0.9) e2 (0.7, 0.5) e3 (0.8, 0.8). Arm means per eye:
        # A 0.8 0.7 0.75, B 0.95 0.6 0.8; B - A 0.15 -0.1 0.05.
        pooled = j["pooled"]
        self.assertEqual(pooled["n"], 3)
        self.assertAlmostEqual(pooled["a"], 0.75, places=12)
        self.assertAlmostEqual(pooled["b"], 2.35 / 3, places=12)
        self.assertAlmostEqual(pooled["diff"], 0.1 / 3, places=12)
        dev = [(d - 0.1 / 3) ** 2 for d in (0.15, -0.1, 0.05)]
        self.assertAlmostEqual(pooled["diff_se_eyes"], math.sqrt(sum(dev) / 2) / math.sqrt(3),
                               places=12)
        # The runs' pooled criteria: A 2.2/3 and 2.3/3, B 2.5/3 and 2.2/3.
        for got, want in zip(pooled["a_runs"] + pooled["b_runs"], [2.2, 2.3, 2.5, 2.2]):
            self.assertAlmostEqual(got, want / 3, places=12)
        var = lambda x, y: (x - y) ** 2 / 2  # noqa: E731 (a sample variance of two)
        se_runs = math.sqrt(var(2.2 / 3, 2.3 / 3) / 2 + var(2.5 / 3, 2.2 / 3) / 2)
        self.assertAlmostEqual(pooled["diff_se_runs"], se_runs, places=12)
        self.assertAlmostEqual(j["sets"]["x"]["diff"], 0.025, places=12)
        self.assertAlmostEqual(j["sets"]["y"]["diff"], 0.05, places=12)
        self.assertIsNone(j["sets"]["y"]["diff_se_eyes"], "one eye has no spread")

    def test_one_run_an_arm_gives_no_run_to_run_error(self):
        j = self.run_json("--a", self.p("a1"), "--b", self.p("b1"))
        self.assertIsNone(j["pooled"]["diff_se_runs"])
        self.assertAlmostEqual(j["pooled"]["diff"], (0.3 + 0.1 - 0.1) / 3, places=12)
        text = compare("--a", self.p("a1"), "--b", self.p("b1")).stdout
        self.assertIn("pooled (3 eyes): A 0.7333", text)
        self.assertIn("B - A +0.1000 (SE over eyes 0.1155, over runs n/a)", text)

    def test_another_split_a_missing_set_or_form_is_refused_naming_the_folder(self):
        p = self.p
        scores(p("c1"), "f32-x.json", [("e1", 1.0, 1.0, 0.0), ("e9", 0.8, 0.6, 0.0)])
        scores(p("c1"), "f32-y.json", [("e3", 0.9, 0.9, 0.1)])
        scores(p("c2"), "f32-x.json", [("e1", 1.0, 1.0, 0.0), ("e2", 0.8, 0.6, 0.0)])
        for bad, what in [("c1", "held-out eyes of x differ"), ("c2", "sets ['x'] differ")]:
            r = compare("--a", p("a1"), "--b", p(bad))
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn(p(bad), r.stderr)
            self.assertIn(what, r.stderr)
        r = compare("--form", "int8", "--a", p("a1"), "--b", p("b1"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("no int8-SET.json", r.stderr)
        with open(os.path.join(p("b1"), "f32-x.json"), "w") as f:
            f.write("{not json")
        r = compare("--a", p("a1"), "--b", p("b1"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("f32-x.json: not a `papilla evaluate --json` report", r.stderr)


if __name__ == "__main__":
    unittest.main()
