//! Generated data folders for the tests.

use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, Luma};
use papilla_shared::synth::{SynthParams, generate};

/// Runs the `papilla` binary built for these tests.
pub fn papilla(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_papilla"))
        .args(args)
        .output()
        .expect("runs papilla")
}

/// The stdout of a run that must succeed (its stderr is the failure report).
pub fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DOM of `page` after headless Chromium loaded it (its scripts run), or `None` with a
/// message when Chromium is not installed. CI sets `PAPILLA_REQUIRE_CHROMIUM` (and installs
/// the Debian package), so there a missing browser fails the test instead.
pub fn render_dom(page: &Path) -> Option<String> {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("PAPILLA_REQUIRE_CHROMIUM").is_none(),
            "PAPILLA_REQUIRE_CHROMIUM is set but Chromium is not installed (apt-get install chromium)"
        );
        eprintln!("skipped: the browser check of {} (no Chromium here)", page.display());
        return None;
    };
    let profile = tempfile::tempdir().expect("a temporary profile");
    // The flags of a closed network: no background connections that would be refused.
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.canonicalize().expect("the page exists").display()))
        .output()
        .expect("runs chromium");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `papilla train` flags of a test-sized run: a depth-2, 8-channel UNet at 64 px that learns
/// the large synthetic discs of [`gamma_folder`] in a few epochs.
pub const TINY_RUN: [&str; 17] = [
    "--size",
    "64",
    "--batch",
    "4",
    "--depth",
    "2",
    "--base-channels",
    "8",
    "--optimizer",
    "adamw",
    "--lr",
    "0.01",
    "--warmup-epochs",
    "1",
    "--ce-weight",
    "1",
    "--no-augment",
];

/// A GAMMA-layout folder of `n` synthetic photographs (JPEG) with BMP masks. Discs are large
/// (30 % of the side) so that test-sized networks at 64 px can learn them quickly.
pub fn gamma_folder(root: &Path, name: &str, n: u64, seed: u64) -> PathBuf {
    let dir = root.join(name);
    let images = dir.join("fundus color images");
    let masks = dir.join("Disc_Cup_Masks");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    for i in 0..n {
        let p = SynthParams {
            disc_diameter: 29.0,
            blur: false,
            ..SynthParams::random(96, 96, seed + i)
        };
        let s = generate(&p);
        let id = format!("{:04}", seed + i);
        DynamicImage::ImageRgb8(s.image).save(images.join(format!("{id}.jpg"))).unwrap();
        s.labels.to_grey().save(masks.join(format!("{id}.bmp"))).unwrap();
    }
    dir
}

/// A RIM-ONE DL layout with `n` train and `n` test images, binary disc/cup masks.
pub fn rimone_folder(root: &Path, n: u64) -> PathBuf {
    let dir = root.join("rimone-dl");
    for (split, offset) in [("train", 0), ("test", 100)] {
        let images = dir.join("partitioned_randomly/images").join(split);
        std::fs::create_dir_all(&images).unwrap();
        for i in 0..n {
            let s = generate(&SynthParams {
                disc_diameter: 29.0,
                ..SynthParams::random(96, 96, offset + i)
            });
            let id = format!("r1_Im{:03}", offset + i);
            let group = if i % 2 == 0 { "normal" } else { "glaucoma" };
            let seg = dir.join("RIM-ONE_DL_reference_segmentations").join(group);
            std::fs::create_dir_all(&seg).unwrap();
            DynamicImage::ImageRgb8(s.image).save(images.join(format!("{id}.png"))).unwrap();
            let disc = GrayImage::from_fn(96, 96, |x, y| {
                Luma([if s.labels.get(x, y).is_disc() { 255 } else { 0 }])
            });
            let mut cup = GrayImage::from_fn(96, 96, |x, y| {
                Luma([if s.labels.get(x, y) == papilla_shared::Class::Cup { 255 } else { 0 }])
            });
            cup.put_pixel(0, 0, Luma([255])); // a cup pixel outside the disc, as in RIM-ONE DL
            disc.save(seg.join(format!("{id}-1-Disc-T.png"))).unwrap();
            cup.save(seg.join(format!("{id}-1-Cup-T.png"))).unwrap();
        }
    }
    dir
}
