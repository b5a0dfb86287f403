//! Training-time augmentation as the seed recipe: flips, colour jitter, rare blur; optional
//! rotation and scale. Works on network-sized samples (after the shared resize, before the
//! shared normalisation) from a seeded generator, so a run is reproducible.

use papilla_shared::labels::{Class, LabelMap};
use papilla_shared::preprocess::Resized;
use papilla_shared::synth::SplitMix64;
use serde::{Deserialize, Serialize};

/// Augmentation settings; the defaults are the seed recipe's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AugmentConfig {
    pub hflip: f32,
    pub vflip: f32,
    /// Probability of each colour jitter.
    pub jitter_p: f32,
    /// Brightness, contrast and saturation factors are drawn from [1 - r, 1 + r].
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    /// Hue shift range in the seed's units (PaddleSeg / PIL: 1/256 of a turn).
    pub hue: f32,
    pub blur_p: f32,
    /// Rotation range in degrees (0 = off).
    pub rotate_deg: f32,
    /// Scale range: factors in [1 - s, 1 + s] (0 = off).
    pub scale: f32,
    /// Shift range as a fraction of the side, in x and y (0 = off): a coarse-to-fine stage
    /// must cope with a locator that is a little off centre.
    #[serde(default)]
    pub translate: f32,
    /// Camera robustness, beyond the seed's jitter: what differs between fundus cameras and
    /// their JPEG pipelines. Off (all zero) in the seed recipe and in runs made before it.
    #[serde(default)]
    pub camera: CameraAugment,
}

/// Photometric changes that mimic another camera: each of the first five with probability
/// `p`, style mixing with its own probability.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct CameraAugment {
    pub p: f32,
    /// Gamma drawn log-uniformly from [1 / (1 + g), 1 + g].
    pub gamma: f32,
    /// Each channel's gain from [1 - c, 1 + c] (white balance, sensor response).
    pub channel_gain: f32,
    /// Unsharp-mask amount from [-s, s] (negative softens, positive sharpens).
    pub sharpness: f32,
    /// Gaussian noise with a standard deviation up to this, in 0-255 units.
    pub noise: f32,
    /// JPEG re-encoding at a quality from [jpeg_quality, 95] (0 = off).
    pub jpeg_quality: u8,
    /// Probability of Fourier style mixing with another training photograph (0 = off; older
    /// runs read as off): the low-frequency amplitude of each colour channel (illumination,
    /// colour cast, vignetting: the look of a camera) is moved part of the way to the other
    /// photograph's, the phase (the anatomy) kept, so a crop of one camera takes another's
    /// look. Mixing several cameras is where it pays.
    #[serde(default)]
    pub style_mix: f32,
}

impl CameraAugment {
    /// The settings `papilla train --camera-augment` uses.
    pub fn standard() -> Self {
        Self {
            p: 0.3,
            gamma: 0.5,
            channel_gain: 0.2,
            sharpness: 1.0,
            noise: 6.0,
            jpeg_quality: 30,
            style_mix: 0.0,
        }
    }
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            hflip: 0.5,
            vflip: 0.5,
            jitter_p: 0.5,
            brightness: 0.5,
            contrast: 0.5,
            saturation: 0.5,
            hue: 18.0,
            blur_p: 0.05,
            rotate_deg: 0.0,
            scale: 0.0,
            translate: 0.0,
            camera: CameraAugment::default(),
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all (validation, tests of the loop itself).
    pub fn none() -> Self {
        Self {
            hflip: 0.0,
            vflip: 0.0,
            jitter_p: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
            blur_p: 0.0,
            rotate_deg: 0.0,
            scale: 0.0,
            translate: 0.0,
            camera: CameraAugment::default(),
        }
    }
}

/// Returns an augmented copy of a sample. `style` is another training photograph of the same
/// size, whose look [`CameraAugment::style_mix`] may lend this one.
pub fn augment(
    input: &Resized,
    target: &LabelMap,
    config: &AugmentConfig,
    style: Option<&Resized>,
    rng: &mut SplitMix64,
) -> (Resized, LabelMap) {
    let (w, h) = (input.width as usize, input.height as usize);
    let mut img = input.rgb.clone();
    let c = &config.camera;
    // First, on the photograph as taken: the style is a camera's, the jitter below comes on top.
    if let Some(other) = style.filter(|o| o.rgb.len() == img.len())
        && c.style_mix > 0.0
        && rng.unit() < c.style_mix
    {
        let lambda = rng.range(0.2, 1.0);
        fourier_style(&mut img, &other.rgb, w, h, STYLE_WINDOW, lambda);
    }
    let mut lab = target.clone();
    let hit = |rng: &mut SplitMix64, p: f32| p > 0.0 && rng.unit() < p;

    let (flip_h, flip_v) = (hit(rng, config.hflip), hit(rng, config.vflip));
    if flip_h || flip_v {
        let src_img = img.clone();
        let src_lab = lab.clone();
        for y in 0..h {
            let sy = if flip_v { h - 1 - y } else { y };
            for x in 0..w {
                let sx = if flip_h { w - 1 - x } else { x };
                img[(y * w + x) * 3..(y * w + x) * 3 + 3]
                    .copy_from_slice(&src_img[(sy * w + sx) * 3..(sy * w + sx) * 3 + 3]);
                lab.set(x as u32, y as u32, src_lab.get(sx as u32, sy as u32));
            }
        }
    }

    if config.rotate_deg > 0.0 || config.scale > 0.0 {
        let angle =
            rng.range(-config.rotate_deg, config.rotate_deg.max(f32::MIN_POSITIVE)).to_radians();
        let s = rng.range(1.0 - config.scale, 1.0 + config.scale + f32::MIN_POSITIVE);
        (img, lab) = affine(&img, &lab, w, h, angle, s, (0.0, 0.0));
    }
    if config.translate > 0.0 {
        let t = config.translate;
        let shift = (rng.range(-t, t) * w as f32, rng.range(-t, t) * h as f32);
        (img, lab) = affine(&img, &lab, w, h, 0.0, 1.0, shift);
    }

    if hit(rng, config.jitter_p) {
        let f = rng.range(1.0 - config.brightness, 1.0 + config.brightness);
        img.iter_mut().for_each(|v| *v *= f);
    }
    if hit(rng, config.jitter_p) {
        let f = rng.range(1.0 - config.contrast, 1.0 + config.contrast);
        let mean = img.chunks_exact(3).map(grey).sum::<f32>() / (w * h) as f32;
        img.iter_mut().for_each(|v| *v = (*v - mean) * f + mean);
    }
    if hit(rng, config.jitter_p) {
        let f = rng.range(1.0 - config.saturation, 1.0 + config.saturation);
        for px in img.chunks_exact_mut(3) {
            let g = grey(px);
            px.iter_mut().for_each(|v| *v = (*v - g) * f + g);
        }
    }
    if hit(rng, config.jitter_p) {
        let turn = rng.range(-config.hue, config.hue) / 256.0;
        rotate_hue(&mut img, turn * std::f32::consts::TAU);
    }
    img.iter_mut().for_each(|v| *v = v.clamp(0.0, 255.0));
    if hit(rng, config.blur_p) {
        img = blur3(&img, w, h);
    }
    camera(&mut img, w, h, &config.camera, rng);
    (Resized { width: input.width, height: input.height, rgb: img }, lab)
}

/// Half-side of the low-frequency square whose amplitude style mixing moves, as a fraction of
/// the image side: at 176 px frequencies up to 11 cycles a side (a 23-wide square of the
/// centred spectrum), the scale of illumination and colour cast, well below the cup's edge.
const STYLE_WINDOW: f32 = 0.06;

/// Fourier style mixing (after Yang & Soatto's FDA, 2020, with an amplitude blend as in Xu et
/// al.'s amplitude mix, 2021): per colour channel, inside the centred low-frequency square of
/// half-side `window` x side, the amplitude becomes `(1 - lambda) |A| + lambda |B|` with A's
/// phase; the rest of A's spectrum is untouched. `img` and `style` are interleaved RGB in
/// 0-255 units; the result is clamped to that range.
pub fn fourier_style(img: &mut [f32], style: &[f32], w: usize, h: usize, window: f32, lambda: f32) {
    use rustfft::FftPlanner;
    use rustfft::num_complex::Complex32;
    if w == 0 || h == 0 || img.len() != w * h * 3 || style.len() != img.len() {
        return;
    }
    let mut planner = FftPlanner::<f32>::new();
    let (row_f, row_i) = (planner.plan_fft_forward(w), planner.plan_fft_inverse(w));
    let (col_f, col_i) = (planner.plan_fft_forward(h), planner.plan_fft_inverse(h));
    // 2-d transform: every row, then every column (through a transposed copy).
    let fft2 = |data: &mut Vec<Complex32>, inverse: bool| {
        let (rows, cols) = if inverse { (&row_i, &col_i) } else { (&row_f, &col_f) };
        rows.process(data);
        let mut t = vec![Complex32::default(); w * h];
        for y in 0..h {
            for x in 0..w {
                t[x * h + y] = data[y * w + x];
            }
        }
        cols.process(&mut t);
        for y in 0..h {
            for x in 0..w {
                data[y * w + x] = t[x * h + y];
            }
        }
    };
    let window = window.clamp(0.0, 0.5);
    let (bw, bh) = ((window * w as f32).round() as usize, (window * h as f32).round() as usize);
    // Frequency index k stands for k and k - n cycles: low when the nearer is within b.
    let low = |k: usize, n: usize, b: usize| k.min(n - k) <= b;
    let scale = 1.0 / (w * h) as f32;
    for ch in 0..3 {
        let plane = |src: &[f32]| -> Vec<Complex32> {
            src.iter().skip(ch).step_by(3).map(|&v| Complex32::new(v, 0.0)).collect()
        };
        let (mut a, mut b) = (plane(img), plane(style));
        fft2(&mut a, false);
        fft2(&mut b, false);
        for y in (0..h).filter(|&y| low(y, h, bh)) {
            for x in (0..w).filter(|&x| low(x, w, bw)) {
                let i = y * w + x;
                let amp = (1.0 - lambda) * a[i].norm() + lambda * b[i].norm();
                a[i] = Complex32::from_polar(amp, a[i].arg());
            }
        }
        fft2(&mut a, true);
        for (px, v) in img.chunks_exact_mut(3).zip(&a) {
            px[ch] = (v.re * scale).clamp(0.0, 255.0);
        }
    }
}

/// [`CameraAugment`] on an image in 0-255 units; the result stays in range.
fn camera(img: &mut Vec<f32>, w: usize, h: usize, c: &CameraAugment, rng: &mut SplitMix64) {
    // Each change draws only when it is on, so a run without one keeps its random stream.
    let hit = |rng: &mut SplitMix64, on: bool| on && c.p > 0.0 && rng.unit() < c.p;
    if hit(rng, c.gamma > 0.0) {
        let g = rng.range(-(1.0 + c.gamma).ln(), (1.0 + c.gamma).ln()).exp();
        img.iter_mut().for_each(|v| *v = 255.0 * (*v / 255.0).powf(g));
    }
    if hit(rng, c.channel_gain > 0.0) {
        let gains: [f32; 3] =
            std::array::from_fn(|_| rng.range(1.0 - c.channel_gain, 1.0 + c.channel_gain));
        for px in img.chunks_exact_mut(3) {
            px.iter_mut().zip(gains).for_each(|(v, g)| *v = (*v * g).min(255.0));
        }
    }
    if hit(rng, c.sharpness > 0.0) {
        let amount = rng.range(-c.sharpness, c.sharpness);
        let soft = blur3(img, w, h);
        img.iter_mut().zip(soft).for_each(|(v, b)| *v = (*v + amount * (*v - b)).clamp(0.0, 255.0));
    }
    if hit(rng, c.noise > 0.0) {
        let sigma = rng.range(0.0, c.noise);
        for v in img.iter_mut() {
            *v = (*v + sigma * normal(rng)).clamp(0.0, 255.0);
        }
    }
    if hit(rng, c.jpeg_quality > 0) {
        let quality = rng.range(c.jpeg_quality.min(95) as f32, 95.0).round() as u8;
        if let Some(decoded) = jpeg_round_trip(img, w, h, quality) {
            *img = decoded;
        }
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut SplitMix64) -> f32 {
    let u = rng.unit().max(f32::MIN_POSITIVE);
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * rng.unit()).cos()
}

/// Encodes and decodes as a JPEG of `quality`: the block and ringing artefacts of a camera's
/// compression. `None` if the codec refuses (the image is then left as it is).
fn jpeg_round_trip(img: &[f32], w: usize, h: usize, quality: u8) -> Option<Vec<f32>> {
    let bytes: Vec<u8> = img.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(&bytes, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .ok()?;
    let decoded =
        image::load_from_memory_with_format(&out, image::ImageFormat::Jpeg).ok()?.to_rgb8();
    (decoded.dimensions() == (w as u32, h as u32))
        .then(|| decoded.into_raw().into_iter().map(f32::from).collect())
}

/// ITU-R BT.601 luma, as PIL's greyscale.
fn grey(px: &[f32]) -> f32 {
    0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]
}

/// Rotates hue by `angle` radians in YIQ space (keeps luma, like an HSV hue shift).
fn rotate_hue(img: &mut [f32], angle: f32) {
    let (c, s) = (angle.cos(), angle.sin());
    for px in img.chunks_exact_mut(3) {
        let (r, g, b) = (px[0], px[1], px[2]);
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        let i = 0.596 * r - 0.274 * g - 0.322 * b;
        let q = 0.211 * r - 0.523 * g + 0.312 * b;
        let (i2, q2) = (i * c - q * s, i * s + q * c);
        px[0] = y + 0.956 * i2 + 0.621 * q2;
        px[1] = y - 0.272 * i2 - 0.647 * q2;
        px[2] = y - 1.106 * i2 + 1.703 * q2;
    }
}

/// 3x3 Gaussian blur (1-2-1 kernel), edges clamped.
fn blur3(img: &[f32], w: usize, h: usize) -> Vec<f32> {
    let k = [1.0f32, 2.0, 1.0];
    let mut out = vec![0f32; img.len()];
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0f32; 3];
            for (dy, ky) in k.iter().enumerate() {
                let sy = (y + dy).saturating_sub(1).min(h - 1);
                for (dx, kx) in k.iter().enumerate() {
                    let sx = (x + dx).saturating_sub(1).min(w - 1);
                    let p = &img[(sy * w + sx) * 3..(sy * w + sx) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += ky * kx * p[c];
                    }
                }
            }
            out[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&acc.map(|v| v / 16.0));
        }
    }
    out
}

/// Rotation by `angle` and scaling by `s` about the centre, then a shift by `shift` pixels;
/// bilinear for the image (black outside), nearest for the labels (background outside).
fn affine(
    img: &[f32],
    lab: &LabelMap,
    w: usize,
    h: usize,
    angle: f32,
    s: f32,
    shift: (f32, f32),
) -> (Vec<f32>, LabelMap) {
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let (c, sn) = (angle.cos() / s, angle.sin() / s);
    let mut out = vec![0f32; img.len()];
    let mut out_lab = LabelMap::filled(w as u32, h as u32, Class::Background);
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 + 0.5 - cx - shift.0, y as f32 + 0.5 - cy - shift.1);
            let (sx, sy) = (c * dx + sn * dy + cx - 0.5, -sn * dx + c * dy + cy - 0.5);
            let (nx, ny) = (sx.round(), sy.round());
            if nx >= 0.0 && ny >= 0.0 && (nx as usize) < w && (ny as usize) < h {
                out_lab.set(x as u32, y as u32, lab.get(nx as u32, ny as u32));
            }
            let (x0, y0) = (sx.floor(), sy.floor());
            let (tx, ty) = (sx - x0, sy - y0);
            let mut acc = [0f32; 3];
            for (oy, wy) in [(0, 1.0 - ty), (1, ty)] {
                for (ox, wx) in [(0, 1.0 - tx), (1, tx)] {
                    let (px, py) = (x0 as i64 + ox, y0 as i64 + oy);
                    if px >= 0 && py >= 0 && (px as usize) < w && (py as usize) < h {
                        let p = &img[(py as usize * w + px as usize) * 3..][..3];
                        for ch in 0..3 {
                            acc[ch] += wx * wy * p[ch];
                        }
                    }
                }
            }
            out[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&acc);
        }
    }
    (out, out_lab)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Resized, LabelMap) {
        let (w, h) = (4u32, 3u32);
        let rgb = (0..w * h).flat_map(|i| [i as f32 * 10.0, 100.0, 50.0]).collect();
        let mut lab = LabelMap::filled(w, h, Class::Background);
        lab.set(0, 0, Class::Cup);
        lab.set(1, 0, Class::Rim);
        (Resized { width: w, height: h, rgb }, lab)
    }

    #[test]
    fn flips_move_image_and_labels_together() {
        let (img, lab) = sample();
        let cfg = AugmentConfig { hflip: 1.0, vflip: 1.0, ..AugmentConfig::none() };
        let (a, l) = augment(&img, &lab, &cfg, None, &mut SplitMix64::new(1));
        assert_eq!(l.get(3, 2), Class::Cup);
        assert_eq!(l.get(2, 2), Class::Rim);
        assert_eq!(a.rgb[(2 * 4 + 3) * 3], 0.0, "pixel 0's red moved to the far corner");
        assert_eq!(a.rgb[0], 110.0, "pixel 11's red moved to the origin");
    }

    #[test]
    fn no_augmentation_is_the_identity_and_jitter_keeps_range_and_labels() {
        let (img, lab) = sample();
        let (a, l) = augment(&img, &lab, &AugmentConfig::none(), None, &mut SplitMix64::new(2));
        assert_eq!((a, l), (img.clone(), lab.clone()));
        let cfg = AugmentConfig {
            hflip: 0.0,
            vflip: 0.0,
            jitter_p: 1.0,
            blur_p: 1.0,
            ..AugmentConfig::default()
        };
        for seed in 0..20 {
            let (a, l) = augment(&img, &lab, &cfg, None, &mut SplitMix64::new(seed));
            assert_eq!(l, lab);
            assert!(a.rgb.iter().all(|v| (0.0..=255.0).contains(v)));
            assert_ne!(a.rgb, img.rgb);
        }
    }

    #[test]
    fn hue_rotation_keeps_grey_and_full_turn_is_identity() {
        let mut px = vec![80.0, 80.0, 80.0, 200.0, 40.0, 10.0];
        rotate_hue(&mut px, std::f32::consts::TAU);
        assert!((px[0] - 80.0).abs() < 0.5 && (px[2] - 80.0).abs() < 0.5);
        assert!((px[3] - 200.0).abs() < 0.5 && (px[5] - 10.0).abs() < 0.5, "{px:?}");
    }

    #[test]
    fn shift_moves_labels_by_whole_pixels() {
        let (img, lab) = sample();
        let (a, l) = affine(&img.rgb, &lab, 4, 3, 0.0, 1.0, (1.0, 1.0));
        assert_eq!(l.get(1, 1), Class::Cup);
        assert_eq!(l.get(2, 1), Class::Rim);
        assert_eq!(l.get(0, 0), Class::Background, "uncovered pixels are background");
        assert_eq!(a[(4 + 1) * 3], 0.0);
        assert_eq!(a[(4 + 2) * 3], 10.0);
    }

    #[test]
    fn camera_augmentation_changes_the_photograph_not_the_labels() {
        let (w, h) = (16u32, 16u32);
        let rgb =
            (0..w * h).flat_map(|i| [(i % 200) as f32, 120.0, 40.0 + (i % 7) as f32]).collect();
        let img = Resized { width: w, height: h, rgb };
        let lab = LabelMap::filled(w, h, Class::Rim);
        let only = |camera| AugmentConfig { camera, ..AugmentConfig::none() };
        let each = [
            CameraAugment { p: 1.0, gamma: 0.5, ..Default::default() },
            CameraAugment { p: 1.0, channel_gain: 0.2, ..Default::default() },
            CameraAugment { p: 1.0, sharpness: 1.0, ..Default::default() },
            CameraAugment { p: 1.0, noise: 6.0, ..Default::default() },
            CameraAugment { p: 1.0, jpeg_quality: 30, ..Default::default() },
        ];
        for (k, camera) in each.into_iter().enumerate() {
            let (a, l) =
                augment(&img, &lab, &only(camera), None, &mut SplitMix64::new(k as u64 + 3));
            assert_eq!(l, lab, "labels untouched by change {k}");
            assert!(a.rgb.iter().all(|v| (0.0..=255.0).contains(v)), "change {k} in range");
            let moved = a.rgb.iter().zip(&img.rgb).map(|(x, y)| (x - y).abs()).sum::<f32>();
            assert!(moved > 1.0, "change {k} changed the photograph ({moved})");
        }
        // p = 0 leaves it alone whatever the strengths.
        let off = CameraAugment { p: 0.0, ..CameraAugment::standard() };
        assert_eq!(augment(&img, &lab, &only(off), None, &mut SplitMix64::new(1)).0, img);
    }

    #[test]
    fn fourier_style_takes_the_other_cameras_look_and_keeps_the_anatomy() {
        let (w, h) = (48usize, 40usize);
        // A reddish photograph with a sharp bright disc, and a flat greenish "camera".
        let mut img = vec![0f32; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let disc = (x as f32 - 30.0).powi(2) + (y as f32 - 20.0).powi(2) < 36.0;
                let px = if disc { [250.0, 220.0, 160.0] } else { [160.0, 60.0, 20.0] };
                img[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&px);
            }
        }
        let style: Vec<f32> = (0..w * h).flat_map(|_| [90.0, 120.0, 60.0]).collect();
        let mean = |v: &[f32], c: usize| v.iter().skip(c).step_by(3).sum::<f32>() / (w * h) as f32;

        let mut same = img.clone();
        fourier_style(&mut same, &style, w, h, STYLE_WINDOW, 0.0);
        let worst = same.iter().zip(&img).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 0.01, "lambda 0 is the identity: {worst}");

        let mut mixed = img.clone();
        fourier_style(&mut mixed, &style, w, h, STYLE_WINDOW, 1.0);
        for c in 0..3 {
            // The flat style has all its energy at frequency 0: each channel's mean becomes its.
            let (got, want) = (mean(&mixed, c), mean(&style, c));
            assert!((got - want).abs() < 3.0, "channel {c}: mean {got}, style {want}");
        }
        // The disc's edge (high frequencies, kept) still stands out: across it the red falls by
        // 58 here (90 in the photograph), while a flat style has no edge at all.
        let red = |x: usize, y: usize| mixed[(y * w + x) * 3];
        assert!(red(35, 20) > red(37, 20) + 40.0, "{} vs {}", red(35, 20), red(37, 20));
        assert!(mixed.iter().all(|v| (0.0..=255.0).contains(v)));
    }

    #[test]
    fn style_mixing_draws_only_when_it_is_on() {
        // A run made before style mixing keeps its random stream (and so its augmentations).
        let (img, lab) = sample();
        let other = Resized { rgb: vec![0.0; img.rgb.len()], ..img.clone() };
        let cfg = AugmentConfig { camera: CameraAugment::standard(), ..AugmentConfig::default() };
        let with = augment(&img, &lab, &cfg, Some(&other), &mut SplitMix64::new(4));
        let without = augment(&img, &lab, &cfg, None, &mut SplitMix64::new(4));
        assert_eq!(with, without);
        // Off, nothing is drawn at all: the stream after augment() is the stream without it.
        let mut rng = SplitMix64::new(4);
        let _ = augment(&img, &lab, &AugmentConfig::none(), Some(&other), &mut rng);
        assert_eq!(rng.next_u64(), SplitMix64::new(4).next_u64());
        let on = AugmentConfig {
            camera: CameraAugment { style_mix: 1.0, ..CameraAugment::standard() },
            ..AugmentConfig::none()
        };
        let (mixed, l) = augment(&img, &lab, &on, Some(&other), &mut SplitMix64::new(4));
        assert_ne!(mixed, img, "style mixing at p = 1 changes the photograph");
        assert_eq!(l, lab, "and never the labels");
    }

    #[test]
    fn same_seed_same_augmentation() {
        let (img, lab) = sample();
        let cfg = AugmentConfig { rotate_deg: 15.0, scale: 0.1, ..AugmentConfig::default() };
        let a = augment(&img, &lab, &cfg, None, &mut SplitMix64::new(9));
        let b = augment(&img, &lab, &cfg, None, &mut SplitMix64::new(9));
        assert_eq!(a, b);
    }
}
