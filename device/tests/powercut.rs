//! The binary killed (SIGKILL, as a power cut) at random points while it stores exams and
//! while it installs a model, then restarted: every exam it reported stored is there and
//! readable, and a loadable model is always installed.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use papilla_device::service::ExamRecord;
use papilla_device::slots::Slots;
use papilla_device::store::{Outcome, Store, read_index};
use papilla_shared::bundle::Verification;
use papilla_shared::synth::SplitMix64;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_papilla-device");

/// Starts `run`, reads the ids it reports stored, and kills it `after` the service is ready
/// (or, with `during_start`, `after` the process started); returns the ids.
fn run_and_kill(config: &Path, after: Duration, during_start: bool) -> Vec<u64> {
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut ids = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["outcome"] == "Completed" {
                ids.push(v["id"].as_u64().unwrap());
            }
        }
        ids
    });
    // The model's load and self-test take a while, longer on a busy machine: time the kill from
    // the service's "ready" log line, so it lands among the exams wherever CI runs.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(" ready") {
                let _ = tx.send(());
            }
        }
    });
    if !during_start {
        let _ = rx.recv_timeout(Duration::from_secs(120));
    }
    let start = Instant::now();
    while start.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    child.wait().unwrap();
    reader.join().unwrap()
}

#[test]
fn exams_survive_being_killed_at_random_points() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, cam) = (tmp.path().join("root"), tmp.path().join("camera"));
    std::fs::create_dir_all(&cam).unwrap();
    for i in 0..6u64 {
        std::fs::write(cam.join(format!("{i:02}.jpg")), synthetic_jpeg(100 + i, 480, 480)).unwrap();
    }
    Slots::new(&root).install(&shipped(), &Verification::integrity_only(), 1).unwrap();
    let config = tmp.path().join("device.toml");
    std::fs::write(&config, config_text(&root, &cam)).unwrap();
    let mut rng = SplitMix64::new(42);
    let mut reported = BTreeSet::new();
    for i in 0..12 {
        // Every fourth run is killed while starting (recovery, model load); the others anywhere
        // in the first 0-800 ms of exams (one exam takes about 100-200 ms here).
        let after = Duration::from_millis(rng.next_u64() % 800);
        reported.extend(run_and_kill(&config, after, i % 4 == 3));
    }
    assert!(reported.len() >= 6, "the runs stored too few exams to test anything: {reported:?}");
    let store = Store::open(&root, 0).unwrap();
    let indexed: BTreeSet<u64> =
        store.entries().iter().filter(|e| e.outcome == Outcome::Completed).map(|e| e.id).collect();
    assert!(
        reported.is_subset(&indexed),
        "lost: {:?}",
        reported.difference(&indexed).collect::<Vec<_>>()
    );
    for id in &indexed {
        let dir = store.exam_dir(*id);
        let r: ExamRecord =
            serde_json::from_slice(&std::fs::read(dir.join("record.json")).unwrap()).unwrap();
        assert_eq!(r.id, *id);
        let mask = image::open(dir.join("mask.bmp")).unwrap().to_luma8();
        assert_eq!(mask.dimensions(), (480, 480));
        image::open(dir.join("photo.jpg")).unwrap();
        image::open(dir.join("overlay.png")).unwrap();
    }
    // Nothing half-written is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(root.join("exams"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.starts_with("unreadable"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A last uninterrupted run finishes the replay and exits by itself.
    drop(store);
    let out = Command::new(BIN).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);
    assert_eq!(read_index(&root).unwrap().len(), indexed.len() + 6);
}

fn config_text(root: &Path, cam: &Path) -> String {
    config(root, cam, "")
}

#[test]
fn a_loadable_model_is_always_installed_across_killed_installs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let cam = tmp.path().join("camera");
    std::fs::create_dir_all(&cam).unwrap();
    let config = tmp.path().join("device.toml");
    std::fs::write(&config, config_text(&root, &cam)).unwrap();
    let signed_copy = tmp.path().join("signed.papilla");
    std::fs::write(&signed_copy, signed(&key(5))).unwrap();
    let install = |file: &Path| {
        Command::new(BIN)
            .args(["install-model"])
            .arg(file)
            .args(["--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    assert!(install(&shipped()).wait().unwrap().success());
    let slots = Slots::new(&root);
    let mut rng = SplitMix64::new(7);
    let mut completed = 0;
    for i in 0..12 {
        let file = if i % 2 == 0 { signed_copy.clone() } else { shipped() };
        let mut child = install(&file);
        std::thread::sleep(Duration::from_millis(rng.next_u64() % 900));
        let _ = child.kill();
        if child.wait().unwrap().success() {
            completed += 1;
        }
        let active = slots.open(&Verification::integrity_only(), 1).unwrap();
        assert!(active.selftest_agreement >= 0.99);
    }
    assert!(completed < 12, "no install was interrupted: raise the kill window");
    // And the status command agrees.
    let out =
        Command::new(BIN).args(["status", "--json", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"]["ok"], true, "{v}");
}
