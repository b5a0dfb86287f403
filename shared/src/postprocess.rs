//! From network output to a clean cup/rim/background mask on the photograph: scores
//! interpolated onto the photograph's pixels, argmax, one disc without holes, one cup inside it.

use serde::{Deserialize, Serialize};

use crate::error::PostprocessError;
use crate::labels::{Class, LabelMap};
use crate::preprocess::{Geometry, Rect, Tensor4};

/// What the output channels hold.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// Unnormalised scores; softmax is monotonic, so argmax needs none.
    Logits,
    /// Per-class probabilities (softmax already applied).
    Probabilities,
}

/// The meaning of a stage's output: channel `i` scores `classes[i]`. A disc locator uses
/// `[Background, Rim]` (its "rim" is the whole disc); a segmenter `[Cup, Rim, Background]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    pub kind: OutputKind,
    pub classes: Vec<Class>,
}

impl OutputSpec {
    /// The seed's three-class softmax over cup, rim, background.
    pub fn seed() -> Self {
        Self { kind: OutputKind::Logits, classes: Class::ALL.to_vec() }
    }

    fn validate(&self) -> Result<(), PostprocessError> {
        let mut seen = std::collections::BTreeSet::new();
        if self.classes.is_empty() || !self.classes.iter().all(|c| seen.insert(*c)) {
            return Err(PostprocessError::ClassMap(self.classes.clone()));
        }
        Ok(())
    }
}

/// The anatomical clean-up of a predicted map: the largest 8-connected disc with its holes
/// filled; inside it, the largest 8-connected cup with its holes filled; rim elsewhere in the
/// disc. No disc gives an all-background map (and no cup).
pub fn clean(labels: &LabelMap) -> LabelMap {
    let (w, h) = (labels.width() as usize, labels.height() as usize);
    let disc = largest_component(&labels.disc_mask(), w, h);
    let mut out = LabelMap::filled(labels.width(), labels.height(), Class::Background);
    // The holes and the cup lie inside the disc's box: fill and label there only (a crop at a
    // full-size photograph's scale has millions of pixels, the disc a fraction of them). With
    // a pixel of margin, the box's border is outside the disc, so a flood from it reaches what
    // a flood from the photograph's border would.
    let Some((x0, y0, x1, y1)) = bounds(&disc, w) else {
        return out;
    };
    let (bx, by) = (x0.saturating_sub(1), y0.saturating_sub(1));
    let (bw, bh) = ((x1 + 1).min(w - 1) - bx + 1, (y1 + 1).min(h - 1) - by + 1);
    let at = |i: usize| (by + i / bw) * w + bx + i % bw;
    let boxed: Vec<bool> = (0..bw * bh).map(|i| disc[at(i)]).collect();
    let disc = fill_holes(&boxed, bw, bh);
    let cup_in_disc: Vec<bool> =
        (0..bw * bh).map(|i| disc[i] && labels.classes()[at(i)] == Class::Cup).collect();
    let cup = fill_holes(&largest_component(&cup_in_disc, bw, bh), bw, bh);
    for (i, (&d, &c)) in disc.iter().zip(&cup).enumerate() {
        if d {
            let (x, y) = (bx + i % bw, by + i / bw);
            out.set(x as u32, y as u32, if c { Class::Cup } else { Class::Rim });
        }
    }
    out
}

/// The inclusive box `(x0, y0, x1, y1)` of the set pixels of a row-major mask `w` wide.
fn bounds(mask: &[bool], w: usize) -> Option<(usize, usize, usize, usize)> {
    let mut b: Option<(usize, usize, usize, usize)> = None;
    for (y, row) in mask.chunks_exact(w.max(1)).enumerate() {
        let (Some(first), Some(last)) = (row.iter().position(|&v| v), row.iter().rposition(|&v| v))
        else {
            continue;
        };
        b = Some(match b {
            None => (first, y, last, y),
            Some((x0, y0, x1, _)) => (x0.min(first), y0, x1.max(last), y),
        });
    }
    b
}

/// The whole post-processing road of a single-image output: [`postprocess_placed`], pasted
/// into an all-background photograph.
///
/// # Shapes
/// - `output`: `[1, C, H, W]` where `(W, H)` is `geometry.network`
pub fn postprocess(
    output: &[f32],
    shape: &[usize],
    spec: &OutputSpec,
    geometry: &Geometry,
) -> Result<LabelMap, PostprocessError> {
    Ok(postprocess_placed(output, shape, spec, geometry)?.paste())
}

/// The scores interpolated bilinearly onto every photograph pixel of the crop, then argmax
/// and [`clean`] there; the crop-sized map comes back placed on the photograph. Interpolating
/// scores rather than labels puts the boundary where the classes' scores cross, between
/// network pixels, instead of on a staircase of network pixels: a crop is usually larger than
/// the network input.
///
/// # Shapes
/// - `output`: `[1, C, H, W]` where `(W, H)` is `geometry.network`
pub fn postprocess_placed(
    output: &[f32],
    shape: &[usize],
    spec: &OutputSpec,
    geometry: &Geometry,
) -> Result<Placed, PostprocessError> {
    spec.validate()?;
    let (nw, nh) = (geometry.network.0 as usize, geometry.network.1 as usize);
    let c = spec.classes.len();
    if shape != [1, c, nh, nw] || nw == 0 || nh == 0 {
        return Err(PostprocessError::Shape { shape: shape.to_vec(), channels: c });
    }
    let plane = nw * nh;
    if output.len() != c * plane {
        return Err(PostprocessError::Length {
            shape: shape.to_vec(),
            expected: c * plane,
            actual: output.len(),
        });
    }
    if let Some(i) = output.iter().position(|v| !v.is_finite()) {
        let p = i % plane;
        return Err(PostprocessError::NonFinite {
            batch: 0,
            channel: i / plane,
            x: p % nw,
            y: p / nw,
        });
    }
    // The argmax of `score(ch)` over the channels; ties go to the first channel.
    let argmax = |score: &dyn Fn(usize) -> f32| {
        let (mut best, mut best_v) = (0usize, f32::NEG_INFINITY);
        for ch in 0..c {
            let v = score(ch);
            if v > best_v {
                best_v = v;
                best = ch;
            }
        }
        best
    };
    let network_argmax: Vec<usize> =
        (0..plane).map(|p| argmax(&|ch| output[ch * plane + p])).collect();
    let crop = geometry.crop;
    let xs = taps(crop.width, nw);
    let ys = taps(crop.height, nh);
    let mut data = Vec::with_capacity(xs.len() * ys.len());
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let corners = [y0 * nw + x0, y0 * nw + x1, y1 * nw + x0, y1 * nw + x1];
            let first = network_argmax[corners[0]];
            // Where the four network pixels around this one rank the same class first, so
            // does any convex blend of their scores: only pixels along a boundary (a few
            // percent of a crop at a camera frame's scale) are interpolated.
            let best = if corners[1..].iter().all(|&p| network_argmax[p] == first) {
                first
            } else {
                argmax(&|ch| {
                    let p = &output[ch * plane..(ch + 1) * plane];
                    let top = p[corners[0]] * (1.0 - fx) + p[corners[1]] * fx;
                    let bottom = p[corners[2]] * (1.0 - fx) + p[corners[3]] * fx;
                    top * (1.0 - fy) + bottom * fy
                })
            };
            data.push(spec.classes[best]);
        }
    }
    let local = clean(
        &LabelMap::from_classes(crop.width, crop.height, data).expect("crop-sized by construction"),
    );
    Ok(Placed { map: local, x: crop.x, y: crop.y, size: geometry.original })
}

/// A class map covering part of a photograph of `size` pixels, its top-left pixel at
/// `(x, y)`; the rest of the photograph is background. Post-processing works on the disc's
/// neighbourhood only and pastes it into the photograph once: a camera frame has millions of
/// pixels, the disc a small part of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub map: LabelMap,
    pub x: u32,
    pub y: u32,
    pub size: (u32, u32),
}

impl Placed {
    /// A map that covers its whole photograph.
    pub fn whole(map: LabelMap) -> Self {
        let size = map.dimensions();
        Self { map, x: 0, y: 0, size }
    }

    /// Nothing placed on a photograph of `size` pixels: all background.
    pub fn empty(size: (u32, u32)) -> Self {
        Self { map: LabelMap::filled(0, 0, Class::Background), x: 0, y: 0, size }
    }

    /// The photograph-sized map: the part placed into an all-background photograph (parts
    /// reaching past the photograph's edges are cut).
    pub fn paste(self) -> LabelMap {
        if (self.x, self.y) == (0, 0) && self.map.dimensions() == self.size {
            return self.map;
        }
        self.cut(Rect::full(self.size.0, self.size.1))
    }

    /// The window `r` of the photograph (in its pixels, inside it): the placed part where it
    /// overlaps `r`, background elsewhere.
    pub fn cut(&self, r: Rect) -> LabelMap {
        let mut out = LabelMap::filled(r.width, r.height, Class::Background);
        let (mw, mh) = self.map.dimensions();
        // The overlap of the map and the window, in photograph pixels.
        let (x0, x1) = (self.x.max(r.x), (self.x + mw).min(r.x + r.width));
        let (y0, y1) = (self.y.max(r.y), (self.y + mh).min(r.y + r.height));
        if x0 >= x1 {
            return out;
        }
        let cols = (x1 - x0) as usize;
        for y in y0..y1 {
            let from = (y - self.y) as usize * mw as usize + (x0 - self.x) as usize;
            let to = (y - r.y) as usize * r.width as usize + (x0 - r.x) as usize;
            out.classes_mut()[to..to + cols]
                .copy_from_slice(&self.map.classes()[from..from + cols]);
        }
        out
    }
}

/// For each of `out_len` output pixels, the two input pixels that bracket its centre and the
/// weight of the second (pixel-centre alignment, clamped at the edges).
fn taps(out_len: u32, in_len: usize) -> Vec<(usize, usize, f32)> {
    let last = in_len.saturating_sub(1);
    (0..out_len)
        .map(|i| {
            let s =
                ((i as f32 + 0.5) * in_len as f32 / out_len as f32 - 0.5).clamp(0.0, last as f32);
            let i0 = (s.floor() as usize).min(last);
            (i0, (i0 + 1).min(last), s - i0 as f32)
        })
        .collect()
}

/// How a model's scores become the stored mask, beyond its stages: chosen when the bundle is
/// exported, carried in its manifest (format minors 1 and 2 added these fields, in this order,
/// at the manifest's end), and applied through [`InferenceOptions::scores`] and
/// [`InferenceOptions::fit`] by the tract runtime on host and device and by the burn road
/// (`papilla evaluate --model RUN_DIR --shape-fit --tta`), so a run and its bundle are scored
/// alike.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct InferenceOptions {
    /// The shape fitted to the segmenter's clean disc and cup.
    pub shape_fit: ShapeFit,
    /// How far a disc-centred crop is padded, in multiples of its longer side, for the
    /// segmenter to see the disc at its training scale; `None`: not chosen for this model.
    pub disc_centred_pad: Option<f32>,
    /// The segmenter's test-time augmentation.
    pub tta: TestTimeAugmentation,
}

impl InferenceOptions {
    /// The segmenter's scores for `input` (`[N, C, H, W]`) under the test-time augmentation:
    /// `net` gives the scores of a batch, `[N, K, H, W]` at the input's width; with a
    /// horizontal flip it also runs on the mirrored batch, whose scores are mirrored back and
    /// averaged with the plain pass's. `input` is left mirrored in that case.
    pub fn scores<E>(
        &self,
        input: &mut Tensor4,
        mut net: impl FnMut(&Tensor4) -> Result<Vec<f32>, E>,
    ) -> Result<Vec<f32>, E> {
        let mut scores = net(input)?;
        if self.tta == TestTimeAugmentation::HorizontalFlip {
            let width = input.shape[3];
            flip_width(&mut input.data, width);
            let mut mirrored = net(input)?;
            debug_assert_eq!(mirrored.len(), scores.len(), "both passes score the same shape");
            debug_assert_eq!(scores.len() % width.max(1), 0, "scores at the input's width");
            flip_width(&mut mirrored, width);
            for (a, b) in scores.iter_mut().zip(&mirrored) {
                *a = 0.5 * (*a + *b);
            }
        }
        Ok(scores)
    }

    /// The final mask: `mask` (already clean) with the shape fit applied.
    pub fn fit(&self, mask: LabelMap) -> LabelMap {
        self.fit_placed(Placed::whole(mask)).paste()
    }

    /// [`InferenceOptions::fit`] of a placed map.
    pub fn fit_placed(&self, placed: Placed) -> Placed {
        match self.shape_fit {
            ShapeFit::None => placed,
            ShapeFit::Ellipse => fit_ellipses_placed(placed),
        }
    }
}

/// Reverses every row of a row-major tensor whose rows are `width` long: the left-right mirror
/// image of each plane of an `[N, C, H, W]` tensor.
pub fn flip_width(data: &mut [f32], width: usize) {
    for row in data.chunks_exact_mut(width.max(1)) {
        row.reverse();
    }
}

/// Test-time augmentation of the segmenter, chosen when the bundle is exported and applied by
/// every reader of it (host and device run the same runtime).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TestTimeAugmentation {
    /// One pass.
    #[default]
    None,
    /// The crop and its left-right mirror image; the mirrored pass's scores are mirrored back
    /// and the two averaged before argmax (a fundus flipped left-right is a plausible other
    /// eye, which training's flips already showed the network). Twice the segmenter's cost.
    HorizontalFlip,
}

/// The shape fitted to a segmenter's clean disc and cup, chosen when the bundle is exported.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShapeFit {
    /// The clean mask as the network drew it.
    #[default]
    None,
    /// [`fit_ellipses`].
    Ellipse,
}

/// Replaces the disc by the ellipse with its centroid, area and second-moment shape and
/// orientation, and the cup by its own such ellipse clipped to the disc's. Both are close to ellipses in the eye, and the
/// fitted ellipse evens out a boundary the network drew ragged (REFUGE train, 0.2.0 bundle:
/// Dice disc +0.002, cup +0.003). An empty or degenerate (collinear) disc is left as it is; a
/// cup of under 5 pixels, or a degenerate one, keeps its pixels inside the new disc.
pub fn fit_ellipses(labels: &LabelMap) -> LabelMap {
    fit_ellipses_placed(Placed::whole(labels.clone())).paste()
}

/// [`fit_ellipses`] of a placed map: the fit comes back placed on the ellipse's own box, which
/// may reach past the map's edges (not past the photograph's), as the fit of the pasted
/// photograph-sized map would.
pub fn fit_ellipses_placed(placed: Placed) -> Placed {
    let labels = &placed.map;
    // Moments are summed over the disc's box only: a camera frame has millions of pixels.
    let Some(bbox) = crate::preprocess::disc_box(labels) else {
        return placed;
    };
    let Some(disc_fit) = Ellipse::of(labels, bbox, |c| c != Class::Background) else {
        return placed;
    };
    let cup_fit = Ellipse::of(labels, bbox, |c| c == Class::Cup).filter(|e| e.n >= 5.0);
    // The ellipse's pixel range on the photograph; map coordinates are photograph ones less
    // the placement.
    let (px, py) = (placed.x as f64, placed.y as f64);
    let (x0, y0, x1, y1) = disc_fit.bounds(px, py, placed.size);
    let mut out = LabelMap::filled(x1 - x0, y1 - y0, Class::Background);
    let (mw, mh) = labels.dimensions();
    for y in y0..y1 {
        for x in x0..x1 {
            let (lx, ly) = (x as f64 - px, y as f64 - py);
            if !disc_fit.contains(lx, ly) {
                continue;
            }
            let in_cup = match &cup_fit {
                Some(e) => e.contains(lx, ly),
                None => {
                    let inside = lx >= 0.0 && ly >= 0.0 && lx < mw as f64 && ly < mh as f64;
                    inside && labels.get(lx as u32, ly as u32) == Class::Cup
                }
            };
            out.set(x - x0, y - y0, if in_cup { Class::Cup } else { Class::Rim });
        }
    }
    Placed { map: out, x: x0, y: y0, size: placed.size }
}

/// A filled ellipse: the points `d` from the centroid with `d' C^-1 d <= k`, where `C` is the
/// mask's covariance and `k` gives the mask's area (`pi k sqrt(det C)`). Matching the area
/// rather than taking the uniform ellipse of covariance `C` (`k = 4`) keeps a ragged edge from
/// inflating the fit: its outliers weigh in `C` quadratically.
struct Ellipse {
    cx: f64,
    cy: f64,
    /// Half-extents of the bounding box: `sqrt(k C_xx)`, `sqrt(k C_yy)`.
    rx: f64,
    ry: f64,
    inv: [f64; 3],
    k: f64,
    /// Pixels of the mask it was fitted to.
    n: f64,
}

impl Ellipse {
    /// The ellipse of the pixels of `labels` inside the inclusive box `(x0, y0, x1, y1)` whose
    /// class passes `member`.
    fn of(
        labels: &LabelMap,
        (x0, y0, x1, y1): (u32, u32, u32, u32),
        member: impl Fn(Class) -> bool,
    ) -> Option<Self> {
        let (mut n, mut sx, mut sy) = (0f64, 0f64, 0f64);
        for y in y0..=y1 {
            for x in x0..=x1 {
                if member(labels.get(x, y)) {
                    n += 1.0;
                    sx += x as f64;
                    sy += y as f64;
                }
            }
        }
        if n < 1.0 {
            return None;
        }
        let (cx, cy) = (sx / n, sy / n);
        let (mut xx, mut xy, mut yy) = (0f64, 0f64, 0f64);
        for y in y0..=y1 {
            for x in x0..=x1 {
                if member(labels.get(x, y)) {
                    let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                    xx += dx * dx;
                    xy += dx * dy;
                    yy += dy * dy;
                }
            }
        }
        // A pixel is a unit square: its own variance, 1/12 per axis, is added.
        let (xx, xy, yy) = (xx / n + 1.0 / 12.0, xy / n, yy / n + 1.0 / 12.0);
        let det = xx * yy - xy * xy;
        if det.is_nan() || det <= 1e-9 || n < 3.0 {
            return None;
        }
        let k = n / (std::f64::consts::PI * det.sqrt());
        Some(Self {
            cx,
            cy,
            rx: (k * xx).sqrt(),
            ry: (k * yy).sqrt(),
            inv: [yy / det, -xy / det, xx / det],
            k,
            n,
        })
    }

    /// Whether the point `(x, y)`, in the coordinates of the map the ellipse was fitted to,
    /// is inside.
    fn contains(&self, x: f64, y: f64) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        self.inv[0] * dx * dx + 2.0 * self.inv[1] * dx * dy + self.inv[2] * dy * dy <= self.k
    }

    /// Pixel range `[x0, x1) x [y0, y1)` of a photograph of `(w, h)` pixels that covers the
    /// ellipse, whose map has its top-left pixel at `(px, py)` of the photograph.
    fn bounds(&self, px: f64, py: f64, (w, h): (u32, u32)) -> (u32, u32, u32, u32) {
        let lo = |c: f64, r: f64| (c - r).floor().max(0.0) as u32;
        let hi = |c: f64, r: f64, n: u32| ((c + r).ceil() + 1.0).clamp(0.0, n as f64) as u32;
        let (cx, cy) = (self.cx + px, self.cy + py);
        let (x0, y0) = (lo(cx, self.rx).min(w), lo(cy, self.ry).min(h));
        (x0, y0, hi(cx, self.rx, w).max(x0), hi(cy, self.ry, h).max(y0))
    }
}

/// Component labels of `mask` with 8-connectivity; returns per-pixel labels (0 = off) and
/// the size of each component (index = label - 1).
fn components8(mask: &[bool], w: usize, h: usize) -> (Vec<u32>, Vec<usize>) {
    let mut labels = vec![0u32; mask.len()];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32 + 1;
        labels[start] = id;
        stack.push(start);
        let mut size = 0usize;
        while let Some(p) = stack.pop() {
            size += 1;
            let (x, y) = (p % w, p / w);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if (dx, dy) == (0, 0) || nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if mask[q] && labels[q] == 0 {
                        labels[q] = id;
                        stack.push(q);
                    }
                }
            }
        }
        sizes.push(size);
    }
    (labels, sizes)
}

/// The largest 8-connected component of `mask` (the first found in raster order on ties).
pub fn largest_component(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let (labels, sizes) = components8(mask, w, h);
    let Some(best) = sizes
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i as u32 + 1)
    else {
        return vec![false; mask.len()];
    };
    labels.iter().map(|&l| l == best).collect()
}

/// `mask` with every hole filled: off pixels not 4-connected to the border turn on (the
/// complement of an 8-connected shape is taken with 4-connectivity).
pub fn fill_holes(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let mut outside = vec![false; mask.len()];
    if w == 0 || h == 0 {
        return Vec::new();
    }
    // Seeds: the border's off pixels (the rows, then the columns between them).
    let border = (0..w)
        .chain((h - 1) * w..h * w)
        .chain((1..h.saturating_sub(1)).flat_map(|y| [y * w, y * w + w - 1]));
    let mut stack = Vec::new();
    for p in border {
        if !mask[p] && !outside[p] {
            outside[p] = true;
            stack.push(p);
        }
    }
    while let Some(p) = stack.pop() {
        let (x, y) = (p % w, p / w);
        let mut visit = |q: usize| {
            if !mask[q] && !outside[q] {
                outside[q] = true;
                stack.push(q);
            }
        };
        if x > 0 {
            visit(p - 1);
        }
        if x + 1 < w {
            visit(p + 1);
        }
        if y > 0 {
            visit(p - w);
        }
        if y + 1 < h {
            visit(p + w);
        }
    }
    outside.iter().map(|&o| !o).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_width_mirrors_each_row_of_each_plane() {
        // [1, 2, 2, 3]: two planes of two rows of three.
        let mut v: Vec<f32> = (0..12).map(|i| i as f32).collect();
        flip_width(&mut v, 3);
        assert_eq!(v, [2., 1., 0., 5., 4., 3., 8., 7., 6., 11., 10., 9.]);
        flip_width(&mut v, 3);
        assert_eq!(v, (0..12).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    fn flip_tta_averages_the_plain_and_the_mirrored_pass() {
        // A "network" that scores each pixel by its value plus its column: not mirror-symmetric,
        // so the flipped pass differs and the average is checked against a hand computation.
        let net = |x: &Tensor4| -> Result<Vec<f32>, ()> {
            Ok(x.data.iter().enumerate().map(|(i, v)| v + (i % 3) as f32).collect())
        };
        let input = Tensor4 { data: vec![1., 2., 3.], shape: [1, 1, 1, 3] };
        let plain = InferenceOptions::default();
        assert_eq!(plain.scores(&mut input.clone(), net).unwrap(), [1., 3., 5.]);
        let flip = InferenceOptions { tta: TestTimeAugmentation::HorizontalFlip, ..plain };
        // Mirrored input [3, 2, 1] scores [3, 3, 3]; mirrored back [3, 3, 3]; mean with [1, 3, 5].
        assert_eq!(flip.scores(&mut input.clone(), net).unwrap(), [2., 3., 4.]);
        // A symmetric network gives the plain scores back.
        let same = |x: &Tensor4| -> Result<Vec<f32>, ()> { Ok(x.data.clone()) };
        assert_eq!(flip.scores(&mut input.clone(), same).unwrap(), input.data);
    }

    /// Parses rows of `.` background, `r` rim, `c` cup.
    fn map(rows: &[&str]) -> LabelMap {
        let data = rows
            .iter()
            .flat_map(|r| r.chars())
            .map(|ch| match ch {
                'c' => Class::Cup,
                'r' => Class::Rim,
                _ => Class::Background,
            })
            .collect();
        LabelMap::from_classes(rows[0].len() as u32, rows.len() as u32, data).unwrap()
    }

    /// A geometry whose crop is the whole network-sized photograph: scores are read as they are.
    fn identity(w: u32, h: u32) -> Geometry {
        Geometry { original: (w, h), crop: Rect::full(w, h), network: (w, h) }
    }

    #[test]
    fn argmax_follows_the_class_map_and_ties_go_to_the_first_channel() {
        // 1 image, 3 channels, 1x3 pixels
        let out = [
            5.0, 0.0, 1.0, // channel 0 (cup)
            1.0, 0.0, 2.0, // channel 1 (rim)
            0.0, 0.0, 3.0, // channel 2 (background)
        ];
        let m = postprocess(&out, &[1, 3, 1, 3], &OutputSpec::seed(), &identity(3, 1)).unwrap();
        assert_eq!(m.classes(), &[Class::Cup, Class::Cup, Class::Background]);
        let locator = OutputSpec {
            kind: OutputKind::Probabilities,
            classes: vec![Class::Background, Class::Rim],
        };
        let m = postprocess(&[0.9, 0.2, 0.1, 0.8], &[1, 2, 1, 2], &locator, &identity(2, 1));
        assert_eq!(m.unwrap().classes(), &[Class::Background, Class::Rim]);
    }

    #[test]
    fn bad_output_shapes_and_nan_are_errors() {
        let spec = OutputSpec::seed();
        let g = identity(2, 1);
        assert!(matches!(
            postprocess(&[0.0; 4], &[1, 2, 1, 2], &spec, &g),
            Err(PostprocessError::Shape { .. })
        ));
        assert!(matches!(
            postprocess(&[0.0; 5], &[1, 3, 1, 2], &spec, &g),
            Err(PostprocessError::Length { expected: 6, actual: 5, .. })
        ));
        let mut out = [0.0f32; 6];
        out[3] = f32::NAN; // channel 1, pixel 1
        assert_eq!(
            postprocess(&out, &[1, 3, 1, 2], &spec, &g).unwrap_err(),
            PostprocessError::NonFinite { batch: 0, channel: 1, x: 1, y: 0 }
        );
        let dup = OutputSpec { kind: OutputKind::Logits, classes: vec![Class::Cup, Class::Cup] };
        assert!(matches!(
            postprocess(&[0.0; 4], &[1, 2, 1, 2], &dup, &g),
            Err(PostprocessError::ClassMap(_))
        ));
    }

    /// `clean` as first written, over the whole map: the box-restricted one must equal it.
    fn clean_whole_map(labels: &LabelMap) -> LabelMap {
        let (w, h) = (labels.width() as usize, labels.height() as usize);
        let disc = fill_holes(&largest_component(&labels.disc_mask(), w, h), w, h);
        let cup_in_disc: Vec<bool> =
            labels.classes().iter().zip(&disc).map(|(&c, &d)| d && c == Class::Cup).collect();
        let cup = fill_holes(&largest_component(&cup_in_disc, w, h), w, h);
        let data = disc
            .iter()
            .zip(&cup)
            .map(|(&d, &c)| match (d, c) {
                (true, true) => Class::Cup,
                (true, false) => Class::Rim,
                (false, _) => Class::Background,
            })
            .collect();
        LabelMap::from_classes(labels.width(), labels.height(), data).unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn clean_in_the_disc_box_equals_clean_over_the_whole_map(
            w in 1u32..14,
            h in 1u32..14,
            // Mostly background, so that discs with holes, specks and border contact occur.
            cells in proptest::collection::vec(0u8..10, 196),
        ) {
            let data = (0..(w * h) as usize)
                .map(|i| match cells[i] {
                    0..=4 => Class::Background,
                    5..=7 => Class::Rim,
                    _ => Class::Cup,
                })
                .collect();
            let m = LabelMap::from_classes(w, h, data).unwrap();
            proptest::prop_assert_eq!(clean(&m), clean_whole_map(&m));
        }
    }

    #[test]
    fn clean_keeps_the_largest_disc_and_drops_a_stray_speck() {
        let m = map(&[
            "r.......", //
            "..rrr...", //
            "..rcr...", //
            "..rrr..c", //
        ]);
        let cleaned = clean(&m);
        assert_eq!(cleaned.get(0, 0), Class::Background, "speck removed");
        assert_eq!(cleaned.get(7, 3), Class::Background, "cup speck outside the disc removed");
        assert_eq!(cleaned.get(3, 2), Class::Cup);
        assert_eq!(cleaned.count(Class::Rim), 8);
    }

    #[test]
    fn clean_fills_holes_in_disc_and_cup() {
        let m = map(&[
            "rrrrrrr", //
            "rcccccr", //
            "rcc.ccr", // hole in the cup
            "rcccccr", //
            "rrr.rrr", // enclosed by rim: a hole in the disc
            "rrrrrrr", //
        ]);
        let cleaned = clean(&m);
        assert_eq!(cleaned.get(3, 2), Class::Cup, "cup hole filled with cup");
        assert_eq!(cleaned.get(3, 4), Class::Rim, "disc hole filled with rim");
        assert_eq!(cleaned.count(Class::Background), 0);
    }

    #[test]
    fn a_gap_open_to_the_border_is_not_a_hole() {
        let m = map(&[
            "rr.rr", //
            "rr.rr", //
            "rrrrr", //
        ]);
        assert_eq!(clean(&m).count(Class::Background), 2);
    }

    #[test]
    fn cup_outside_the_disc_is_dropped_and_the_largest_cup_kept() {
        let m = map(&[
            "cc.......", //
            "cc.rrrrr.", //
            "...rccrc.", //
            "...rccrr.", //
            "...rrrrr.", //
        ]);
        let cleaned = clean(&m);
        // The 2x2 cup block at the top left is a disc component of its own (4 pixels); the
        // right disc has 20, so the left block goes.
        assert_eq!(cleaned.get(0, 0), Class::Background);
        assert_eq!(cleaned.count(Class::Cup), 4, "the single-pixel cup at (7, 2) is dropped");
        assert_eq!(cleaned.get(7, 2), Class::Rim);
    }

    #[test]
    fn empty_prediction_stays_empty() {
        let m = LabelMap::filled(4, 3, Class::Background);
        assert_eq!(clean(&m), m);
    }

    #[test]
    fn diagonal_pixels_are_one_component() {
        let m = map(&[
            "r..", //
            ".r.", //
            "..r", //
        ]);
        assert_eq!(clean(&m).count(Class::Rim), 3);
    }

    /// A filled axis-aligned ellipse of semi-axes `a`, `b` centred at `(cx, cy)`, its radius
    /// modulated by `1 + wobble * sin(9 angle)`: a ragged edge with the ellipse's moments.
    fn ellipse_mask(
        w: u32,
        h: u32,
        (cx, cy): (f64, f64),
        (a, b): (f64, f64),
        wobble: f64,
    ) -> Vec<bool> {
        (0..w * h)
            .map(|p| {
                let (x, y) = (((p % w) as f64 - cx) / a, ((p / w) as f64 - cy) / b);
                x.hypot(y) <= 1.0 + wobble * (9.0 * y.atan2(x)).sin()
            })
            .collect()
    }

    #[test]
    fn fitted_ellipses_recover_an_elliptic_disc_and_cup_under_a_ragged_edge() {
        let (w, h) = (80, 70);
        let shapes = |wobble| {
            let disc = ellipse_mask(w, h, (40.0, 35.0), (20.0, 25.0), wobble);
            let cup = ellipse_mask(w, h, (42.0, 33.0), (8.0, 11.0), wobble);
            LabelMap::from_disc_cup(w, h, &disc, &cup).unwrap()
        };
        let truth = shapes(0.0);
        let ragged = shapes(0.12);
        let fitted = fit_ellipses(&ragged);
        let wrong =
            |m: &LabelMap| m.classes().iter().zip(truth.classes()).filter(|(a, b)| a != b).count();
        assert!(wrong(&ragged) >= 200, "the damage is real: {}", wrong(&ragged));
        assert!(wrong(&fitted) * 4 < wrong(&ragged), "{} vs {}", wrong(&fitted), wrong(&ragged));
        let disc_area = |m: &LabelMap| (m.count(Class::Rim) + m.count(Class::Cup)) as f64;
        assert!((disc_area(&fitted) / disc_area(&truth) - 1.0).abs() < 0.03);
        let cup_area = |m: &LabelMap| m.count(Class::Cup) as f64;
        assert!((cup_area(&fitted) / cup_area(&truth) - 1.0).abs() < 0.08);
        assert_eq!(fitted.get(40, 50), Class::Rim, "below the cup");
        assert_eq!(fitted.get(42, 33), Class::Cup);
        assert_eq!(fitted.get(40, 5), Class::Background);
        assert_eq!(fit_ellipses(&truth).get(40, 11), Class::Rim, "the top of the disc stays");
    }

    #[test]
    fn a_placed_fit_equals_the_fit_of_the_pasted_map_even_past_the_maps_edge() {
        // A ragged disc cut by the right edge of a 30x40 map placed at (50, 10) of a 90x60
        // photograph: its ellipse reaches past the map, as it does on the photograph.
        let (w, h) = (30, 40);
        let disc = ellipse_mask(w, h, (24.0, 20.0), (9.0, 13.0), 0.1);
        let cup = ellipse_mask(w, h, (25.0, 19.0), (4.0, 6.0), 0.1);
        let map = LabelMap::from_disc_cup(w, h, &disc, &cup).unwrap();
        let placed = Placed { map, x: 50, y: 10, size: (90, 60) };
        let whole = fit_ellipses(&placed.clone().paste());
        let fitted = fit_ellipses_placed(placed.clone());
        assert!(fitted.x + fitted.map.width() > 80, "the fit reaches past the map");
        assert_eq!(fitted.paste(), whole);
        // Near the photograph's own edge the fit is cut there.
        let edge = Placed { x: 60, ..placed };
        assert_eq!(fit_ellipses_placed(edge.clone()).paste(), fit_ellipses(&edge.paste()));
    }

    #[test]
    fn a_cut_window_takes_the_placed_part_where_they_overlap() {
        let map = LabelMap::filled(3, 2, Class::Rim);
        let placed = Placed { map, x: 4, y: 3, size: (10, 10) };
        let w = placed.cut(Rect { x: 5, y: 2, width: 4, height: 3 });
        assert_eq!(w.dimensions(), (4, 3));
        // Photograph pixels (5..7, 3..5) are rim: window (0..2, 1..3).
        assert_eq!(w.count(Class::Rim), 4);
        assert_eq!(
            (w.get(0, 1), w.get(1, 2), w.get(2, 1)),
            (Class::Rim, Class::Rim, Class::Background)
        );
        assert_eq!(w.get(0, 0), Class::Background);
        let apart = placed.cut(Rect { x: 0, y: 0, width: 4, height: 3 });
        assert_eq!(apart.count(Class::Background), 12, "no overlap");
        assert_eq!(Placed::empty((3, 2)).paste(), LabelMap::filled(3, 2, Class::Background));
    }

    #[test]
    fn paste_cuts_what_reaches_past_the_photograph() {
        let map = LabelMap::filled(3, 2, Class::Cup);
        let m = Placed { map, x: 4, y: 3, size: (6, 4) }.paste();
        assert_eq!(m.dimensions(), (6, 4));
        assert_eq!(m.count(Class::Cup), 2);
        assert_eq!(m.get(4, 3), Class::Cup);
        assert_eq!(m.get(5, 3), Class::Cup);
        assert_eq!(m.get(4, 2), Class::Background);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn interpolating_boundary_pixels_only_equals_interpolating_every_pixel(
            (nw, nh) in (1usize..7, 1usize..7),
            (cw, ch) in (1u32..40, 1u32..40),
            // Coarse scores, so that ties and flat regions occur.
            scores in proptest::collection::vec(-3i8..4, 3 * 36),
        ) {
            let plane = nw * nh;
            let out: Vec<f32> = (0..3 * plane).map(|i| scores[i] as f32 * 0.5).collect();
            let g = Geometry { original: (cw, ch), crop: Rect::full(cw, ch), network: (nw as u32, nh as u32) };
            let fast = postprocess(&out, &[1, 3, nh, nw], &OutputSpec::seed(), &g).unwrap();
            // Every pixel interpolated, argmax with ties to the first channel, then clean.
            let (xs, ys) = (taps(cw, nw), taps(ch, nh));
            let mut data = Vec::new();
            for &(y0, y1, fy) in &ys {
                for &(x0, x1, fx) in &xs {
                    let v = |c: usize| {
                        let p = &out[c * plane..(c + 1) * plane];
                        let top = p[y0 * nw + x0] * (1.0 - fx) + p[y0 * nw + x1] * fx;
                        let bottom = p[y1 * nw + x0] * (1.0 - fx) + p[y1 * nw + x1] * fx;
                        top * (1.0 - fy) + bottom * fy
                    };
                    let mut best = 0;
                    for c in 1..3 {
                        if v(c) > v(best) {
                            best = c;
                        }
                    }
                    data.push(Class::ALL[best]);
                }
            }
            let direct = clean(&LabelMap::from_classes(cw, ch, data).unwrap());
            proptest::prop_assert_eq!(fast, direct);
        }
    }

    #[test]
    fn fitting_leaves_empty_and_degenerate_discs_alone_and_keeps_a_tiny_cup() {
        let empty = LabelMap::filled(5, 4, Class::Background);
        assert_eq!(fit_ellipses(&empty), empty);
        let line = map(&[
            ".....", //
            "rrrrr", //
            ".....", //
        ]);
        assert_eq!(fit_ellipses(&line), line);
        let tiny = map(&[
            "..rrr..", //
            ".rrrrr.", //
            "rrrcrrr", //
            ".rrrrr.", //
            "..rrr..", //
        ]);
        let fitted = fit_ellipses(&tiny);
        assert_eq!(fitted.count(Class::Cup), 1);
        assert_eq!(fitted.get(3, 2), Class::Cup);
    }

    #[test]
    fn postprocess_pastes_the_crop_into_a_background_photograph() {
        // 2x2 network output: the top-left pixel is cup, the rest background; the crop is the
        // 4x4 block at (2, 1) of an 8x6 photograph.
        let out = [
            9.0, 0.0, 0.0, 0.0, // cup
            0.0, 0.0, 0.0, 0.0, // rim
            0.0, 1.0, 1.0, 1.0, // background
        ];
        let crop = Rect { x: 2, y: 1, width: 4, height: 4 };
        let g = Geometry { original: (8, 6), crop, network: (2, 2) };
        let m = postprocess(&out, &[1, 3, 2, 2], &OutputSpec::seed(), &g).unwrap();
        assert_eq!(m.dimensions(), (8, 6));
        assert_eq!(m.get(2, 1), Class::Cup);
        assert_eq!(m.get(3, 2), Class::Cup);
        assert_eq!(m.get(5, 4), Class::Background, "the far corner of the crop");
        assert_eq!(m.get(0, 0), Class::Background, "outside the crop");
        // Bilinear: (4, 1) lies a quarter of the way from the cup pixel's centre to the next
        // (cup 9 * 0.25 = 2.25 against background 0.75), (5, 1) beyond it.
        assert_eq!(m.get(4, 1), Class::Cup);
        assert_eq!(m.get(5, 1), Class::Background);
        assert_eq!(m.count(Class::Cup), 8);
        assert!(postprocess(&out, &[1, 3, 1, 4], &OutputSpec::seed(), &g).is_err());
    }

    #[test]
    fn postprocess_puts_the_boundary_where_the_scores_cross() {
        // Two network pixels, cup score 3 then -1, background 0: the scores cross three
        // quarters of the way between the pixel centres. At 8 photograph pixels (centres at
        // network x = -0.375 + 0.25 i) that is between i = 4 and 5: five cup pixels, where
        // nearest neighbour would give four.
        let out = [3.0, -1.0, -9.0, -9.0, 0.0, 0.0];
        let g = Geometry { original: (8, 1), crop: Rect::full(8, 1), network: (2, 1) };
        let m = postprocess(&out, &[1, 3, 1, 2], &OutputSpec::seed(), &g).unwrap();
        let cups: Vec<bool> = m.classes().iter().map(|&c| c == Class::Cup).collect();
        assert_eq!(cups, [true, true, true, true, true, false, false, false]);
    }

    #[test]
    fn postprocess_reports_the_first_non_finite_score() {
        let mut out = [0.0f32; 12];
        out[4 + 3] = f32::INFINITY; // rim channel, pixel (1, 1)
        let g = Geometry { original: (2, 2), crop: Rect::full(2, 2), network: (2, 2) };
        assert_eq!(
            postprocess(&out, &[1, 3, 2, 2], &OutputSpec::seed(), &g).unwrap_err(),
            PostprocessError::NonFinite { batch: 0, channel: 1, x: 1, y: 1 }
        );
    }
}
