//! From an RGB photograph to the network's NCHW input, and the geometry to map a network-sized
//! class map back onto the photograph. The same code runs while training, on the host and on
//! the Pi; its parameters travel inside the model bundle.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::PreprocessError;
use crate::labels::{Class, LabelMap, nearest_source};

/// How the photograph (or its crop) is resized to the network input.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ResizeFilter {
    /// Pixel-area averaging when shrinking (OpenCV `INTER_AREA`, the seed recipe's filter);
    /// bilinear when enlarging.
    #[default]
    Area,
    /// Bilinear with pixel-centre alignment (OpenCV `INTER_LINEAR` without antialiasing).
    Bilinear,
    /// Nearest neighbour at pixel centres.
    Nearest,
}

/// Order of the colour planes in the network input.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChannelOrder {
    #[default]
    Rgb,
    /// For models trained on OpenCV-decoded (BGR) images.
    Bgr,
}

/// How a coarse-to-fine second stage crops around the disc its first stage located.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct RoiPolicy {
    /// Side of the square crop in units of the located disc's larger diameter.
    pub context: f32,
    /// Smallest crop side as a fraction of the photograph's shorter side, so a tiny false
    /// detection still gets a useful field of view.
    pub min_side_fraction: f32,
}

impl RoiPolicy {
    /// The square crop around a disc centred at `(cx, cy)` with larger diameter `diameter`, in
    /// pixels of a `width`x`height` photograph; shifted to lie inside the photograph, and
    /// clipped only when the photograph is smaller than the crop.
    pub fn crop_around(&self, cx: f32, cy: f32, diameter: f32, width: u32, height: u32) -> Rect {
        let shorter = width.min(height) as f32;
        let side = (self.context * diameter).max(self.min_side_fraction * shorter).round();
        let side_w = (side as u32).clamp(1, width);
        let side_h = (side as u32).clamp(1, height);
        let place = |c: f32, side: u32, limit: u32| -> u32 {
            let start = (c - side as f32 / 2.0).round().max(0.0) as u32;
            start.min(limit - side)
        };
        Rect {
            x: place(cx, side_w, width),
            y: place(cy, side_h, height),
            width: side_w,
            height: side_h,
        }
    }

    /// The crop around the disc of `labels` (bounding-box centre, larger side as diameter):
    /// the same rule for ground truth while training and for a locator's mask at run time.
    /// `None` when `labels` has no disc.
    pub fn crop_for(&self, labels: &LabelMap) -> Option<Rect> {
        self.crop_for_scaled(labels, labels.width(), labels.height())
    }

    /// The square the policy asks for around the disc of `labels`, before it is shifted to
    /// lie inside the photograph: `(x0, y0, side)`, where `x0` and `y0` may be negative and
    /// `x0 + side` may pass the width. `None` when `labels` has no disc.
    pub fn square_for(&self, labels: &LabelMap) -> Option<(i64, i64, u32)> {
        let (x0, y0, x1, y1) = disc_box(labels)?;
        let diameter = (x1 - x0 + 1).max(y1 - y0 + 1) as f32;
        let shorter = labels.width().min(labels.height()) as f32;
        let side = (self.context * diameter).max(self.min_side_fraction * shorter).round().max(1.0);
        let (cx, cy) = ((x0 + x1 + 1) as f32 / 2.0, (y0 + y1 + 1) as f32 / 2.0);
        let start = |c: f32| (c - side / 2.0).round() as i64;
        Some((start(cx), start(cy), side as u32))
    }

    /// [`Self::crop_for`] in a `width`x`height` photograph of which `labels` is a resized map:
    /// the box is scaled by the sides' ratios before the crop is placed.
    pub fn crop_for_scaled(&self, labels: &LabelMap, width: u32, height: u32) -> Option<Rect> {
        let (x0, y0, x1, y1) = disc_box(labels)?;
        let sx = width as f32 / labels.width() as f32;
        let sy = height as f32 / labels.height() as f32;
        let diameter = ((x1 - x0 + 1) as f32 * sx).max((y1 - y0 + 1) as f32 * sy);
        let (cx, cy) = ((x0 + x1 + 1) as f32 / 2.0 * sx, (y0 + y1 + 1) as f32 / 2.0 * sy);
        Some(self.crop_around(cx, cy, diameter, width, height))
    }
}

/// Index into `0..n` of position `i`, reflected at the edges without repeating the edge pixel
/// (`-1` reads `1`), periodically for any `i`: the mirrored padding of a crop that reaches
/// past the photograph (disc-centred crops, at run time and in training alike).
pub fn mirror_index(i: i64, n: u32) -> u32 {
    let n = n as i64;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let r = i.rem_euclid(period);
    (if r < n { r } else { period - r }) as u32
}

/// Inclusive bounding box `(x0, y0, x1, y1)` of the disc (cup or rim) pixels.
pub fn disc_box(labels: &LabelMap) -> Option<(u32, u32, u32, u32)> {
    let w = (labels.width() as usize).max(1);
    let mut b: Option<(u32, u32, u32, u32)> = None;
    // A row at a time: a camera frame has millions of pixels, the disc a few rows of them.
    for (y, row) in labels.classes().chunks_exact(w).enumerate() {
        let disc = |c: &Class| *c != Class::Background;
        // An empty row is read once; the search from the right starts only on a disc row.
        let Some(first) = row.iter().position(disc) else { continue };
        let last = row.iter().rposition(disc).unwrap_or(first);
        let (first, last, y) = (first as u32, last as u32, y as u32);
        b = Some(match b {
            None => (first, y, last, y),
            Some((x0, y0, x1, _)) => (x0.min(first), y0, x1.max(last), y),
        });
    }
    b
}

/// Preprocessing of one model stage; serialised into the model bundle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PreprocessConfig {
    /// Network input width in pixels.
    pub width: u32,
    /// Network input height in pixels.
    pub height: u32,
    pub filter: ResizeFilter,
    /// Per-channel mean of [0, 1] intensities, in RGB order.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, in RGB order.
    pub std: [f32; 3],
    pub channel_order: ChannelOrder,
    /// Crop policy of a second stage; `None` feeds the whole photograph.
    pub roi: Option<RoiPolicy>,
}

impl Default for PreprocessConfig {
    /// The seed recipe: 512x512, AREA, mean 0.5 / std 0.5 so inputs span [-1, 1], RGB.
    fn default() -> Self {
        Self {
            width: 512,
            height: 512,
            filter: ResizeFilter::Area,
            mean: [0.5; 3],
            std: [0.5; 3],
            channel_order: ChannelOrder::Rgb,
            roi: None,
        }
    }
}

impl PreprocessConfig {
    /// The seed recipe at another square input size.
    pub fn square(size: u32) -> Self {
        Self { width: size, height: size, ..Self::default() }
    }

    /// Rejects configs that would divide by zero or produce an empty tensor.
    pub fn validate(&self) -> Result<(), PreprocessError> {
        let bad = |m: String| Err(PreprocessError::InvalidConfig(m));
        if self.width == 0 || self.height == 0 {
            return bad(format!("input size {}x{} is empty", self.width, self.height));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return bad(format!("std {:?} must be positive", self.std));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return bad(format!("mean {:?} must be finite", self.mean));
        }
        if let Some(roi) = self.roi
            && !(roi.context > 0.0 && roi.context.is_finite() && roi.min_side_fraction >= 0.0)
        {
            return bad(format!("region-of-interest policy {roi:?} is invalid"));
        }
        Ok(())
    }
}

/// A rectangle in photograph pixels.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    /// The whole of a `width`x`height` image.
    pub fn full(width: u32, height: u32) -> Self {
        Self { x: 0, y: 0, width, height }
    }
}

impl std::fmt::Display for Rect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}+{}+{}", self.width, self.height, self.x, self.y)
    }
}

/// A coordinate `v` on an axis `from` pixels long, moved to the same axis `to` pixels long
/// (rounded to the nearest pixel edge).
pub fn rescale(v: u32, to: u32, from: u32) -> u32 {
    if from == 0 {
        return v;
    }
    ((u64::from(v) * u64::from(to) + u64::from(from) / 2) / u64::from(from)) as u32
}

/// A dense f32 tensor in NCHW order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor4 {
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    pub data: Vec<f32>,
}

/// Where the network input came from: the photograph's size and the crop that was resized.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Photograph `(width, height)`.
    pub original: (u32, u32),
    /// The part of the photograph that was resized to the network input.
    pub crop: Rect,
    /// Network input `(width, height)`.
    pub network: (u32, u32),
}

impl Geometry {
    /// The same crop on the photograph at `size`, of which the preprocessed image was a
    /// scaled-down decode (a large JPEG decoded at 1/2, 1/4 or 1/8 by the IDCT): post-processing
    /// with it interpolates the scores straight onto the full-size photograph, so no label map
    /// is enlarged afterwards (a nearest-neighbour enlargement brings back the staircase the
    /// score interpolation avoids).
    pub fn at_size(&self, size: (u32, u32)) -> Geometry {
        if size == self.original || self.original.0 == 0 || self.original.1 == 0 {
            return *self;
        }
        // Each edge of the crop rescaled, kept inside the photograph and at least a pixel wide.
        let scale = rescale;
        let c = self.crop;
        let (w, h) = self.original;
        let x0 = scale(c.x, size.0, w).min(size.0.saturating_sub(1));
        let y0 = scale(c.y, size.1, h).min(size.1.saturating_sub(1));
        let x1 = scale(c.x + c.width, size.0, w).clamp(x0 + 1, size.0.max(x0 + 1));
        let y1 = scale(c.y + c.height, size.1, h).clamp(y0 + 1, size.1.max(y0 + 1));
        Geometry {
            original: size,
            crop: Rect { x: x0, y: y0, width: x1 - x0, height: y1 - y0 },
            network: self.network,
        }
    }

    /// Crops and resizes a photograph-sized class map to the network input (nearest
    /// neighbour): the training target that matches [`preprocess`]'s input.
    pub fn to_network(&self, labels: &LabelMap) -> LabelMap {
        let c = self.crop;
        let (nw, nh) = self.network;
        let mut data = Vec::with_capacity(nw as usize * nh as usize);
        for j in 0..nh {
            let sy = c.y + nearest_source(j, nh, c.height);
            for i in 0..nw {
                data.push(labels.get(c.x + nearest_source(i, nw, c.width), sy));
            }
        }
        LabelMap::from_classes(nw, nh, data).expect("length is nw * nh")
    }
}

/// A photograph (or its crop) resized to the network input, before normalisation: interleaved
/// RGB in [0, 255] as f32 (area averaging gives fractions). Training caches these and augments
/// them; inference normalises them at once. Both then call [`normalize`].
#[derive(Clone, Debug, PartialEq)]
pub struct Resized {
    pub width: u32,
    pub height: u32,
    /// `height * width * 3` values, row-major, RGB.
    pub rgb: Vec<f32>,
}

/// Crops (the whole photograph unless `roi` is given) and resizes with the configured filter.
pub fn resize(
    image: &RgbImage,
    config: &PreprocessConfig,
    roi: Option<Rect>,
) -> Result<(Resized, Geometry), PreprocessError> {
    config.validate()?;
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Err(PreprocessError::EmptyImage { width: w, height: h });
    }
    let crop = roi.unwrap_or(Rect::full(w, h));
    let inside = crop.width > 0
        && crop.height > 0
        && u64::from(crop.x) + u64::from(crop.width) <= u64::from(w)
        && u64::from(crop.y) + u64::from(crop.height) <= u64::from(h);
    if !inside {
        return Err(PreprocessError::RoiOutside { roi: crop.to_string(), width: w, height: h });
    }
    let (ow, oh) = (config.width, config.height);
    let rgb = resize_rgb(image, crop, ow, oh, config.filter);
    let geometry = Geometry { original: (w, h), crop, network: (ow, oh) };
    Ok((Resized { width: ow, height: oh, rgb }, geometry))
}

/// Scales to [0, 1], subtracts the mean, divides by the std and lays the planes out in the
/// configured channel order.
///
/// # Shapes
/// - returns `[1, 3, resized.height, resized.width]`
pub fn normalize(resized: &Resized, config: &PreprocessConfig) -> Tensor4 {
    let plane = resized.width as usize * resized.height as usize;
    let mut data = vec![0f32; 3 * plane];
    let order = match config.channel_order {
        ChannelOrder::Rgb => [0usize, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    for (p, px) in resized.rgb.chunks_exact(3).enumerate() {
        for (plane_index, &src) in order.iter().enumerate() {
            let v = px[src] / 255.0;
            data[plane_index * plane + p] = (v - config.mean[src]) / config.std[src];
        }
    }
    Tensor4 { shape: [1, 3, resized.height as usize, resized.width as usize], data }
}

/// Preprocesses a photograph for one stage: [`resize`] then [`normalize`].
///
/// # Shapes
/// - returns `[1, 3, config.height, config.width]`
pub fn preprocess(
    image: &RgbImage,
    config: &PreprocessConfig,
    roi: Option<Rect>,
) -> Result<(Tensor4, Geometry), PreprocessError> {
    let (resized, geometry) = resize(image, config, roi)?;
    Ok((normalize(&resized, config), geometry))
}

/// Source taps of one output sample along one axis.
type Taps = Vec<(u32, f32)>;

/// Resampling taps for `n_out` outputs over `n_in` inputs starting at `offset`.
fn axis_taps(offset: u32, n_in: u32, n_out: u32, filter: ResizeFilter) -> Vec<Taps> {
    let scale = f64::from(n_in) / f64::from(n_out);
    (0..n_out)
        .map(|i| {
            let i = f64::from(i);
            match filter {
                ResizeFilter::Nearest => {
                    vec![(offset + nearest_source(i as u32, n_out, n_in), 1.0)]
                }
                ResizeFilter::Area if scale >= 1.0 => {
                    // The output pixel covers [i*scale, (i+1)*scale) of the input; each input
                    // pixel contributes the length it overlaps.
                    let (a, b) = (i * scale, (i + 1.0) * scale);
                    let first = a.floor() as u32;
                    let last = (b.ceil() as u32).min(n_in);
                    (first..last)
                        .filter_map(|k| {
                            let k0 = f64::from(k);
                            let overlap = (b.min(k0 + 1.0) - a.max(k0)) / scale;
                            (overlap > 1e-12).then_some((offset + k, overlap as f32))
                        })
                        .collect()
                }
                ResizeFilter::Area | ResizeFilter::Bilinear => {
                    let s = ((i + 0.5) * scale - 0.5).clamp(0.0, f64::from(n_in - 1));
                    let k = s.floor() as u32;
                    let t = (s - f64::from(k)) as f32;
                    if t > 0.0 && k + 1 < n_in {
                        vec![(offset + k, 1.0 - t), (offset + k + 1, t)]
                    } else {
                        vec![(offset + k, 1.0)]
                    }
                }
            }
        })
        .collect()
}

/// Separable resize of `crop` to `ow`x`oh`; returns interleaved RGB in [0, 255].
fn resize_rgb(image: &RgbImage, crop: Rect, ow: u32, oh: u32, filter: ResizeFilter) -> Vec<f32> {
    let xt = axis_taps(crop.x, crop.width, ow, filter);
    let yt = axis_taps(crop.y, crop.height, oh, filter);
    let raw = image.as_raw();
    let stride = image.width() as usize * 3;
    // Horizontal pass over only the rows the vertical taps read.
    let mut rows_needed = vec![false; image.height() as usize];
    for taps in &yt {
        for &(y, _) in taps {
            rows_needed[y as usize] = true;
        }
    }
    let ow_us = ow as usize;
    let mut horizontal = vec![0f32; image.height() as usize * ow_us * 3];
    for (y, _) in rows_needed.iter().enumerate().filter(|(_, n)| **n) {
        let row = &raw[y * stride..(y + 1) * stride];
        let out = &mut horizontal[y * ow_us * 3..(y + 1) * ow_us * 3];
        for (o, taps) in out.chunks_exact_mut(3).zip(&xt) {
            let mut acc = [0f32; 3];
            for &(x, wgt) in taps {
                let p = &row[x as usize * 3..x as usize * 3 + 3];
                acc[0] += wgt * f32::from(p[0]);
                acc[1] += wgt * f32::from(p[1]);
                acc[2] += wgt * f32::from(p[2]);
            }
            o.copy_from_slice(&acc);
        }
    }
    let mut out = vec![0f32; oh as usize * ow_us * 3];
    for (j, taps) in yt.iter().enumerate() {
        let dst = &mut out[j * ow_us * 3..(j + 1) * ow_us * 3];
        for &(y, wgt) in taps {
            let src = &horizontal[y as usize * ow_us * 3..(y as usize + 1) * ow_us * 3];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += wgt * s;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn pixel(t: &Tensor4, c: usize, y: usize, x: usize) -> f32 {
        let [_, _, h, w] = t.shape;
        t.data[c * h * w + y * w + x]
    }

    #[test]
    fn a_crop_on_a_scaled_decode_moves_to_the_full_photograph() {
        let g = Geometry {
            original: (100, 80),
            crop: Rect { x: 5, y: 6, width: 10, height: 20 },
            network: (32, 32),
        };
        assert_eq!(g.at_size((100, 80)), g);
        // A 1/4 decode of a 400x320 photograph.
        let full = g.at_size((400, 320));
        assert_eq!(full.original, (400, 320));
        assert_eq!(full.crop, Rect { x: 20, y: 24, width: 40, height: 80 });
        assert_eq!(full.network, (32, 32));
        // An IDCT decode rounds its size up (ceil(401 / 4) = 101): edges round to the nearest
        // pixel and the crop stays inside the photograph.
        let edge = Geometry { original: (101, 81), crop: Rect::full(101, 81), network: (8, 8) };
        assert_eq!(edge.at_size((401, 322)).crop, Rect::full(401, 322));
        assert_eq!(rescale(7, 401, 101), 28);
    }

    #[test]
    fn seed_normalisation_maps_0_and_255_to_minus_one_and_one() {
        let mut img = RgbImage::from_pixel(4, 4, Rgb([0, 255, 51]));
        img.put_pixel(0, 0, Rgb([0, 255, 51]));
        let (t, g) = preprocess(&img, &PreprocessConfig::square(2), None).unwrap();
        assert_eq!(t.shape, [1, 3, 2, 2]);
        assert_eq!(pixel(&t, 0, 1, 1), -1.0);
        assert_eq!(pixel(&t, 1, 0, 0), 1.0);
        assert!((pixel(&t, 2, 0, 1) - (-0.6)).abs() < 1e-6);
        assert_eq!(g.crop, Rect::full(4, 4));
    }

    #[test]
    fn area_downscale_by_two_is_the_block_mean() {
        let mut img = RgbImage::new(4, 2);
        for (x, y, p) in img.enumerate_pixels_mut() {
            let v = (x * 10 + y * 100) as u8;
            *p = Rgb([v, v, v]);
        }
        let cfg = PreprocessConfig {
            mean: [0.0; 3],
            std: [1.0 / 255.0; 3],
            ..PreprocessConfig::square(2)
        };
        let cfg = PreprocessConfig { height: 1, ..cfg };
        let (t, _) = preprocess(&img, &cfg, None).unwrap();
        // block (0..2, 0..2): 0, 10, 100, 110 -> 55; block (2..4): 20, 30, 120, 130 -> 75
        assert!((pixel(&t, 0, 0, 0) - 55.0).abs() < 1e-3);
        assert!((pixel(&t, 0, 0, 1) - 75.0).abs() < 1e-3);
    }

    #[test]
    fn area_with_fractional_scale_keeps_the_mean_and_constant_images() {
        let mut img = RgbImage::new(7, 5);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = Rgb([(x * 30) as u8, (y * 50) as u8, 200]);
        }
        let cfg = PreprocessConfig {
            width: 3,
            height: 2,
            mean: [0.0; 3],
            std: [1.0 / 255.0; 3],
            ..PreprocessConfig::default()
        };
        let (t, _) = preprocess(&img, &cfg, None).unwrap();
        let mean_in: f32 = (0..7).map(|x| (x * 30) as f32).sum::<f32>() / 7.0;
        let mean_out: f32 = (0..2)
            .flat_map(|y| (0..3).map(move |x| (y, x)))
            .map(|(y, x)| pixel(&t, 0, y, x))
            .sum::<f32>()
            / 6.0;
        assert!((mean_in - mean_out).abs() < 1e-3, "{mean_in} vs {mean_out}");
        for y in 0..2 {
            for x in 0..3 {
                assert!((pixel(&t, 2, y, x) - 200.0).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn bgr_order_and_per_channel_statistics() {
        let img = RgbImage::from_pixel(2, 2, Rgb([255, 0, 0]));
        let cfg = PreprocessConfig {
            channel_order: ChannelOrder::Bgr,
            mean: [0.5, 0.25, 0.0],
            std: [0.5, 0.25, 1.0],
            ..PreprocessConfig::square(2)
        };
        let (t, _) = preprocess(&img, &cfg, None).unwrap();
        assert_eq!(pixel(&t, 0, 0, 0), 0.0); // blue plane first: (0 - 0) / 1
        assert_eq!(pixel(&t, 1, 0, 0), -1.0); // green: (0 - 0.25) / 0.25
        assert_eq!(pixel(&t, 2, 0, 0), 1.0); // red last: (1 - 0.5) / 0.5
    }

    #[test]
    fn roi_crop_is_resized_and_mapped_back_into_place() {
        let mut img = RgbImage::from_pixel(10, 8, Rgb([0, 0, 0]));
        for y in 2..6 {
            for x in 4..8 {
                img.put_pixel(x, y, Rgb([255, 255, 255]));
            }
        }
        let roi = Rect { x: 4, y: 2, width: 4, height: 4 };
        let (t, g) = preprocess(&img, &PreprocessConfig::square(8), Some(roi)).unwrap();
        assert!(t.data.iter().all(|&v| (v - 1.0).abs() < 1e-6), "crop is all white");
        // Cup scores everywhere on the network input come back as the crop, in place.
        let scores: Vec<f32> = [1.0, 0.0, 0.0].iter().flat_map(|&v| [v; 64]).collect();
        let spec = crate::postprocess::OutputSpec::seed();
        let back = crate::postprocess::postprocess(&scores, &[1, 3, 8, 8], &spec, &g).unwrap();
        assert_eq!(back.dimensions(), (10, 8));
        assert_eq!(back.count(Class::Cup), 16);
        assert_eq!(back.get(4, 2), Class::Cup);
        assert_eq!(back.get(3, 2), Class::Background);
        assert_eq!(back.get(8, 5), Class::Background);

        let outside = Rect { x: 8, y: 0, width: 4, height: 4 };
        let err = preprocess(&img, &PreprocessConfig::square(8), Some(outside)).unwrap_err();
        assert!(matches!(err, PreprocessError::RoiOutside { .. }));
    }

    #[test]
    fn to_network_is_identity_at_equal_size() {
        let mut m = LabelMap::filled(6, 4, Class::Background);
        m.set(2, 1, Class::Rim);
        m.set(3, 2, Class::Cup);
        let g = Geometry { original: (6, 4), crop: Rect::full(6, 4), network: (6, 4) };
        assert_eq!(g.to_network(&m), m);
    }

    #[test]
    fn invalid_configs_and_empty_images_are_refused() {
        let img = RgbImage::new(4, 4);
        let zero_std = PreprocessConfig { std: [0.5, 0.0, 0.5], ..PreprocessConfig::square(4) };
        assert!(matches!(
            preprocess(&img, &zero_std, None),
            Err(PreprocessError::InvalidConfig(_))
        ));
        let empty = RgbImage::new(0, 3);
        assert!(matches!(
            preprocess(&empty, &PreprocessConfig::square(4), None),
            Err(PreprocessError::EmptyImage { .. })
        ));
    }

    #[test]
    fn mirror_reflects_without_repeating_the_edge_and_wraps_far_out() {
        let got: Vec<u32> = (-4..8).map(|i| mirror_index(i, 4)).collect();
        // positions -4..8 over 0 1 2 3: ... 2 1 | 0 1 2 3 | 2 1 0 1 ...
        assert_eq!(got, [2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1]);
        assert_eq!(mirror_index(-100, 1), 0);
        assert_eq!(mirror_index(1_000_003, 4), mirror_index(1_000_003 % 6, 4));
    }

    #[test]
    fn roi_policy_crops_a_square_inside_the_photograph() {
        let p = RoiPolicy { context: 2.0, min_side_fraction: 0.1 };
        let r = p.crop_around(20.0, 50.0, 30.0, 200, 100);
        assert_eq!(r, Rect { x: 0, y: 20, width: 60, height: 60 }, "shifted right to stay inside");
        let tiny = p.crop_around(100.0, 50.0, 1.0, 200, 100);
        assert_eq!(tiny.width, 10, "min side fraction of the shorter side");
        let huge = p.crop_around(100.0, 50.0, 500.0, 200, 100);
        assert_eq!(huge, Rect { x: 0, y: 0, width: 200, height: 100 });
    }

    #[test]
    fn crop_for_centres_on_the_disc_box() {
        let mut m = LabelMap::filled(100, 80, Class::Background);
        for y in 30..40 {
            for x in 50..56 {
                m.set(x, y, Class::Rim);
            }
        }
        m.set(52, 35, Class::Cup);
        assert_eq!(disc_box(&m), Some((50, 30, 55, 39)));
        let p = RoiPolicy { context: 3.0, min_side_fraction: 0.0 };
        // Centre (53, 35), diameter 10 -> side 30.
        assert_eq!(p.crop_for(&m), Some(Rect { x: 38, y: 20, width: 30, height: 30 }));
        assert_eq!(p.crop_for(&LabelMap::filled(5, 5, Class::Background)), None);
        // The same map standing for a photograph four times as large: box, centre and side
        // scale with it (centre (212, 140), diameter 40 -> side 120).
        assert_eq!(
            p.crop_for_scaled(&m, 400, 320),
            Some(Rect { x: 152, y: 80, width: 120, height: 120 })
        );
    }
}
