//! The quality gate an exam passes before its result is trusted: a field of view was found
//! (not a lens cap or a blank frame), exposure is usable, the photograph is in focus. The last
//! check, that a disc was found, comes from the segmentation itself.
//!
//! Measured on a copy at most 256 px on its longer side, so it costs a few milliseconds.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::config::QualityConfig;

/// Working size of the measurements.
const SIDE: u32 = 256;
/// Grey level above which a pixel belongs to the field of view (the surround is near black).
const FOV_LEVEL: f64 = 15.0;

/// What the gate measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Fraction of the frame inside the field of view.
    pub fov_fraction: f64,
    /// Mean grey level inside the field of view.
    pub brightness: f64,
    /// Fraction of field-of-view pixels at 250 or more in every channel.
    pub saturated_fraction: f64,
    /// Mean absolute Laplacian of the green channel inside the field of view, at 256 px: a
    /// focused fundus shows vessel edges; a defocused one is smooth. Measured here: REFUGE-512
    /// test photographs 4.6 to 12.4 (median 8.5); the CC0 sample 8.9, and 4.3 / 1.9 after a
    /// Gaussian blur of radius 4 / 8 px at its 1411 px; so the default threshold is 2.5.
    pub sharpness: f64,
}

impl Quality {
    /// Measures a photograph.
    pub fn measure(photo: &RgbImage) -> Self {
        let (w, h) = photo.dimensions();
        let k = w.max(h).div_ceil(SIDE).max(1);
        let (sw, sh) = (w / k, h / k);
        if sw < 3 || sh < 3 {
            return Self {
                fov_fraction: 0.0,
                brightness: 0.0,
                saturated_fraction: 0.0,
                sharpness: 0.0,
            };
        }
        // Box-average k x k blocks: grey and green planes, and saturation flags.
        let n = (sw * sh) as usize;
        let (mut grey, mut green, mut sat) = (vec![0f64; n], vec![0f64; n], vec![0f64; n]);
        let area = f64::from(k * k);
        for by in 0..sh {
            for bx in 0..sw {
                let (mut g, mut gr, mut s) = (0.0, 0.0, 0.0);
                for y in by * k..(by + 1) * k {
                    for x in bx * k..(bx + 1) * k {
                        let p = photo.get_pixel(x, y).0;
                        g += 0.299 * f64::from(p[0])
                            + 0.587 * f64::from(p[1])
                            + 0.114 * f64::from(p[2]);
                        gr += f64::from(p[1]);
                        s += f64::from(u8::from(p.iter().all(|&c| c >= 250)));
                    }
                }
                let i = (by * sw + bx) as usize;
                (grey[i], green[i], sat[i]) = (g / area, gr / area, s / area);
            }
        }
        let fov: Vec<bool> = grey.iter().map(|&g| g > FOV_LEVEL).collect();
        let count = fov.iter().filter(|&&f| f).count();
        if count == 0 {
            return Self {
                fov_fraction: 0.0,
                brightness: 0.0,
                saturated_fraction: 0.0,
                sharpness: 0.0,
            };
        }
        let mean = |v: &[f64]| {
            v.iter().zip(&fov).filter(|(_, f)| **f).map(|(x, _)| x).sum::<f64>() / count as f64
        };
        // Laplacian inside the field of view, away from its rim.
        let (sw, sh) = (sw as usize, sh as usize);
        let (mut lap, mut m) = (0.0, 0usize);
        for y in 1..sh - 1 {
            for x in 1..sw - 1 {
                let i = y * sw + x;
                if [i, i - 1, i + 1, i - sw, i + sw].iter().all(|&j| fov[j]) {
                    lap += (4.0 * green[i]
                        - green[i - 1]
                        - green[i + 1]
                        - green[i - sw]
                        - green[i + sw])
                        .abs();
                    m += 1;
                }
            }
        }
        Self {
            fov_fraction: count as f64 / n as f64,
            brightness: mean(&grey),
            saturated_fraction: mean(&sat),
            sharpness: if m == 0 { 0.0 } else { lap / m as f64 },
        }
    }

    /// Why the photograph is not usable, if it is not.
    pub fn refusal(&self, cfg: &QualityConfig) -> Option<String> {
        if self.fov_fraction < cfg.min_fov_fraction {
            return Some(format!(
                "no field of view: {:.0}% of the frame is lit, at least {:.0}% is needed",
                100.0 * self.fov_fraction,
                100.0 * cfg.min_fov_fraction
            ));
        }
        if self.brightness < cfg.min_brightness {
            return Some(format!(
                "underexposed: brightness {:.0} < {:.0}",
                self.brightness, cfg.min_brightness
            ));
        }
        if self.brightness > cfg.max_brightness {
            return Some(format!(
                "overexposed: brightness {:.0} > {:.0}",
                self.brightness, cfg.max_brightness
            ));
        }
        if self.saturated_fraction > cfg.max_saturated_fraction {
            return Some(format!(
                "overexposed: {:.0}% of the field is saturated",
                100.0 * self.saturated_fraction
            ));
        }
        if self.sharpness < cfg.min_sharpness {
            return Some(format!(
                "out of focus: sharpness {:.2} < {:.2}",
                self.sharpness, cfg.min_sharpness
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use papilla_shared::synth::{SynthParams, generate};

    fn synthetic() -> RgbImage {
        generate(&SynthParams::random(512, 512, 3)).image
    }

    fn blur(img: &RgbImage, r: i32) -> RgbImage {
        let (w, h) = (img.width() as i32, img.height() as i32);
        RgbImage::from_fn(img.width(), img.height(), |x, y| {
            let mut acc = [0u32; 3];
            let mut n = 0;
            for dy in -r..=r {
                for dx in -r..=r {
                    let (xx, yy) =
                        ((x as i32 + dx).clamp(0, w - 1), (y as i32 + dy).clamp(0, h - 1));
                    let p = img.get_pixel(xx as u32, yy as u32).0;
                    for c in 0..3 {
                        acc[c] += u32::from(p[c]);
                    }
                    n += 1;
                }
            }
            image::Rgb(acc.map(|a| (a / n) as u8))
        })
    }

    #[test]
    fn a_good_photograph_passes_and_bad_ones_say_why() {
        let cfg = QualityConfig::default();
        let good = Quality::measure(&synthetic());
        assert_eq!(good.refusal(&cfg), None, "{good:?}");
        assert!(good.fov_fraction > 0.5 && good.fov_fraction < 0.9, "{good:?}");

        let cap = Quality::measure(&RgbImage::new(640, 480));
        assert!(cap.refusal(&cfg).unwrap().starts_with("no field of view"), "{cap:?}");

        let white = RgbImage::from_pixel(640, 480, image::Rgb([255, 255, 255]));
        assert!(Quality::measure(&white).refusal(&cfg).unwrap().starts_with("overexposed"));

        let dim =
            RgbImage::from_fn(512, 512, |x, y| image::Rgb([18, 16 + ((x + y) % 3) as u8, 16]));
        assert!(Quality::measure(&dim).refusal(&cfg).unwrap().starts_with("underexposed"));

        let soft = Quality::measure(&blur(&synthetic(), 8));
        assert!(soft.sharpness < good.sharpness / 2.0, "{soft:?} vs {good:?}");
        assert!(soft.refusal(&cfg).unwrap().starts_with("out of focus"), "{soft:?}");
    }
}
