//! The binary killed (SIGKILL, as a power cut) at random points while it stores exams and
//! while it installs a model, then restarted: every exam it reported stored is there and
//! readable, and a loadable model is always installed.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use papilla_device::record::{ExamRecord, Outcome};
use papilla_device::slots::Slots;
use papilla_device::store::{Store, read_index};
use papilla_shared::bundle::Verification;
use papilla_shared::synth::SplitMix64;

use crate::common::*;

/// When a run is killed.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// This long after the process started: recovery, model load and self-test.
    WhileStarting(Duration),
    /// After the service reported its first exam and `more` exams after that, a `fraction` of
    /// one exam's duration (the first exam's, measured) later: the kill lands inside an exam
    /// however fast this machine is (a loaded CI runner, qemu's emulation).
    AmongExams { more: usize, fraction: f64 },
}

/// Starts `run`, reads the ids it reports stored, kills it as `kill` says; returns the ids.
fn run_and_kill(config: &Path, kill: Kill) -> Vec<u64> {
    let started = Instant::now();
    let mut child = device_command()
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (exam_tx, exams) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut ids = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["outcome"] == "Completed" {
                ids.push(v["id"].as_u64().unwrap());
            }
            let _ = exam_tx.send(Instant::now());
        }
        ids
    });
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(" ready") {
                let _ = ready_tx.send(Instant::now());
            }
        }
    });
    let deadline = match kill {
        Kill::WhileStarting(after) => Some(started + after),
        Kill::AmongExams { more, fraction } => {
            let limit = Duration::from_secs(600);
            let ready_at = ready.recv_timeout(limit).ok();
            let first = exams.recv_timeout(limit).ok();
            let rest = (0..more).map_while(|_| exams.recv_timeout(limit).ok()).last();
            match (ready_at, first) {
                (Some(r), Some(f)) => {
                    Some(rest.unwrap_or(f) + (f - r).mul_f64(fraction.clamp(0.0, 1.0)))
                }
                // The run ended (or never got ready): nothing left to interrupt.
                _ => None,
            }
        }
    };
    if let Some(deadline) = deadline {
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
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
    Slots::new(&root).install(&test_model(), &Verification::integrity_only(), 1).unwrap();
    let config = tmp.path().join("device.toml");
    std::fs::write(&config, config_text(&root, &cam)).unwrap();
    let mut rng = SplitMix64::new(42);
    let mut reported = BTreeSet::new();
    // Under emulation an exam takes ~20 s instead of ~0.2 s: half the runs, each killed after at
    // least two exams, keep the test's reach (kills while starting and inside exams) in minutes.
    let (runs, least) = if slowdown() > 1 { (6, 1) } else { (12, 0) };
    for i in 0..runs {
        // Every fourth run is killed while starting (recovery, model load); the others inside
        // the 1st-4th exam after the first, anywhere in it (decode, inference, the writes).
        let kill = if i % 4 == 3 {
            Kill::WhileStarting(stretched(Duration::from_millis(rng.next_u64() % 800)))
        } else {
            let more = least + (rng.next_u64() % (4 - least as u64)) as usize;
            Kill::AmongExams { more, fraction: (rng.next_u64() % 1000) as f64 / 1000.0 }
        };
        reported.extend(run_and_kill(&config, kill));
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
    let out = device_command().args(["run", "--config"]).arg(&config).output().unwrap();
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
        device_command()
            .args(["install-model"])
            .arg(file)
            .args(["--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Kills land within 1.2x the time a whole install takes here, measured on the first one:
    // a fixed window missed every install of the small test bundle under qemu.
    let start = Instant::now();
    assert!(install(&test_model()).wait().unwrap().success());
    let whole = start.elapsed();
    let slots = Slots::new(&root);
    let mut rng = SplitMix64::new(7);
    let mut completed = 0;
    for i in 0..12 {
        let file = if i % 2 == 0 { signed_copy.clone() } else { test_model() };
        let mut child = install(&file);
        std::thread::sleep(whole.mul_f64(1.2 * (rng.next_u64() % 1000) as f64 / 1000.0));
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
        device_command().args(["status", "--json", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"]["ok"], true, "{v}");
}
