//! Seeded synthetic fundus photographs with exact masks: for tests and convergence checks
//! only, never for training a shipped model.
//!
//! A dark surround with a circular field of view, an orange-red vignetted retina with coarse
//! texture, a bright elliptical disc holding a brighter cup of a chosen vertical cup-to-disc
//! ratio, vessels leaving the disc, noise and an optional blur. The same seed gives the same
//! image on every platform (SplitMix64, no floating-point transcendental in the random stream).

use image::{Rgb, RgbImage};

use crate::labels::{Class, LabelMap};
use crate::metrics::measure;

/// What to draw. [`SynthParams::random`] draws a plausible set from the seed.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthParams {
    pub width: u32,
    pub height: u32,
    pub seed: u64,
    /// Target vertical cup-to-disc ratio of the mask.
    pub vcdr: f32,
    /// Vertical disc diameter in pixels.
    pub disc_diameter: f32,
    /// Disc centre in pixels; `None` places it at random inside the field.
    pub disc_centre: Option<(f32, f32)>,
    pub vessels: u32,
    /// Standard deviation of the pixel noise, in grey levels.
    pub noise: f32,
    /// A 3x3 box blur over the finished photograph.
    pub blur: bool,
}

impl SynthParams {
    /// Random vCDR in [0.3, 0.75], disc diameter 11-17 % of the shorter side (REFUGE-512 has
    /// discs of about 60-70 px), 6-10 vessels, noise 2-6 levels, blur one time in five.
    pub fn random(width: u32, height: u32, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x5eed_f00d);
        let shorter = width.min(height) as f32;
        Self {
            width,
            height,
            seed,
            vcdr: rng.range(0.3, 0.75),
            disc_diameter: shorter * rng.range(0.11, 0.17),
            disc_centre: None,
            vessels: 6 + (rng.next_u64() % 5) as u32,
            noise: rng.range(2.0, 6.0),
            blur: rng.next_u64().is_multiple_of(5),
        }
    }
}

/// A synthetic photograph and its exact mask.
#[derive(Clone, Debug)]
pub struct Synthetic {
    pub image: RgbImage,
    pub labels: LabelMap,
    /// Disc centre in pixels.
    pub disc_centre: (f32, f32),
    /// vCDR of `labels` by REFUGE's definition.
    pub vcdr: f64,
}

/// SplitMix64: tiny, fast, seedable and identical on every platform.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Approximately standard normal (Irwin-Hall with 4 terms, scaled).
    pub fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 1.732_050_8
    }
}

fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

/// Draws a synthetic fundus photograph and its mask.
pub fn generate(p: &SynthParams) -> Synthetic {
    let (w, h) = (p.width.max(8), p.height.max(8));
    let mut rng = SplitMix64::new(p.seed);
    let (fx, fy) = (w as f32 / 2.0, h as f32 / 2.0);
    let field_r = 0.49 * w.min(h) as f32;

    // Disc: an ellipse slightly taller than wide, as optic discs are.
    let a = p.disc_diameter / 2.0; // vertical semi-axis
    let b = a * rng.range(0.85, 0.98);
    let (cx, cy) = p.disc_centre.unwrap_or_else(|| {
        let angle = rng.range(0.0, std::f32::consts::TAU);
        let dist = rng.range(0.0, (field_r - a * 1.5).max(0.0) * 0.7);
        (fx + dist * angle.cos(), fy + dist * angle.sin())
    });
    // Cup: the same shape scaled by the vCDR, nudged towards the temporal side.
    let ca = a * p.vcdr.clamp(0.05, 0.95);
    let cb = ca * rng.range(0.85, 1.0);
    let shift = (a - ca) * rng.range(-0.3, 0.3);
    let (ccx, ccy) = (cx + shift, cy + (a - ca) * rng.range(-0.1, 0.1));

    let inside = |x: f32, y: f32, cx: f32, cy: f32, sa: f32, sb: f32| {
        let (dx, dy) = ((x - cx) / sb, (y - cy) / sa);
        dx * dx + dy * dy
    };

    // Coarse texture: a few random low-frequency waves.
    let waves: Vec<(f32, f32, f32, f32)> = (0..4)
        .map(|_| {
            (
                rng.range(-1.0, 1.0) * 6.0 / w as f32,
                rng.range(-1.0, 1.0) * 6.0 / h as f32,
                rng.range(0.0, std::f32::consts::TAU),
                rng.range(4.0, 10.0),
            )
        })
        .collect();
    let retina = [rng.range(170.0, 215.0), rng.range(60.0, 95.0), rng.range(25.0, 50.0)];
    let disc_colour = [rng.range(225.0, 250.0), rng.range(170.0, 210.0), rng.range(110.0, 150.0)];
    let cup_colour = [252.0, rng.range(225.0, 245.0), rng.range(185.0, 215.0)];
    let surround = [4.0, 4.0, 4.0];

    let mut classes = Vec::with_capacity(w as usize * h as usize);
    let mut pixels = vec![[0f32; 3]; w as usize * h as usize];
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f32 + 0.5, y as f32 + 0.5);
            let disc_q = inside(xf, yf, cx, cy, a, b);
            let cup_q = inside(xf, yf, ccx, ccy, ca, cb);
            let class = if cup_q <= 1.0 && disc_q <= 1.0 {
                Class::Cup
            } else if disc_q <= 1.0 {
                Class::Rim
            } else {
                Class::Background
            };
            classes.push(class);

            let r = ((xf - fx).powi(2) + (yf - fy).powi(2)).sqrt() / field_r;
            let texture: f32 = waves
                .iter()
                .map(|&(kx, ky, ph, amp)| amp * (kx * xf * 6.0 + ky * yf * 6.0 + ph).sin())
                .sum();
            let vignette = 1.0 - 0.45 * r * r;
            let mut c = retina.map(|v| (v + texture) * vignette);
            // Soft disc and cup edges (about 2 px), brighter towards the centre.
            let disc_t = 1.0 - smoothstep(0.85, 1.05, disc_q.sqrt());
            c = mix(c, disc_colour, disc_t * 0.95);
            let cup_t = (1.0 - smoothstep(0.8, 1.05, cup_q.sqrt())) * disc_t;
            c = mix(c, cup_colour, cup_t * 0.9);
            let field_t = 1.0 - smoothstep(0.99, 1.01, r);
            pixels[(y * w + x) as usize] = mix(surround, c, field_t);
        }
    }

    // Vessels: random walks from the disc outwards, thinning as they go.
    for _ in 0..p.vessels {
        let mut angle = rng.range(0.0, std::f32::consts::TAU);
        let (mut x, mut y) = (cx + angle.cos() * b * 0.3, cy + angle.sin() * a * 0.3);
        let mut width = (p.disc_diameter * rng.range(0.05, 0.09)).max(1.0);
        let colour = [rng.range(95.0, 135.0), rng.range(15.0, 35.0), rng.range(10.0, 25.0)];
        let steps = (field_r * rng.range(0.6, 1.2)) as u32;
        for _ in 0..steps {
            angle += rng.range(-0.08, 0.08);
            x += angle.cos();
            y += angle.sin();
            width = (width * 0.998).max(0.8);
            let rad = width / 2.0;
            let (x0, x1) =
                ((x - rad).floor().max(0.0) as u32, ((x + rad).ceil() as u32).min(w - 1));
            let (y0, y1) =
                ((y - rad).floor().max(0.0) as u32, ((y + rad).ceil() as u32).min(h - 1));
            if x < 0.0 || y < 0.0 || x >= w as f32 || y >= h as f32 {
                break;
            }
            for py in y0..=y1 {
                for px in x0..=x1 {
                    let d = ((px as f32 + 0.5 - x).powi(2) + (py as f32 + 0.5 - y).powi(2)).sqrt();
                    let field =
                        ((px as f32 + 0.5 - fx).powi(2) + (py as f32 + 0.5 - fy).powi(2)).sqrt();
                    if d <= rad && field < field_r {
                        let i = (py * w + px) as usize;
                        pixels[i] = mix(pixels[i], colour, 0.7);
                    }
                }
            }
        }
    }

    let mut image = RgbImage::new(w, h);
    for (i, px) in image.pixels_mut().enumerate() {
        let c = pixels[i];
        *px = Rgb(c.map(|v| (v + p.noise * rng.normal()).round().clamp(0.0, 255.0) as u8));
    }
    if p.blur {
        image = box_blur3(&image);
    }
    let labels = LabelMap::from_classes(w, h, classes).expect("one class per pixel");
    let vcdr = measure(&labels).vcdr;
    Synthetic { image, labels, disc_centre: (cx, cy), vcdr }
}

fn box_blur3(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let mut acc = [0u32; 3];
        let mut n = 0;
        for yy in y.saturating_sub(1)..=(y + 1).min(h - 1) {
            for xx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                let p = img.get_pixel(xx, yy).0;
                for c in 0..3 {
                    acc[c] += u32::from(p[c]);
                }
                n += 1;
            }
        }
        Rgb(acc.map(|v| ((v + n / 2) / n) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_image_other_seed_other_image() {
        let p = SynthParams::random(96, 80, 42);
        let (a, b) = (generate(&p), generate(&p));
        assert_eq!(a.image, b.image);
        assert_eq!(a.labels, b.labels);
        let c = generate(&SynthParams::random(96, 80, 43));
        assert_ne!(a.image, c.image);
    }

    #[test]
    fn mask_has_the_requested_disc_size_and_vcdr() {
        for seed in 0..8 {
            let p = SynthParams {
                vcdr: 0.3 + 0.06 * seed as f32,
                disc_diameter: 60.0,
                ..SynthParams::random(256, 256, seed)
            };
            let s = generate(&p);
            let m = measure(&s.labels);
            assert!((m.disc_vertical as f32 - 60.0).abs() <= 2.0, "seed {seed}: {m:?}");
            assert!(
                (s.vcdr as f32 - p.vcdr).abs() <= 0.04,
                "seed {seed}: {} vs {}",
                s.vcdr,
                p.vcdr
            );
            assert!(m.cup_area > 0 && m.cup_area < m.disc_area);
        }
    }

    #[test]
    fn disc_is_brighter_than_the_retina_and_the_surround_is_dark() {
        let s = generate(&SynthParams {
            disc_centre: Some((64.0, 64.0)),
            ..SynthParams::random(128, 128, 5)
        });
        let mean_of = |class: Class| {
            let (mut sum, mut n) = (0f64, 0f64);
            for (i, c) in s.labels.classes().iter().enumerate() {
                if *c == class {
                    let p = s.image.as_raw();
                    sum += f64::from(p[i * 3]) + f64::from(p[i * 3 + 1]) + f64::from(p[i * 3 + 2]);
                    n += 1.0;
                }
            }
            sum / n
        };
        assert!(mean_of(Class::Cup) > mean_of(Class::Rim));
        assert!(mean_of(Class::Rim) > mean_of(Class::Background) + 100.0);
        let corner = s.image.get_pixel(0, 0).0;
        assert!(corner.iter().all(|&v| v < 30), "{corner:?}");
        assert!((s.disc_centre.0 - 64.0).abs() < 1e-6);
    }
}
