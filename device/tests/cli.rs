//! The binary's commands and exit codes.

use std::process::Command;

use crate::common::*;

#[test]
fn config_errors_exit_2_and_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("device.toml");
    std::fs::write(&cfg, "[camera]\nsorce = \"folder\"\n").unwrap();
    let out = device_command().args(["status", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("device.toml") && err.contains("sorce"), "{err}");
    // No trusted key and unsigned not allowed: a config error that says what to do.
    std::fs::write(&cfg, format!("root = {:?}\n", tmp.path().display().to_string())).unwrap();
    let out = device_command()
        .args(["install-model", "x.papilla", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("trust.keys is empty"));
    // A key with a multi-byte character (64 bytes, 63 characters): a config error, not a panic.
    let key = format!("a\u{e9}{}", "a".repeat(61));
    std::fs::write(&cfg, format!("[trust]\nkeys = [{key:?}]\n")).unwrap();
    let out = device_command().args(["selftest", "--config"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not 64 hex digits") && !err.contains("panicked"), "{err}");
}

#[test]
fn status_install_export_and_selftest_work_together() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, cam) = (tmp.path().join("root"), tmp.path().join("cam"));
    std::fs::create_dir_all(&cam).unwrap();
    std::fs::write(cam.join("a.jpg"), synthetic_jpeg(3, 400, 400)).unwrap();
    std::fs::write(cam.join("b.jpg"), b"").unwrap();
    let cfg = tmp.path().join("device.toml");
    std::fs::write(&cfg, config(&root, &cam, "")).unwrap();
    let run =
        |args: &[&str]| device_command().args(args).arg("--config").arg(&cfg).output().unwrap();
    // Nothing installed yet.
    assert_eq!(run(&["status"]).status.code(), Some(3));
    assert_eq!(run(&["run"]).status.code(), Some(3));
    let out = device_command()
        .arg("install-model")
        .arg(test_model())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(run(&["selftest"]).status.success());
    // The replay: one good exam, one empty file (exit 1: an exam failed).
    let out = run(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let csv_out = run(&["export-results", "--since", "2000-01-01"]);
    assert!(csv_out.status.success());
    let text = String::from_utf8_lossy(&csv_out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,time,source,outcome,reason,vcdr,disc_area_px,cup_area_px,refer,model");
    assert!(
        lines[1].starts_with("1,") && lines[1].contains(",a.jpg,completed,,0."),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(",b.jpg,failed,") && lines[2].contains("b.jpg: empty file,"),
        "{}",
        lines[2]
    );
    // Nothing is newer than tomorrow.
    let later = run(&["export-results", "--since", "9999-01-01"]);
    assert_eq!(String::from_utf8_lossy(&later.stdout).lines().count(), 1, "header only");
    let bad = run(&["export-results", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    let jl = run(&["export-results", "--since", "2000-01-01", "--format", "jsonl"]);
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&jl.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["outcome"], "Completed");
    let status = run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (v["exams"]["completed"].as_u64(), v["exams"]["failed"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["exams"]["today"]["completed"], 1, "{v}");
    assert_eq!(v["exams"]["last_error"]["source"], "b.jpg", "{v}");
    assert!(v["storage"]["mb_per_exam"].as_f64().unwrap() > 0.0, "{v}");
    // For a person: today's exams, storage in days, the last error and what to do.
    let out = run(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("exams today: 2 (1 completed, 0 refused, 1 failed)"), "{text}");
    assert!(text.contains("trust: 0 keys, unsigned bundles allowed; "), "{text}");
    // One exam today: the days left are "about N" or, on a roomy disk, "more than 999".
    let days = text.lines().find(|l| l.starts_with("storage: ")).unwrap_or_default();
    assert!(
        days.contains(" MB free (1 MB kept in reserve), 0.")
            && days.contains(" MB an exam; ")
            && days.ends_with(" days at today's rate"),
        "{text}"
    );
    assert!(
        text.contains("last error: exam 2 at ") && text.contains("b.jpg: empty file"),
        "{text}"
    );
    assert!(text.contains("what to do: photograph"), "{text}");
}

#[test]
fn sigterm_stops_the_service_cleanly_with_exams_stored() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let (root, cam) = (tmp.path().join("root"), tmp.path().join("watched"));
    std::fs::create_dir_all(&cam).unwrap();
    let cfg = tmp.path().join("device.toml");
    // A watched folder: the service never runs out of work by itself.
    let text =
        config(&root, &cam, "").replace("source = \"replay\"", "source = \"folder\"\npoll_ms = 20");
    std::fs::write(&cfg, text).unwrap();
    papilla_device::slots::Slots::new(&root)
        .install(&test_model(), &papilla_shared::bundle::Verification::integrity_only(), 1)
        .unwrap();
    let mut child = device_command()
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::write(cam.join("a.jpg"), synthetic_jpeg(21, 400, 400)).unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["outcome"], "Completed", "{first}");
    assert!(cam.join("done/a.jpg").exists(), "the watched file moves to done/");
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("stopped"), "{err}");
    assert_eq!(papilla_device::store::read_index(&root).unwrap().len(), 1);
}
