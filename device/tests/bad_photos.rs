//! The photographs a camera in the field can hand over, beyond those of the first service test:
//! bombs (a header that declares 65535x65535, a PNG whose small file inflates to gigabytes),
//! CMYK and progressive JPEGs, an EXIF-rotated photograph, a folder named like a photograph, a
//! photograph that vanishes between listing and reading, and one without read permission. Each
//! gets its documented outcome through the real service loop, the loop goes on, the error light
//! shows for each failure, and the store holds every exam.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use image::{DynamicImage, ImageFormat, RgbImage};
use papilla_device::board::mock::{PinLog, RecordingPin};
use papilla_device::board::{Button, Leds, NoPin};
use papilla_device::camera::ReplaySource;
use papilla_device::clock::ManualClock;
use papilla_device::photo::{DecodeOptions, decode};
use papilla_device::record::{ExamRecord, Outcome};
use papilla_device::service::{ExamEvent, Service};
use papilla_device::store::Store;
use papilla_shared::synth::{SynthParams, generate};

use crate::common::*;

fn fundus(seed: u64, w: u32, h: u32) -> RgbImage {
    generate(&SynthParams::random(w, h, seed)).image
}

fn jpeg_with(
    img: &RgbImage,
    color: jpeg_encoder::ColorType,
    progressive: bool,
    app1: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.set_progressive(progressive);
    if let Some(app1) = app1 {
        enc.add_app_segment(1, app1.to_vec()).unwrap();
    }
    let (w, h) = (img.width() as u16, img.height() as u16);
    match color {
        jpeg_encoder::ColorType::Cmyk => {
            let cmyk: Vec<u8> =
                img.pixels().flat_map(|p| [255 - p.0[0], 255 - p.0[1], 255 - p.0[2], 0]).collect();
            enc.encode(&cmyk, w, h, color).unwrap();
        }
        _ => enc.encode(img.as_raw(), w, h, color).unwrap(),
    }
    out
}

/// An EXIF APP1 payload ("Exif\0\0", a little-endian TIFF header, IFD0 with one entry:
/// Orientation = `orientation`).
fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut b = b"Exif\0\0II*\0".to_vec();
    b.extend_from_slice(&8u32.to_le_bytes()); // IFD0 right after the header
    b.extend_from_slice(&1u16.to_le_bytes()); // one entry
    b.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    b.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&orientation.to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&0u32.to_le_bytes()); // no IFD1
    b
}

/// A JPEG whose frame header (SOF0) declares `side` x `side` pixels.
fn declaring(jpeg: &[u8], side: u16) -> Vec<u8> {
    let mut b = jpeg.to_vec();
    let at = b.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline frame header");
    b[at + 5..at + 7].copy_from_slice(&side.to_be_bytes());
    b[at + 7..at + 9].copy_from_slice(&side.to_be_bytes());
    b
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A valid PNG of `side` x `side` RGB pixels whose IDAT is deflated zeros: `raw_mb` MB of
/// scanlines in a file of a few kilobytes (the rest of the rows missing).
fn png_bomb(side: u32, raw_mb: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..raw_mb {
        z.write_all(&zeros).unwrap();
    }
    png_chunk(&mut out, b"IDAT", &z.finish().unwrap());
    png_chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn bad_photographs_get_their_documented_outcomes_and_the_loop_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let cam = tmp.path().join("camera");
    std::fs::create_dir(&cam).unwrap();
    // Seed 1 at 640x480 passes the quality gate (the first service test's good photograph).
    let upright = fundus(1, 640, 480);
    let good = jpeg_with(&upright, jpeg_encoder::ColorType::Rgb, false, None);
    let baseline = encode(DynamicImage::ImageRgb8(upright.clone()), ImageFormat::Jpeg);
    let bomb = png_bomb(40_000, 64);
    assert!(bomb.len() < 200_000, "the bomb is a small file ({} bytes)", bomb.len());
    // Stored turned a quarter to the left, with EXIF orientation 6 ("turn right to view").
    let turned = image::imageops::rotate270(&upright);
    let exif = jpeg_with(&turned, jpeg_encoder::ColorType::Rgb, false, Some(&exif_orientation(6)));
    let unreadable = write(&cam, "19-unreadable.jpg", &good);
    std::fs::set_permissions(&unreadable, std::os::unix::fs::PermissionsExt::from_mode(0o000))
        .unwrap();
    // Root reads any file: then the case cannot be made here, and it is left out (said below).
    let root = std::fs::read(&unreadable).is_ok();
    std::fs::create_dir(cam.join("17-folder.jpg")).unwrap();
    let mut files = vec![
        write(&cam, "10-good.jpg", &good),
        write(&cam, "11-declares-65535.jpg", &declaring(&baseline, 65535)),
        write(&cam, "12-bomb.png", &bomb),
        write(
            &cam,
            "13-cmyk.jpg",
            &jpeg_with(&upright, jpeg_encoder::ColorType::Cmyk, false, None),
        ),
        write(
            &cam,
            "14-progressive.jpg",
            &jpeg_with(&upright, jpeg_encoder::ColorType::Rgb, true, None),
        ),
        write(&cam, "15-exif-rotated.jpg", &exif),
        cam.join("17-folder.jpg"),
        // Listed, then gone before it is read.
        cam.join("18-vanished.jpg"),
    ];
    if !root {
        files.push(unreadable.clone());
    } else {
        eprintln!("running as root: the unreadable-photograph case is left out (root reads it)");
    }
    files.push(write(&cam, "20-good.jpg", &synthetic_jpeg(2, 512, 512)));

    let engine = papilla_device::segment::load(&test_model(), 1).unwrap();
    let mut store = Store::open(&tmp.path().join("root"), 0).unwrap();
    let mut source = ReplaySource::new(files.clone());
    let clock = ManualClock::new();
    let log: PinLog = Arc::new(Mutex::new(Vec::new()));
    let pins = ["ready", "busy", "refer", "error"].map(|n| RecordingPin::new(n, &log));
    let mut events: Vec<ExamEvent> = Vec::new();
    let mut service = Service {
        engine: &engine,
        store: &mut store,
        source: &mut source,
        button: None::<Button<NoPin>>,
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

    let mut expect: Vec<(&str, &str)> = vec![
        ("10-good.jpg", "ok"),
        ("11-declares-65535.jpg", "65535x65535 pixels is more than the limit"),
        ("12-bomb.png", "40000x40000 pixels is more than the limit"),
        ("13-cmyk.jpg", "CMYK JPEG"),
        ("14-progressive.jpg", "ok"),
        ("15-exif-rotated.jpg", "ok"),
        ("17-folder.jpg", "17-folder.jpg"),
        ("18-vanished.jpg", "18-vanished.jpg"),
    ];
    if !root {
        expect.push(("19-unreadable.jpg", "ermission denied"));
    }
    expect.push(("20-good.jpg", "ok"));
    let got: Vec<String> = events
        .iter()
        .map(|e| match &e.outcome {
            Outcome::Completed => "ok".into(),
            Outcome::Refused(r) | Outcome::Failed(r) => r.clone(),
        })
        .collect();
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for (g, (file, want)) in got.iter().zip(&expect) {
        assert!(g.contains(want), "{file}: {g:?} should say {want:?}");
    }
    let failures = expect.iter().filter(|(_, w)| *w != "ok").count();
    assert_eq!(summary.completed, expect.len() - failures);
    assert_eq!(summary.refused + summary.failed, failures);

    // Every exam is in the index, numbered in order; the error light followed each failure.
    drop(service);
    let entries = store.entries().to_vec();
    assert_eq!(
        entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        (1..=expect.len() as u64).collect::<Vec<_>>()
    );
    let lit = snapshots(&log);
    // After "-" and "ready" at start, two updates per exam (busy, then the result).
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            lit[2 + 2 * i + 1].contains("error"),
            e.outcome != Outcome::Completed,
            "error light after exam {}",
            i + 1
        );
    }

    // The EXIF-rotated photograph (stored 480x640) was turned back upright: its record and mask
    // are 640x480 and its vCDR is the upright photograph's; the progressive one's too.
    let record = |id: u64| -> ExamRecord {
        serde_json::from_slice(&std::fs::read(store.exam_dir(id).join("record.json")).unwrap())
            .unwrap()
    };
    let (first, rotated, progressive) = (record(1), record(6), record(5));
    assert_eq!((rotated.findings.width, rotated.findings.height), (640, 480));
    let mask = image::open(store.exam_dir(6).join("mask.bmp")).unwrap();
    assert_eq!((mask.width(), mask.height()), (640, 480));
    assert!(
        (rotated.findings.vcdr - first.findings.vcdr).abs() < 0.03,
        "{} vs {}",
        rotated.findings.vcdr,
        first.findings.vcdr
    );
    assert!((progressive.findings.vcdr - first.findings.vcdr).abs() < 0.03);
    // The photograph is stored as the camera wrote it (the turn stays in its EXIF).
    assert_eq!(std::fs::read(store.exam_dir(6).join("photo.jpg")).unwrap(), exif);
}

#[test]
fn exif_orientation_turns_the_photograph_and_its_size() {
    let img = RgbImage::from_fn(40, 20, |x, y| image::Rgb([(x * 6) as u8, (y * 12) as u8, 0]));
    let opts = DecodeOptions { min_side: 0, max_pixels: 1 << 20, ..Default::default() };
    let name = Path::new("p.jpg");
    for (orientation, size) in [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))] {
        let bytes = jpeg_with(
            &img,
            jpeg_encoder::ColorType::Rgb,
            false,
            Some(&exif_orientation(orientation)),
        );
        let photo = decode(&bytes, name, &opts).unwrap();
        assert_eq!(photo.original, size, "orientation {orientation}");
        assert_eq!(photo.image.dimensions(), size, "orientation {orientation}");
        // The bright corner (x = 39, y = 19 in the stored pixels) lands where the turn puts it.
        let bright = match orientation {
            1 => (39, 19),
            3 => (0, 0),
            6 => (0, 39),
            _ => (19, 0),
        };
        let p = photo.image.get_pixel(bright.0, bright.1).0;
        assert!(p[0] > 200 && p[1] > 180, "orientation {orientation}: {p:?} at {bright:?}");
    }
}
