//! `scripts/judge-run.sh`, the held-out judgement every model since 0.8.0 was chosen by, end to
//! end on synthetic folders: its choices are the best-scoring ones, the bundle it exports carries
//! them, and the pooled score weighs each camera by its held-out eyes.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{TINY_RUN, gamma_folder, ok, papilla, rimone_folder};

fn judge(args: &[&Path], env: &[(&str, &str)]) -> Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut c = Command::new("bash");
    c.arg(repo.join("scripts/judge-run.sh"))
        .args(args)
        .env("PAPILLA", env!("CARGO_BIN_EXE_papilla"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("runs bash")
}

fn criterion(j: &Value) -> f64 {
    (j["disc_dice"].as_f64().unwrap() + j["cup_dice"].as_f64().unwrap()) / 2.0
        - j["vcdr_mae"].as_f64().unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The first key (in the order tried) with the highest value.
fn argmax(scores: &Value, order: &[&str]) -> f64 {
    let mut best = order[0];
    for k in order {
        if scores[k].as_f64().unwrap() > scores[best].as_f64().unwrap() {
            best = k;
        }
    }
    best.parse().unwrap()
}

#[test]
fn judge_run_chooses_on_held_out_eyes_and_pools_cameras_by_their_eyes() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let train = gamma_folder(&data.join("refuge512"), "train", 12, 0);
    let rimone = rimone_folder(&data, 8);
    let (loc, seg, out) = (root.path().join("loc"), root.path().join("seg"), root.path().join("j"));
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let tiny = [&TINY_RUN[..], &["--epochs", "2", "--checkpoint-every", "0"]].concat();
    ok(&papilla(&[&["train", "--data", &s(&train), "--out", &s(&loc)][..], &tiny].concat()));
    let seg_args = ["train", "--data", &s(&train), "--data", &s(&rimone), "--out", &s(&seg)];
    let extra = ["--roi-context", "3", "--val-fraction", "0.3"];
    ok(&papilla(&[&seg_args[..], &tiny, &extra].concat()));

    let kept = root.path().join("kept");
    let env = [
        ("CROPS", "2.0 3.0"),
        ("PADS", "1.6 2.0"),
        ("GATE", "-5"),
        ("THREADS", "1"),
        ("KEEP", kept.to_str().unwrap()),
    ];
    let run = judge(&[&seg, &loc, &data, &out], &env);
    let text = format!("{}{}", ok(&run), String::from_utf8_lossy(&run.stderr));
    assert!(text.contains("chosen crop: ") && text.contains("PASS"), "{text}");
    let j = read_json(&out.join("judge.json"));

    // The choices are the best of what was tried (the earlier one on a tie).
    assert_eq!(j["crop"].as_f64().unwrap(), argmax(&j["crops"], &["2.0", "3.0"]), "{j}");
    assert_eq!(j["pad"].as_f64().unwrap(), argmax(&j["pads"], &["1.6", "2.0"]), "{j}");

    // Every held-out eye is scored once, in its own camera's set; no Zeiss folder, no Zeiss set.
    let held = std::fs::read_to_string(seg.join("held-out.txt")).unwrap();
    let held_rimone = held.lines().filter(|l| l.starts_with("rimone-dl/")).count() as u64;
    assert!(held_rimone > 0 && held_rimone < held.lines().count() as u64, "{held}");
    let sets = &j["f32"]["sets"];
    assert_eq!(sets.as_object().unwrap().len(), 2, "{j}");
    assert_eq!(sets["rimone-dl"]["n"].as_u64().unwrap(), held_rimone, "{j}");
    assert_eq!(j["f32"]["n"].as_u64().unwrap(), held.lines().count() as u64, "{j}");
    let pooled: f64 = ["refuge512", "rimone-dl"]
        .iter()
        .map(|k| sets[k]["n"].as_f64().unwrap() * sets[k]["criterion"].as_f64().unwrap())
        .sum::<f64>()
        / j["f32"]["n"].as_f64().unwrap();
    assert!((j["f32"]["pooled"].as_f64().unwrap() - pooled).abs() < 1e-12, "{j}");

    // The candidate bundle carries both choices: scored alone, each set gives what the choice
    // was made on (the padding's score covers only RIM-ONE here, as Zeiss is absent).
    let scores = out.join("scores");
    let cand = out.join("cand-f32.papilla");
    let alone = papilla(&[
        "evaluate",
        "--model",
        &s(&cand),
        "--data",
        &s(&rimone),
        "--rimone-split",
        "train",
        "--disc-centred",
        "--held-out-of",
        &s(&seg),
        "--json",
        "--threads",
        "1",
    ]);
    let alone: Value = serde_json::from_str(&ok(&alone)).unwrap();
    let chosen_pad = read_json(&scores.join(format!("pad-{}.json", pad_name(&j))));
    assert_eq!(criterion(&alone), criterion(&chosen_pad), "the bundle's own padding");
    // judge.json's criteria are Python's arithmetic on the same JSON numbers.
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(criterion(&alone), sets["rimone-dl"]["criterion"].as_f64().unwrap()), "{j}");
    let chosen_crop = read_json(&scores.join(format!("crop-{}.json", crop_name(&j))));
    assert!(
        close(sets["refuge512"]["criterion"].as_f64().unwrap(), criterion(&chosen_crop)),
        "{j}"
    );

    // KEEP holds the bundle's per-set scores, judge.json and the run's held-out eyes, byte for
    // byte; only the forms judged (no INT8 here, so no int8 files).
    let mut names: Vec<String> = std::fs::read_dir(&kept)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let want = ["f32-refuge512.json", "f32-rimone-dl.json", "held-out.txt", "judge.json"];
    assert_eq!(names, want, "{}", text);
    let same = |a: &Path, b: &Path| std::fs::read(a).unwrap() == std::fs::read(b).unwrap();
    assert!(same(&kept.join("held-out.txt"), &seg.join("held-out.txt")));
    assert!(same(&kept.join("judge.json"), &out.join("judge.json")));
    for f in &want[..2] {
        assert!(same(&kept.join(f), &scores.join(f)), "{f}");
    }
    // A folder that already holds a judgement is refused before any work, and left as it was.
    let before = std::fs::read(kept.join("judge.json")).unwrap();
    let again = [("CROPS", "2.0"), ("PADS", "1.6"), ("KEEP", kept.to_str().unwrap())];
    let run = judge(&[&seg, &loc, &data, &root.path().join("j3")], &again);
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("already holds a judgement") && err.contains("kept"), "{err}");
    assert!(!root.path().join("j3").exists(), "nothing judged");
    assert_eq!(std::fs::read(kept.join("judge.json")).unwrap(), before);
    // A run without held-out.txt (from before it) cannot be kept: its eyes could not be paired.
    let old_run = root.path().join("old-run");
    std::fs::create_dir(&old_run).unwrap();
    let fresh = root.path().join("kept-old");
    let env = [("KEEP", fresh.to_str().unwrap())];
    let run = judge(&[&old_run, &loc, &data, &root.path().join("j4")], &env);
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("KEEP needs") && err.contains("held-out.txt"), "{err}");
    assert!(!fresh.exists() && !root.path().join("j4").exists());

    // A gate the run misses fails the script, and its judgement is still kept; a missing run
    // is named.
    let kept_fail = root.path().join("kept-fail");
    let env =
        [("CROPS", "2.0"), ("PADS", "1.6"), ("GATE", "5"), ("KEEP", kept_fail.to_str().unwrap())];
    let run = judge(&[&seg, &loc, &data, &root.path().join("j2")], &env);
    assert_eq!(run.status.code(), Some(4), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("FAIL"));
    assert!(
        kept_fail.join("judge.json").is_file() && kept_fail.join("f32-rimone-dl.json").is_file()
    );
    let missing = root.path().join("no-such-run");
    let run = judge(&[&missing, &loc, &data, &out], &[]);
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("no-such-run") && err.contains("no such folder"), "{err}");
}

fn crop_name(j: &Value) -> String {
    format!("{:.1}", j["crop"].as_f64().unwrap())
}

fn pad_name(j: &Value) -> String {
    format!("{:.1}", j["pad"].as_f64().unwrap())
}
