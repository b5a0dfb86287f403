//! Model updates from removable media: a newer signed bundle on the stick is installed once,
//! through the slots, and the service's next exam runs on it; older, same-version, untrusted and
//! damaged bundles are refused with the error light, and nothing installed is lost.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use papilla_device::board::mock::{PinLog, RecordingPin};
use papilla_device::board::{Button, Leds, NoPin};
use papilla_device::camera::ReplaySource;
use papilla_device::clock::ManualClock;
use papilla_device::media::{MediaEvent, MediaWatch};
use papilla_device::photo::DecodeOptions;
use papilla_device::service::Service;
use papilla_device::slots::{Slot, Slots};
use papilla_device::store::Store;
use papilla_shared::bundle::Verification;

use crate::common::*;

fn trusting(seed: u8) -> Verification {
    Verification::signed_by(vec![key(seed).verifying_key()])
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn watch(stick: &Path, root: &Path) -> MediaWatch {
    MediaWatch::new(stick, root, trusting(1), 1, Duration::from_secs(5))
}

fn summary(events: &[MediaEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            MediaEvent::Installed { file, version, .. } => {
                format!("installed {} {version}", file.file_name().unwrap().to_string_lossy())
            }
            MediaEvent::Refused { file, reason } => {
                format!("refused {}: {reason}", file.file_name().unwrap().to_string_lossy())
            }
        })
        .collect()
}

#[test]
fn a_newer_signed_bundle_is_installed_once_and_others_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, stick) = (tmp.path().join("root"), tmp.path().join("stick"));
    let first = put(tmp.path(), "first.papilla", &signed_version("1.0.0", &key(1)));
    let slots = Slots::new(&root);
    slots.install(&first, &trusting(1), 1).unwrap();
    let mut media = watch(&stick, &root);
    // No stick inserted: nothing, no error.
    assert!(media.poll(Duration::ZERO).is_empty());
    put(&stick, "a-older.papilla", &signed_version("0.9.0", &key(1)));
    put(&stick, "b-same.papilla", &signed_version("1.0.0", &key(1)));
    put(&stick, "c-untrusted.papilla", &signed_version("2.0.0", &key(2)));
    let damaged = signed_version("2.0.0", &key(1));
    put(&stick, "d-damaged.papilla", &damaged[..damaged.len() / 2]);
    put(&stick, "e-newer.papilla", &signed_version("1.1.0", &key(1)));
    put(&stick, "notes.txt", b"not a bundle");
    // Before the interval has passed nothing is looked at.
    assert!(media.poll(Duration::from_secs(1)).is_empty());
    let events = summary(&media.poll(Duration::from_secs(5)));
    assert_eq!(events.len(), 5, "{events:#?}");
    assert!(
        events[0].contains("refused a-older.papilla") && events[0].contains("older"),
        "{events:#?}"
    );
    assert!(
        events[1].contains("refused b-same.papilla") && events[1].contains("in use"),
        "{events:#?}"
    );
    assert!(
        events[2].contains("refused c-untrusted.papilla") && events[2].contains("trust"),
        "{events:#?}"
    );
    assert!(events[3].starts_with("refused d-damaged.papilla"), "{events:#?}");
    assert_eq!(events[4], "installed e-newer.papilla 1.1.0");
    assert_eq!(slots.current(), Some(Slot::B));
    assert_eq!(media.engine().unwrap().manifest().version, "1.1.0");
    // Looked at again, and after a restart (the ledger): nothing is installed twice, nothing
    // already refused is logged again.
    assert!(media.poll(Duration::from_secs(10)).is_empty());
    slots.rollback(&trusting(1), 1).unwrap();
    let mut restarted = watch(&stick, &root);
    let again = summary(&restarted.poll(Duration::ZERO));
    assert!(again.iter().all(|e| e.starts_with("refused")), "{again:#?}");
    assert_eq!(slots.current_version().as_deref(), Some("1.0.0"), "the rollback stands");
    let ledger = std::fs::read_to_string(root.join("models/media-installed")).unwrap();
    assert_eq!(ledger.lines().count(), 1);
    assert!(ledger.ends_with(" 1.1.0 e-newer.papilla\n"), "{ledger}");
    // A file that changes (a copy finished) is looked at again.
    put(&stick, "d-damaged.papilla", &damaged);
    let fixed = summary(&restarted.poll(Duration::from_secs(5)));
    assert_eq!(fixed, ["installed d-damaged.papilla 2.0.0"]);
}

#[test]
fn the_service_installs_from_the_stick_between_exams_and_blinks() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, stick) = (tmp.path().join("root"), tmp.path().join("stick"));
    let first = put(tmp.path(), "first.papilla", &signed_version("1.0.0", &key(1)));
    Slots::new(&root).install(&first, &trusting(1), 1).unwrap();
    put(&stick, "update.papilla", &signed_version("1.2.0", &key(1)));
    let engine = Slots::new(&root).open(&trusting(1), 1).unwrap().engine;
    let photos: Vec<PathBuf> = (0..2)
        .map(|i| put(tmp.path(), &format!("{i}.jpg"), &synthetic_jpeg(40 + i, 400, 400)))
        .collect();
    let mut store = Store::open(&root, 0).unwrap();
    let mut source = ReplaySource::new(photos);
    let log: PinLog = Arc::new(Mutex::new(Vec::new()));
    let pins = ["ready", "busy", "refer", "error"].map(|n| RecordingPin::new(n, &log));
    let mut service = Service {
        engine: &engine,
        store: &mut store,
        source: &mut source,
        button: None::<Button<NoPin>>,
        leds: Leds::new(pins, false),
        clock: ManualClock::new(),
        stop: Arc::new(AtomicBool::new(false)),
        options: replay_options(DecodeOptions::default()),
        media: Some(watch(&stick, &root)),
    };
    let summary = service.run(|_| {});
    assert_eq!(summary.completed, 2);
    assert_eq!(service.engine().manifest().version, "1.2.0");
    let models: Vec<String> = store.entries().iter().map(|e| e.model.clone()).collect();
    assert!(models.iter().all(|m| m.ends_with(" 1.2.0")), "{models:?}");
    // All four lights on, then off, three times, before the first exam.
    let log = log.lock().unwrap();
    let states: Vec<usize> =
        log.chunks(4).map(|c| c.iter().filter(|(_, high)| *high).count()).collect();
    let blinks = states.windows(2).filter(|w| w == &[4, 0]).count();
    assert_eq!(blinks, 3, "{states:?}");
}
