//! The service loop with mock pins, a scripted button and a manual clock.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use image::{DynamicImage, GrayImage, ImageBuffer, ImageFormat, Rgb, RgbImage};
use papilla_device::board::mock::{PinLog, RecordingPin, ScriptedButton};
use papilla_device::board::{Button, Leds};
use papilla_device::camera::ReplaySource;
use papilla_device::clock::{Clock, ManualClock};
use papilla_device::config::QualityConfig;
use papilla_device::photo::DecodeOptions;
use papilla_device::record::{ExamRecord, Outcome};
use papilla_device::service::{ExamEvent, Service, ServiceOptions};
use papilla_device::store::Store;

use crate::common::*;

#[test]
fn service_stores_good_exams_refuses_bad_photos_and_lights_the_leds() {
    let tmp = tempfile::tempdir().unwrap();
    let cam = tmp.path().join("camera");
    std::fs::create_dir(&cam).unwrap();
    let good = synthetic_jpeg(1, 640, 480);
    let truncated = &good[..good.len() / 2];
    let grey = encode(DynamicImage::ImageLuma8(GrayImage::new(64, 64)), ImageFormat::Png);
    let deep: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::new(64, 64);
    let deep = encode(DynamicImage::ImageRgb16(deep), ImageFormat::Png);
    let mut huge = encode(DynamicImage::ImageRgb8(RgbImage::new(16, 16)), ImageFormat::Png);
    huge[16..24].copy_from_slice(&[0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30]);
    let crc = crc32fast::hash(&huge[12..29]).to_be_bytes();
    huge[29..33].copy_from_slice(&crc);
    let cap = encode(DynamicImage::ImageRgb8(RgbImage::new(640, 480)), ImageFormat::Jpeg);
    // Name order is replay order.
    let files = [
        write(&cam, "01-good.jpg", &good),
        write(&cam, "02-empty.jpg", b""),
        write(&cam, "03-truncated.jpg", truncated),
        write(&cam, "04-grey.png", &grey),
        write(&cam, "05-deep.png", &deep),
        write(&cam, "06-huge.png", &huge),
        write(&cam, "07-named-png.png", &good),
        write(&cam, "08-lens-cap.jpg", &cap),
        write(&cam, "09-good.jpg", &synthetic_jpeg(2, 512, 512)),
    ];
    let engine = papilla_device::segment::load(&test_model(), 1).unwrap();
    let mut store = Store::open(&tmp.path().join("root"), 0).unwrap();
    let mut source = ReplaySource::new(files.to_vec());
    let clock = ManualClock::new();
    // A press every second, 100 ms long, with a 5 ms glitch before the first.
    let mut presses = vec![(Duration::from_millis(500), Duration::from_millis(5))];
    presses.extend((1..=9).map(|i| (Duration::from_secs(i), Duration::from_millis(100))));
    let log: PinLog = Arc::new(Mutex::new(Vec::new()));
    let pins = ["ready", "busy", "refer", "error"].map(|n| RecordingPin::new(n, &log));
    let mut events: Vec<ExamEvent> = Vec::new();
    let mut service = Service {
        engine: &engine,
        store: &mut store,
        source: &mut source,
        button: Some(Button::new(
            ScriptedButton::new(clock.clone(), presses),
            true,
            Duration::from_millis(30),
        )),
        leds: Leds::new(pins, false),
        clock: clock.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        options: replay_options(DecodeOptions {
            min_side: 256,
            max_pixels: 50_000_000,
            ..Default::default()
        }),
        media: None,
    };
    let summary = service.run(|e| events.push(e.clone()));
    assert_eq!((summary.completed, summary.refused, summary.failed), (2, 1, 6), "{events:#?}");
    // One exam per debounced press (the 5 ms glitch did not count): the ninth press ends it.
    assert!(
        clock.now() >= Duration::from_secs(9) && clock.now() < Duration::from_secs(10),
        "{:?}",
        clock.now()
    );

    let reasons: Vec<String> = events
        .iter()
        .map(|e| match &e.outcome {
            Outcome::Completed => "ok".into(),
            Outcome::Refused(r) | Outcome::Failed(r) => r.clone(),
        })
        .collect();
    let expect = [
        "ok",
        "02-empty.jpg: empty file",
        "03-truncated.jpg: truncated JPEG",
        "04-grey.png: greyscale image",
        "05-deep.png: Rgb16 PNG",
        "06-huge.png: 30000x30000 pixels is more than the limit",
        "07-named-png.png: named as PNG but the content is Jpeg",
        "no field of view",
        "ok",
    ];
    for (got, want) in reasons.iter().zip(expect) {
        assert!(got.contains(want), "{got:?} should say {want:?}");
    }

    // Lights: dark at start, ready, then busy -> ready (+error on a refusal or failure) per exam,
    // dark at the end.
    let mut want = vec!["-".to_owned(), "ready".to_owned()];
    for e in &events {
        want.push("busy".into());
        let mut after = "ready".to_owned();
        if e.refer {
            after += "+refer";
        }
        if e.outcome != Outcome::Completed {
            after += "+error";
        }
        want.push(after);
    }
    want.push("-".into());
    assert_eq!(snapshots(&log), want);

    // The index has all nine, the two good exams have complete folders.
    drop(service);
    let entries = store.entries().to_vec();
    assert_eq!(entries.len(), 9);
    assert_eq!(entries.iter().map(|e| e.id).collect::<Vec<_>>(), (1..=9).collect::<Vec<_>>());
    for e in entries.iter().filter(|e| e.outcome == Outcome::Completed) {
        let dir = store.exam_dir(e.id);
        let record: ExamRecord =
            serde_json::from_slice(&std::fs::read(dir.join("record.json")).unwrap()).unwrap();
        assert_eq!(record.id, e.id);
        let record = record.findings;
        assert!((record.vcdr - e.vcdr).abs() < 1e-12);
        let mask = image::open(dir.join("mask.bmp")).unwrap().to_luma8();
        assert_eq!(mask.dimensions(), (record.width, record.height), "mask at the original size");
        assert!(mask.pixels().all(|p| [0, 128, 255].contains(&p.0[0])));
        assert_eq!(mask.pixels().filter(|p| p.0[0] < 255).count() as u64, record.disc_area_px);
        assert!(record.disc_area_px > 0 && record.vcdr > 0.1 && record.vcdr < 0.9, "{record:?}");
        let photo = std::fs::read(dir.join("photo.jpg")).unwrap();
        assert!(photo == good || e.source == "09-good.jpg", "the photo is stored as captured");
        image::open(dir.join("overlay.png")).unwrap();
    }
    // The first good one was decoded scaled: 640x480 -> shorter side 256 would need 1/1.875, so
    // the 1/2 IDCT scale does not apply and it is decoded whole; the 512x512 one at 1/2.
    let r9: ExamRecord =
        serde_json::from_slice(&std::fs::read(store.exam_dir(9).join("record.json")).unwrap())
            .unwrap();
    assert_eq!((r9.findings.width, r9.findings.decoded_width), (512, 256));
}

#[test]
fn a_stop_request_finishes_the_exam_in_flight_and_turns_the_lights_off() {
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..4)
        .map(|i| write(tmp.path(), &format!("{i}.jpg"), &synthetic_jpeg(10 + i, 400, 400)))
        .collect();
    let engine = papilla_device::segment::load(&test_model(), 1).unwrap();
    let mut store = Store::open(&tmp.path().join("root"), 0).unwrap();
    let mut source = ReplaySource::new(files);
    let stop = Arc::new(AtomicBool::new(false));
    let log: PinLog = Arc::new(Mutex::new(Vec::new()));
    let pins = ["ready", "busy", "refer", "error"].map(|n| RecordingPin::new(n, &log));
    let stopper = Arc::clone(&stop);
    let mut n = 0;
    let mut service = Service {
        engine: &engine,
        store: &mut store,
        source: &mut source,
        // No button: a replay fires back to back.
        button: None::<Button<papilla_device::board::NoPin>>,
        leds: Leds::new(pins, true),
        clock: ManualClock::new(),
        stop,
        options: ServiceOptions {
            decode: DecodeOptions::default(),
            quality: QualityConfig::default(),
            refer_vcdr: 0.0,
            poll: Duration::from_millis(10),
        },
        media: None,
    };
    let summary = service.run(|_| {
        n += 1;
        if n == 2 {
            // SIGTERM arrives during the second exam.
            stopper.store(true, Ordering::SeqCst);
        }
    });
    assert_eq!(summary.completed, 2);
    // Active-low lights: "off" is high. All four end high; refer_vcdr 0 made every exam refer.
    let log = log.lock().unwrap();
    let last: Vec<bool> = log[log.len() - 4..].iter().map(|(_, h)| *h).collect();
    assert_eq!(last, [true; 4]);
    let before: Vec<(String, bool)> = log[log.len() - 8..log.len() - 4].to_vec();
    assert!(
        before.contains(&("refer".into(), false)),
        "refer lit (low) after the last exam: {before:?}"
    );
    drop(service);
    assert_eq!(store.entries().len(), 2);
}

/// A replay that raises the stop flag while it captures its `at`-th frame: SIGTERM arriving
/// during capture, before the exam's inference and storing.
struct StopDuringCapture {
    inner: ReplaySource,
    stop: Arc<AtomicBool>,
    at: usize,
    taken: usize,
}

impl papilla_device::camera::FrameSource for StopDuringCapture {
    fn on_trigger(&self) -> bool {
        self.inner.on_trigger()
    }
    fn next_frame(
        &mut self,
    ) -> Result<Option<papilla_device::camera::Frame>, papilla_device::camera::CaptureError> {
        self.taken += 1;
        if self.taken == self.at {
            self.stop.store(true, Ordering::SeqCst);
        }
        self.inner.next_frame()
    }
    fn exhausted(&self) -> bool {
        self.inner.exhausted()
    }
}

#[test]
fn a_stop_request_during_capture_still_commits_that_exam() {
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..4)
        .map(|i| write(tmp.path(), &format!("{i}.jpg"), &synthetic_jpeg(10 + i, 400, 400)))
        .collect();
    let engine = papilla_device::segment::load(&test_model(), 1).unwrap();
    let root = tmp.path().join("root");
    let mut store = Store::open(&root, 0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut source = StopDuringCapture {
        inner: ReplaySource::new(files),
        stop: Arc::clone(&stop),
        at: 2,
        taken: 0,
    };
    let mut service = Service {
        engine: &engine,
        store: &mut store,
        source: &mut source,
        button: None::<Button<papilla_device::board::NoPin>>,
        leds: Leds::new([papilla_device::board::NoPin; 4], false),
        clock: ManualClock::new(),
        stop,
        options: ServiceOptions {
            decode: DecodeOptions::default(),
            quality: QualityConfig::default(),
            refer_vcdr: 0.6,
            poll: Duration::from_millis(10),
        },
        media: None,
    };
    let mut events = Vec::new();
    let summary = service.run(|e| events.push(e.clone()));
    drop(service);
    // The frame captured while the request arrived is examined and stored, then the loop ends.
    assert_eq!(summary.completed, 2, "{events:?}");
    assert_eq!(source.taken, 2, "no frame is captured after the request");
    let entries = store.entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].source, "1.jpg");
    assert_eq!(entries[1].outcome, Outcome::Completed);
    let folder = store.exam_dir(entries[1].id);
    let record: ExamRecord =
        serde_json::from_slice(&std::fs::read(folder.join("record.json")).unwrap()).unwrap();
    assert_eq!(record.source, "1.jpg");
    assert!(folder.join("mask.bmp").is_file());
    // And it survives a restart: the store reopens with both exams.
    drop(store);
    assert_eq!(Store::open(&root, 0).unwrap().entries().len(), 2);
}

#[test]
fn a_vanished_camera_folder_is_reported_without_filling_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let cam = tmp.path().join("camera");
    let mut source = papilla_device::camera::FolderSource::new(&cam).unwrap();
    std::fs::remove_dir_all(&cam).unwrap();
    let engine = papilla_device::segment::load(&test_model(), 1).unwrap();
    let mut store = Store::open(&tmp.path().join("root"), 0).unwrap();
    let clock = ManualClock::new();
    let stop = Arc::new(AtomicBool::new(false));
    let log: PinLog = Arc::new(Mutex::new(Vec::new()));
    let pins = ["ready", "busy", "refer", "error"].map(|n| RecordingPin::new(n, &log));
    // Stop after a minute of (manual) time.
    let (stopper, watch) = (Arc::clone(&stop), clock.clone());
    let guard = std::thread::spawn(move || {
        while watch.now() < Duration::from_secs(60) {
            std::thread::yield_now();
        }
        stopper.store(true, Ordering::SeqCst);
    });
    let mut service = Service {
        engine: &engine,
        store: &mut store,
        source: &mut source,
        button: None::<Button<papilla_device::board::NoPin>>,
        leds: Leds::new(pins, false),
        clock: clock.clone(),
        stop,
        options: ServiceOptions {
            decode: DecodeOptions::default(),
            quality: QualityConfig::default(),
            refer_vcdr: 0.6,
            poll: Duration::from_millis(250),
        },
        media: None,
    };
    let summary = service.run(|_| {});
    guard.join().unwrap();
    assert_eq!((summary.completed, summary.refused, summary.failed), (0, 0, 0));
    drop(service);
    assert!(store.entries().is_empty(), "no exams were taken, so none is recorded");
    assert!(snapshots(&log).contains(&"ready+error".to_owned()));
    // At most one retry a second of the (manual) clock: start, retries, the final "off".
    let secs = clock.now().as_secs() as usize;
    assert!(
        secs >= 60 && snapshots(&log).len() <= 2 + secs + 1,
        "{} in {secs} s",
        snapshots(&log).len()
    );
}
