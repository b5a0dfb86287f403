//! `papilla score` on generated submission folders, and against an independent Python
//! implementation of the REFUGE evaluation.

use std::path::Path;
use std::process::{Command, Output};

use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage};
use papilla_shared::synth::{SynthParams, generate};
use papilla_shared::{Class, LabelMap};
use serde_json::Value;

use crate::common::papilla;

fn save(labels: &LabelMap, path: &Path) {
    labels.to_grey().save(path).unwrap();
}

/// A ground truth and a family of predictions with known defects.
fn make_submission(root: &Path) -> (String, String) {
    let truth = root.join("truth");
    let pred = root.join("pred");
    std::fs::create_dir_all(&truth).unwrap();
    std::fs::create_dir_all(&pred).unwrap();
    for i in 0..8u32 {
        let s = generate(&SynthParams::random(120, 100, u64::from(i)));
        let t = s.labels;
        let name = format!("{:04}", i + 1);
        save(&t, &truth.join(format!("{name}.bmp")));
        let (w, h) = t.dimensions();
        let mut p = t.clone();
        match i {
            0 => {}                                             // perfect
            1 => p = LabelMap::filled(w, h, Class::Background), // empty
            2 => {
                // shifted right by 3 px
                p = LabelMap::filled(w, h, Class::Background);
                for y in 0..h {
                    for x in 3..w {
                        p.set(x, y, t.get(x - 3, y));
                    }
                }
            }
            3 => {
                // stray specks and a cup speck outside the disc
                p.set(2, 2, Class::Rim);
                p.set(5, 90, Class::Cup);
            }
            4 => {
                // cup grown into the rim by one pixel row everywhere
                for y in 1..h {
                    for x in 0..w {
                        if t.get(x, y) == Class::Cup && t.get(x, y - 1) == Class::Rim {
                            p.set(x, y - 1, Class::Cup);
                        }
                    }
                }
            }
            5 => {
                // no cup at all
                for c in p.classes_mut() {
                    if *c == Class::Cup {
                        *c = Class::Rim;
                    }
                }
            }
            6 => {
                // a hole in the cup
                let (cx, cy) = s.disc_centre;
                p.set(cx as u32, cy as u32, Class::Rim);
                p.set(cx as u32 + 1, cy as u32, Class::Rim);
            }
            _ => {
                // written as RGB grey: the decoder must read it the same
                let grey = p.to_grey();
                let rgb = RgbImage::from_fn(w, h, |x, y| {
                    let v = grey.get_pixel(x, y).0[0];
                    Rgb([v, v, v])
                });
                DynamicImage::ImageRgb8(rgb).save(pred.join(format!("{name}.bmp"))).unwrap();
                continue;
            }
        }
        save(&p, &pred.join(format!("{name}.bmp")));
    }
    (pred.display().to_string(), truth.display().to_string())
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn perfect_and_empty_predictions_have_the_expected_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, truth) = make_submission(dir.path());
    let v = json_of(&papilla(&["score", "--pred", &pred, "--truth", &truth, "--json"]));
    assert_eq!(v["n"], 8);
    let images = v["images"].as_array().unwrap();
    assert_eq!(images[0]["name"], "0001");
    assert_eq!(images[0]["disc_dice"], 1.0);
    assert_eq!(images[0]["vcdr_error"], 0.0);
    assert_eq!(images[1]["disc_dice"], 0.0);
    assert_eq!(images[1]["cup_dice"], 0.0);
    assert_eq!(images[1]["vcdr"], 0.0);
    assert_eq!(images[5]["cup_dice"], 0.0);
    assert_eq!(images[5]["disc_dice"], 1.0);
    assert_eq!(images[7]["disc_dice"], 1.0, "RGB grey BMP reads like grey");
    let mean: f64 = images.iter().map(|i| i["disc_dice"].as_f64().unwrap()).sum::<f64>() / 8.0;
    assert!((v["disc_dice"].as_f64().unwrap() - mean).abs() < 1e-12);
}

#[test]
fn table_and_csv_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, truth) = make_submission(dir.path());
    let csv = dir.path().join("scores.csv");
    let out =
        papilla(&["score", "--pred", &pred, "--truth", &truth, "--csv", csv.to_str().unwrap()]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("8 images\n"), "{table}");
    assert!(table.contains("Dice disc") && table.contains("vCDR MAE"), "{table}");
    let rows = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(lines.len(), 9);
    assert!(lines[0].starts_with("name,disc_dice,cup_dice"));
    assert!(lines[1].starts_with("0001,1,1,"), "{}", lines[1]);
}

#[test]
fn missing_mis_sized_and_foreign_predictions_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, truth) = make_submission(dir.path());
    let pred_dir = Path::new(&pred);

    std::fs::remove_file(pred_dir.join("0003.bmp")).unwrap();
    let out = papilla(&["score", "--pred", &pred, "--truth", &truth]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0003.bmp") && err.contains("no prediction"), "{err}");

    GrayImage::from_pixel(60, 50, Luma([0])).save(pred_dir.join("0003.bmp")).unwrap();
    let out = papilla(&["score", "--pred", &pred, "--truth", &truth]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("0003.bmp") && err.contains("60x50") && err.contains("120x100"), "{err}");

    RgbImage::from_pixel(120, 100, Rgb([255, 0, 0])).save(pred_dir.join("0003.bmp")).unwrap();
    let out = papilla(&["score", "--pred", &pred, "--truth", &truth]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0003.bmp") && err.contains("not a grey level"), "{err}");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = papilla(&["score", "--pred", &pred, "--truth", empty.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no ground-truth masks"), "{err}");
}

/// The Python interpreter for cross-checks: `PAPILLA_PYTHON`, else `python3`. Returns `None`
/// (skip) only outside CI when numpy or Pillow is missing; in CI a missing package fails.
fn python_with_numpy() -> Option<String> {
    let python = std::env::var("PAPILLA_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import numpy, PIL"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let required =
        std::env::var_os("CI").is_some() || std::env::var_os("PAPILLA_REQUIRE_PYTHON").is_some();
    assert!(!required, "{python} lacks numpy/Pillow: pip install -r scripts/requirements-test.txt");
    eprintln!(
        "skipped: {python} lacks numpy/Pillow (pip install -r scripts/requirements-test.txt)"
    );
    None
}

#[test]
fn agrees_with_an_independent_python_implementation_of_refuge() {
    let Some(python) = python_with_numpy() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (pred, truth) = make_submission(dir.path());
    let ours = json_of(&papilla(&["score", "--pred", &pred, "--truth", &truth, "--json"]));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/refuge_eval.py");
    let theirs = Command::new(python).args([script, &pred, &truth]).output().unwrap();
    let theirs = json_of(&theirs);
    assert_eq!(ours["n"], theirs["n"]);
    for key in ["disc_dice", "cup_dice", "vcdr_mae"] {
        let (a, b) = (ours[key].as_f64().unwrap(), theirs[key].as_f64().unwrap());
        assert!((a - b).abs() < 1e-12, "{key}: papilla {a} vs reference {b}");
    }
    let (oi, ti) = (ours["images"].as_array().unwrap(), theirs["images"].as_array().unwrap());
    for (o, t) in oi.iter().zip(ti) {
        assert_eq!(o["name"], t["name"]);
        for key in ["disc_dice", "cup_dice", "vcdr", "vcdr_true", "vcdr_error"] {
            let (a, b) = (o[key].as_f64().unwrap(), t[key].as_f64().unwrap());
            assert!((a - b).abs() < 1e-12, "{} {key}: papilla {a} vs reference {b}", o["name"]);
        }
    }
    // The defects must actually move the scores, or the comparison proves little.
    let distinct: std::collections::BTreeSet<String> =
        oi.iter().map(|o| format!("{:.6}", o["cup_dice"].as_f64().unwrap())).collect();
    assert!(distinct.len() >= 5, "{distinct:?}");
}
