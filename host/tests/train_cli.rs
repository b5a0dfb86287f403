//! `papilla train`, `evaluate` and `predict` end to end on synthetic folders, on the CPU.

use std::process::Command;

use serde_json::Value;

use crate::common::{TINY_RUN, gamma_folder, ok, papilla};

#[test]
fn a_small_unet_learns_synthetic_discs_and_the_run_can_be_used() {
    let root = tempfile::tempdir().unwrap();
    let train = gamma_folder(root.path(), "train", 24, 0);
    let test = gamma_folder(root.path(), "test", 6, 1000);
    let run = root.path().join("run");
    let (train_s, test_s, run_s) =
        (train.to_str().unwrap(), test.to_str().unwrap(), run.to_str().unwrap());
    let common = [&TINY_RUN[..], &["--val-fraction", "0.2", "--checkpoint-every", "4"]].concat();
    let mut args = vec!["train", "--data", train_s, "--out", run_s, "--epochs", "8"];
    args.extend(common);
    let out = papilla(&args);
    ok(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("24 samples loaded"), "{log}");
    // Piped, progress is plain lines: no carriage returns or escape codes, a line every tenth
    // of an epoch (5 batches here) and the epoch's summary.
    assert!(!log.contains('\r') && !log.contains('\u{1b}'), "{log:?}");
    assert!(log.contains("epoch 8/8 [5/5] loss "), "{log}");
    assert!(log.contains("epoch 8: loss "), "{log}");
    for f in [
        "config.json",
        "state.json",
        "metrics.csv",
        "curves.png",
        "index.html",
        "model-best.bpk",
        "model-last.bpk",
        "optim-last.bpk",
        "model-epoch-0004.bpk",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9, "{csv}");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["hardware"][0]["backend"], "flex", "{state}");
    assert!(state["hardware"][0]["threads"].as_u64().unwrap() >= 1, "{state}");

    // Resume extends the same run.
    let out = papilla(&["train", "--data", train_s, "--out", run_s, "--epochs", "24", "--resume"]);
    ok(&out);
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 25, "{csv}");
    let rows: Vec<Vec<f64>> =
        csv.lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.last().unwrap()[0], 24.0);
    assert!(rows.last().unwrap()[2] < rows[0][2], "training loss went down: {csv}");
    let best_val_disc = rows.iter().map(|r| r[3]).fold(0.0, f64::max);
    assert!(best_val_disc >= 0.9, "validation disc Dice {best_val_disc}: {csv}");

    // The run's page shows the curves and every epoch, newest first.
    let page = std::fs::read_to_string(run.join("index.html")).unwrap();
    assert!(page.contains("epoch 24 of 24") && page.contains("<img src=\"curves.png\""), "{page}");
    assert_eq!(page.matches("<tr><td>").count() + page.matches("<tr class").count(), 24, "{page}");
    if let Some(dom) = crate::common::render_dom(&run.join("index.html")) {
        assert!(dom.contains("<table id=\"epochs\">"), "{dom}");
        assert!(dom.contains("data-images-loaded=\"1\""), "curves.png did not load: {dom}");
    }

    // Evaluate on held-out images.
    let report_dir = root.path().join("report");
    let out = papilla(&[
        "evaluate",
        "--model",
        run_s,
        "--data",
        test_s,
        "--json",
        "--report",
        report_dir.to_str().unwrap(),
        "--worst",
        "2",
    ]);
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["n"], 6);
    assert!(v["disc_dice"].as_f64().unwrap() >= 0.9, "{v}");
    assert!(v["cup_dice"].as_f64().unwrap() > 0.3, "{v}");
    assert!(v["vcdr_mae"].as_f64().unwrap() < 0.3, "{v}");
    let mut files: Vec<String> = std::fs::read_dir(&report_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 9, "page, json, csv, 4 plots, 2 overlays: {files:?}");
    for f in ["index.html", "report.json", "images.csv", "vcdr_scatter.png"] {
        assert!(files.contains(&f.to_owned()), "{f}: {files:?}");
    }
    assert!(files[0].starts_with("01_") && files[1].starts_with("02_"), "{files:?}");
    // The page, as a browser renders it: every image decoded, the tables there.
    if let Some(dom) = crate::common::render_dom(&report_dir.join("index.html")) {
        assert!(dom.contains("data-images-total=\"6\""), "{dom}");
        assert!(dom.contains("data-images-loaded=\"6\""), "an image did not load: {dom}");
        for id in ["summary", "referral", "bins"] {
            assert!(dom.contains(&format!("<table id=\"{id}\">")), "{id}: {dom}");
        }
    }
    // A release is a comparison: the same model against its own report.
    let compare_dir = root.path().join("compare");
    let out = papilla(&[
        "evaluate",
        "--model",
        run_s,
        "--data",
        test_s,
        "--report",
        compare_dir.to_str().unwrap(),
        "--compare",
        report_dir.join("report.json").to_str().unwrap(),
    ]);
    let table = ok(&out);
    assert!(table.contains("Dice disc"), "the table on stdout without --json: {table}");
    let page = std::fs::read_to_string(compare_dir.join("index.html")).unwrap();
    assert!(page.contains("compared with <b>report</b>"), "{page}");
    let bad = papilla(&[
        "evaluate",
        "--model",
        run_s,
        "--data",
        test_s,
        "--report",
        compare_dir.to_str().unwrap(),
        "--compare",
        test_s,
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains(test_s), "{err}");

    // A bundle scored on the eyes the run held out: the eyes its own validation scores, and
    // only those (run-time settings are chosen there, never on a test split).
    let bundle = root.path().join("run.papilla");
    let bundle_s = bundle.to_str().unwrap();
    ok(&papilla(&["export", "--checkpoint", run_s, "--out", bundle_s]));
    let own: Value =
        serde_json::from_str(&ok(&papilla(&["evaluate", "--model", run_s, "--json"]))).unwrap();
    let held_out = ["evaluate", "--model", bundle_s, "--data", train_s, "--held-out-of", run_s];
    let held: Value =
        serde_json::from_str(&ok(&papilla(&[&held_out[..], &["--json"]].concat()))).unwrap();
    let names = |v: &Value| {
        let mut n: Vec<String> = v["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(held["n"], 5, "a fifth of 24 held out: {held}");
    assert_eq!(names(&held), names(&own));
    // The held-out eyes are recorded when the run starts: photographs added to its folder later
    // (a seeded split drawn again would hold out 6 of 28, others) change neither set.
    let recorded = std::fs::read_to_string(run.join("held-out.txt")).unwrap();
    let mut recorded: Vec<String> = recorded.lines().map(str::to_owned).collect();
    recorded.sort();
    assert_eq!(recorded, names(&own), "held-out.txt");
    gamma_folder(root.path(), "train", 4, 24);
    let later: Value =
        serde_json::from_str(&ok(&papilla(&[&held_out[..], &["--json"]].concat()))).unwrap();
    assert_eq!(names(&later), names(&own), "--held-out-of after the folder grew");
    let own_later: Value =
        serde_json::from_str(&ok(&papilla(&["evaluate", "--model", run_s, "--json"]))).unwrap();
    assert_eq!(names(&own_later), names(&own), "the run's own validation after it grew");
    // A resume then draws another split: it keeps only the eyes held out both times, and says so.
    let out = papilla(&["train", "--data", train_s, "--out", run_s, "--epochs", "24", "--resume"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(&out);
    assert!(log.contains("the data folders changed since this run started"), "{log}");
    let kept = std::fs::read_to_string(run.join("held-out.txt")).unwrap();
    assert!(kept.lines().all(|n| recorded.iter().any(|r| r == n)), "{kept} within {recorded:?}");
    for i in 24..28 {
        std::fs::remove_file(train.join(format!("fundus color images/{i:04}.jpg"))).unwrap();
        std::fs::remove_file(train.join(format!("Disc_Cup_Masks/{i:04}.bmp"))).unwrap();
    }
    let (a, b) = (held["disc_dice"].as_f64().unwrap(), own["disc_dice"].as_f64().unwrap());
    assert!((a - b).abs() < 0.01, "bundle {a} and run {b} on the same eyes");
    let bad = papilla(&["evaluate", "--model", bundle_s, "--data", test_s, "--held-out-of", run_s]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("none of the eyes in") && err.contains(test_s));
    let bad = papilla(&["evaluate", "--model", run_s, "--data", test_s, "--held-out-of", run_s]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("is a run directory"), "{err}");
    let bad =
        papilla(&["evaluate", "--model", bundle_s, "--data", test_s, "--held-out-of", test_s]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("config.json"), "not a run: {err}");

    // Predict writes a submission whose score matches evaluate.
    let sub = root.path().join("sub");
    let zip = root.path().join("sub.zip");
    ok(&papilla(&[
        "predict",
        "--model",
        run_s,
        "--input",
        test_s,
        "--out",
        sub.to_str().unwrap(),
        "--zip",
        zip.to_str().unwrap(),
    ]));
    let mask = image::open(sub.join("1000.bmp")).unwrap().to_luma8();
    assert_eq!(mask.dimensions(), (96, 96), "original size");
    assert!(mask.pixels().all(|p| [0, 128, 255].contains(&p.0[0])));
    assert!(std::fs::metadata(&zip).unwrap().len() > 100);
    let scored: Value = serde_json::from_str(&ok(&papilla(&[
        "score",
        "--pred",
        sub.to_str().unwrap(),
        "--truth",
        test.join("Disc_Cup_Masks").to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    assert!(
        (scored["disc_dice"].as_f64().unwrap() - v["disc_dice"].as_f64().unwrap()).abs() < 1e-9
    );

    // A whole-photograph run has no crops for --roi-context to change.
    let resume = ["train", "--data", train_s, "--out", run_s, "--resume"];
    let out = papilla(&[&resume[..], &["--epochs", "25", "--roi-context", "2"]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run") && err.contains("whole photographs"), "{err}");

    // A warm restart: a new cycle from epoch 24, with the nested loss and vertical flips.
    let restart =
        ["--epochs", "26", "--restart-lr", "0.002", "--loss", "nested", "--vflip", "0.25"];
    ok(&papilla(&[&resume[..], &restart[..]].concat()));
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["cycle_start"], 24);
    assert_eq!(config["lr"], 0.002);
    assert_eq!(config["loss"], "NestedDice");
    assert_eq!(config["augment"]["vflip"], 0.25, "was 0 (--no-augment)");
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let lr: Vec<f64> =
        csv.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    assert_eq!(lr.len(), 26, "{csv}");
    assert!(lr[23] < 1e-5, "the first cycle ended at zero: {csv}");
    assert!((lr[24] - 0.002).abs() < 1e-9, "warmed up again to the peak in epoch 25: {csv}");
    assert!(lr[25] < 0.0005, "and decayed in epoch 26: {csv}");

    // Progressive resizing: the same weights go on at 96 px, and what they learnt at 64 carries.
    let resize = ["--epochs", "28", "--restart-lr", "0.002", "--resize", "96"];
    let out = papilla(&[&resume[..], &resize[..]].concat());
    ok(&out);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (config["preprocess"]["width"].clone(), config["preprocess"]["height"].clone()),
        (96.into(), 96.into())
    );
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let disc: Vec<f64> =
        csv.lines().skip(1).map(|l| l.split(',').nth(3).unwrap().parse().unwrap()).collect();
    assert_eq!(disc.len(), 28, "{csv}");
    assert!(disc[26] >= 0.9, "the first epoch at 96 px still finds the disc: {csv}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("96x96 px"), "{log}");
    let bad = papilla(&[&resume[..], &["--epochs", "29", "--resize", "90"]].concat());
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("90") && err.contains("multiple of 4"), "{err}");
}

#[test]
fn bad_invocations_fail_with_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let empty = root.path().join("nothing");
    std::fs::create_dir_all(&empty).unwrap();
    let out = papilla(&[
        "train",
        "--data",
        empty.to_str().unwrap(),
        "--out",
        root.path().join("r").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a known data layout") && err.contains("nothing"), "{err}");

    let out = papilla(&[
        "evaluate",
        "--model",
        empty.to_str().unwrap(),
        "--data",
        empty.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("config.json"), "{err}");

    let data = gamma_folder(root.path(), "d", 3, 0);
    let out = papilla(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        root.path().join("r2").to_str().unwrap(),
        "--size",
        "60",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a multiple of 16"), "{err}");
}

#[test]
fn ctrl_c_leaves_a_usable_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let train = gamma_folder(root.path(), "train", 8, 0);
    let run = root.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_papilla"))
        .args(["train", "--data", train.to_str().unwrap(), "--out", run.to_str().unwrap()])
        .args([
            "--size",
            "32",
            "--depth",
            "1",
            "--base-channels",
            "4",
            "--epochs",
            "100000",
            "--val-fraction",
            "0.25",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !run.join("state.json").exists() {
        assert!(std::time::Instant::now() < deadline, "no epoch finished within 60 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130), "interrupted runs exit with 130");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    assert!(state["epoch"].as_u64().unwrap() >= 1);
    // The checkpoint loads: evaluating it works.
    let out = papilla(&[
        "evaluate",
        "--model",
        run.to_str().unwrap(),
        "--data",
        train.to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["n"], 8);
}

#[test]
fn init_seed_changes_the_weights_but_not_the_held_out_eyes() {
    let root = tempfile::tempdir().unwrap();
    let train = gamma_folder(root.path(), "train", 8, 0);
    let tiny = ["--size", "32", "--depth", "1", "--base-channels", "4", "--epochs", "1"];
    let run = |name: &str, extra: &[&str]| {
        let dir = root.path().join(name);
        let args = [
            &["train", "--data", train.to_str().unwrap(), "--out", dir.to_str().unwrap()][..],
            &tiny[..],
            &["--val-fraction", "0.25"][..],
            extra,
        ]
        .concat();
        ok(&papilla(&args));
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        (read("held-out.txt"), read("model-last.bpk"), read("config.json"))
    };
    let (held_a, weights_a, _) = run("a", &[]);
    let (held_b, weights_b, config_b) = run("b", &["--init-seed", "7"]);
    assert_eq!(held_a, held_b, "the same --seed holds out the same eyes");
    assert_eq!(String::from_utf8_lossy(&held_a).lines().count(), 2, "a quarter of 8");
    assert_ne!(weights_a, weights_b, "another --init-seed starts from other weights");
    let config: Value = serde_json::from_slice(&config_b).unwrap();
    assert_eq!((config["seed"].as_u64(), config["init_seed"].as_u64()), (Some(42), Some(7)));
}

#[test]
fn folder_repeat_draws_one_folders_eyes_more_often_and_refuses_an_unknown_folder() {
    let root = tempfile::tempdir().unwrap();
    let a = gamma_folder(root.path(), "a", 4, 0);
    let b = gamma_folder(root.path(), "b", 4, 100);
    let tiny = ["--size", "32", "--depth", "1", "--base-channels", "4", "--epochs", "1"];
    let train = |name: &str, repeat: &str| {
        let dir = root.path().join(name);
        let args = [
            &["train", "--data", a.to_str().unwrap(), "--data", b.to_str().unwrap()][..],
            &["--out", dir.to_str().unwrap(), "--val-fraction", "0.25"][..],
            &tiny[..],
            &["--folder-repeat", repeat][..],
        ]
        .concat();
        let out = papilla(&args);
        (dir, out)
    };
    let (dir, out) = train("run", "b=3");
    ok(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    let held = std::fs::read_to_string(dir.join("held-out.txt")).unwrap();
    let b_trained = 4 - held.lines().filter(|l| l.starts_with("b/")).count();
    assert_eq!(held.lines().count(), 2, "{held}");
    assert!(log.contains(&format!("b: {b_trained} eyes, each drawn 3 times as often")), "{log}");
    let draws = 6 + 2 * b_trained;
    assert!(log.contains(&format!("{draws} draws an epoch from 6 eyes")), "{log}");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["folder_repeat"], serde_json::json!([{"folder": "b", "times": 3}]));

    let (dir, out) = train("typo", "rimone=2");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--folder-repeat rimone") && err.contains("they are: a, b"), "{err}");
    assert!(!dir.join("config.json").exists(), "nothing trained");
}
