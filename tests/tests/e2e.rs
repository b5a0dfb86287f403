//! The shared road end to end, with an oracle standing in for the network: a synthetic
//! photograph is preprocessed exactly as a model would see it, the "network" answers with
//! one-hot logits of the true mask at network size, and the answer goes through the shared
//! post-processing back onto the photograph, through the BMP format, and is scored by the
//! host's `papilla score` code. What is
//! lost is what the road itself loses (resampling), so the scores bound every real model.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use papilla_shared::labels::{MaskRole, decode_mask_bytes};
use papilla_shared::metrics::{self, measure};
use papilla_shared::postprocess::{OutputSpec, postprocess};
use papilla_shared::preprocess::{PreprocessConfig, RoiPolicy, preprocess};
use papilla_shared::synth::{SynthParams, generate};
use papilla_shared::{Class, LabelMap};

/// One-hot logits of `labels` in the seed's class order.
///
/// # Shapes
/// - returns `[1, 3, H, W]` flattened
fn oracle_logits(labels: &LabelMap) -> Vec<f32> {
    let plane = labels.classes().len();
    let mut out = vec![0f32; 3 * plane];
    for (p, c) in labels.classes().iter().enumerate() {
        out[*c as usize * plane + p] = 4.0;
    }
    out
}

fn road(size: u32, crop: bool, seed: u64) -> (metrics::ImageScores, LabelMap, LabelMap) {
    let s = generate(&SynthParams::random(640, 480, seed));
    let config = PreprocessConfig::square(size);
    let roi = crop.then(|| {
        let m = measure(&s.labels);
        RoiPolicy { context: 2.5, min_side_fraction: 0.0 }.crop_around(
            s.disc_centre.0,
            s.disc_centre.1,
            m.disc_vertical as f32,
            640,
            480,
        )
    });
    let (input, geometry) = preprocess(&s.image, &config, roi).unwrap();
    assert_eq!(input.shape, [1, 3, size as usize, size as usize]);
    let target = geometry.to_network(&s.labels);
    let logits = oracle_logits(&target);
    let shape = [1, 3, size as usize, size as usize];
    let mask = postprocess(&logits, &shape, &OutputSpec::seed(), &geometry).unwrap();
    // Through the file format and back, as a submission would go.
    let mut bmp = std::io::Cursor::new(Vec::new());
    mask.to_grey().write_to(&mut bmp, image::ImageFormat::Bmp).unwrap();
    let read = decode_mask_bytes(bmp.get_ref(), "oracle.bmp", MaskRole::Truth).unwrap();
    assert_eq!(read.snapped, 0);
    assert_eq!(read.labels, mask);
    (metrics::score(&read.labels, &s.labels).unwrap(), mask, s.labels)
}

#[test]
fn whole_photograph_at_low_resolution_loses_the_cup_detail() {
    let (s, mask, _) = road(128, false, 1);
    eprintln!("whole photograph at 128 px: {s:?}");
    assert_eq!(mask.dimensions(), (640, 480));
    assert!(s.disc_dice > 0.9, "{s:?}");
    assert!(s.disc_dice < 0.999, "resampling at 128 px must cost something: {s:?}");
}

#[test]
fn coarse_to_fine_crop_keeps_disc_and_cup_nearly_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (pred_dir, truth_dir) = (dir.path().join("pred"), dir.path().join("truth"));
    std::fs::create_dir_all(&pred_dir).unwrap();
    std::fs::create_dir_all(&truth_dir).unwrap();
    let mut disc = Vec::new();
    let mut cup = Vec::new();
    let mut per_image = Vec::new();
    for seed in 0..4 {
        let (s, mask, truth) = road(128, true, seed);
        eprintln!("crop, seed {seed}: {s:?}");
        mask.to_grey().save(pred_dir.join(format!("{seed:04}.bmp"))).unwrap();
        truth.to_grey().save(truth_dir.join(format!("{seed:04}.bmp"))).unwrap();
        per_image.push(s);
        assert!(s.vcdr_error() < 0.03, "seed {seed}: {s:?}");
        assert_eq!(
            mask.count(Class::Background) + mask.count(Class::Rim) + mask.count(Class::Cup),
            640 * 480
        );
        disc.push(s.disc_dice);
        cup.push(s.cup_dice);
    }
    let report = papilla_host::score::score_dirs(&pred_dir, &truth_dir, 0.6).unwrap();
    assert_eq!(report.summary, metrics::summarize(&per_image));
    let pairs: Vec<(f64, f64)> = per_image.iter().map(|s| (s.vcdr, s.vcdr_true)).collect();
    assert_eq!(report.referral, papilla_host::score::referral(&pairs, 0.6));
    assert_eq!(report.referral.eligible + report.referral.below, 4);
    assert_eq!(report.summary.n, 4);
    let (whole, _, _) = road(128, false, 0);
    let (cropped, _, _) = road(128, true, 0);
    assert!(cropped.cup_dice > whole.cup_dice, "{cropped:?} vs {whole:?}");
    assert!(disc.iter().all(|&d| d > 0.98), "{disc:?}");
    assert!(cup.iter().all(|&c| c > 0.96), "{cup:?}");
}
