//! From network output to a clean cup/rim/background mask on the photograph: argmax, one disc
//! without holes, one cup inside it, back to the original size.

use serde::{Deserialize, Serialize};

use crate::error::PostprocessError;
use crate::labels::{Class, LabelMap};
use crate::preprocess::Geometry;

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

/// Argmax over channels for every image of a batch; ties go to the lower channel.
///
/// # Shapes
/// - `output`: `[N, C, H, W]` with `C == spec.classes.len()`
/// - returns N maps of `W`x`H`
pub fn class_maps(
    output: &[f32],
    shape: &[usize],
    spec: &OutputSpec,
) -> Result<Vec<LabelMap>, PostprocessError> {
    spec.validate()?;
    let &[n, c, h, w] = shape else {
        return Err(PostprocessError::Shape {
            shape: shape.to_vec(),
            channels: spec.classes.len(),
        });
    };
    if c != spec.classes.len() || h == 0 || w == 0 {
        return Err(PostprocessError::Shape {
            shape: shape.to_vec(),
            channels: spec.classes.len(),
        });
    }
    let expected = n * c * h * w;
    if output.len() != expected {
        return Err(PostprocessError::Length {
            shape: shape.to_vec(),
            expected,
            actual: output.len(),
        });
    }
    let plane = h * w;
    let mut maps = Vec::with_capacity(n);
    for b in 0..n {
        let item = &output[b * c * plane..(b + 1) * c * plane];
        let mut data = Vec::with_capacity(plane);
        for p in 0..plane {
            let mut best = 0usize;
            let mut best_v = f32::NEG_INFINITY;
            for ch in 0..c {
                let v = item[ch * plane + p];
                if !v.is_finite() {
                    return Err(PostprocessError::NonFinite {
                        batch: b,
                        channel: ch,
                        x: p % w,
                        y: p / w,
                    });
                }
                if v > best_v {
                    best_v = v;
                    best = ch;
                }
            }
            data.push(spec.classes[best]);
        }
        maps.push(LabelMap::from_classes(w as u32, h as u32, data).expect("plane = w * h"));
    }
    Ok(maps)
}

/// The anatomical clean-up of a predicted map: the largest 8-connected disc with its holes
/// filled; inside it, the largest 8-connected cup with its holes filled; rim elsewhere in the
/// disc. No disc gives an all-background map (and no cup).
pub fn clean(labels: &LabelMap) -> LabelMap {
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
    LabelMap::from_classes(labels.width(), labels.height(), data).expect("same size")
}

/// The whole post-processing road of a single-image output: argmax, [`clean`], back onto the
/// photograph with `geometry`.
///
/// # Shapes
/// - `output`: `[1, C, H, W]` where `(W, H)` is `geometry.network`
pub fn postprocess(
    output: &[f32],
    shape: &[usize],
    spec: &OutputSpec,
    geometry: &Geometry,
) -> Result<LabelMap, PostprocessError> {
    let expected =
        [1, spec.classes.len(), geometry.network.1 as usize, geometry.network.0 as usize];
    if shape != expected {
        return Err(PostprocessError::Shape {
            shape: shape.to_vec(),
            channels: spec.classes.len(),
        });
    }
    let map = class_maps(output, shape, spec)?.remove(0);
    Ok(geometry.to_original(&clean(&map)))
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
    let mut stack: Vec<usize> = (0..mask.len())
        .filter(|&p| {
            let (x, y) = (p % w, p / w);
            (x == 0 || y == 0 || x == w - 1 || y == h - 1) && !mask[p]
        })
        .collect();
    for &p in &stack {
        outside[p] = true;
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
    use crate::preprocess::Rect;

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

    #[test]
    fn argmax_follows_the_class_map_and_ties_go_to_the_first_channel() {
        // 1 image, 3 channels, 1x3 pixels
        let out = [
            5.0, 0.0, 1.0, // channel 0 (cup)
            1.0, 0.0, 2.0, // channel 1 (rim)
            0.0, 0.0, 3.0, // channel 2 (background)
        ];
        let maps = class_maps(&out, &[1, 3, 1, 3], &OutputSpec::seed()).unwrap();
        assert_eq!(maps[0].classes(), &[Class::Cup, Class::Cup, Class::Background]);
        let locator = OutputSpec {
            kind: OutputKind::Probabilities,
            classes: vec![Class::Background, Class::Rim],
        };
        let maps = class_maps(&[0.9, 0.2, 0.1, 0.8], &[1, 2, 1, 2], &locator).unwrap();
        assert_eq!(maps[0].classes(), &[Class::Background, Class::Rim]);
    }

    #[test]
    fn bad_output_shapes_and_nan_are_errors() {
        let spec = OutputSpec::seed();
        assert!(matches!(
            class_maps(&[0.0; 8], &[1, 2, 2, 2], &spec),
            Err(PostprocessError::Shape { .. })
        ));
        assert!(matches!(
            class_maps(&[0.0; 5], &[1, 3, 1, 2], &spec),
            Err(PostprocessError::Length { expected: 6, actual: 5, .. })
        ));
        let mut out = [0.0f32; 6];
        out[3] = f32::NAN; // channel 1, pixel 1
        assert_eq!(
            class_maps(&out, &[1, 3, 1, 2], &spec).unwrap_err(),
            PostprocessError::NonFinite { batch: 0, channel: 1, x: 1, y: 0 }
        );
        let dup = OutputSpec { kind: OutputKind::Logits, classes: vec![Class::Cup, Class::Cup] };
        assert!(matches!(
            class_maps(&[0.0; 2], &[1, 2, 1, 1], &dup),
            Err(PostprocessError::ClassMap(_))
        ));
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

    #[test]
    fn postprocess_maps_back_to_the_photograph() {
        // 2x2 network output: top-left pixel cup, others background -> 4x4 photo, cup in the
        // top-left 2x2 block.
        let out = [
            9.0, 0.0, 0.0, 0.0, // cup
            0.0, 0.0, 0.0, 0.0, // rim
            0.0, 1.0, 1.0, 1.0, // background
        ];
        let g = Geometry { original: (4, 4), crop: Rect::full(4, 4), network: (2, 2) };
        let m = postprocess(&out, &[1, 3, 2, 2], &OutputSpec::seed(), &g).unwrap();
        assert_eq!(m.dimensions(), (4, 4));
        assert_eq!(m.count(Class::Cup), 4);
        assert_eq!(m.get(1, 1), Class::Cup);
        assert_eq!(m.get(2, 2), Class::Background);
        assert!(postprocess(&out, &[1, 3, 1, 4], &OutputSpec::seed(), &g).is_err());
    }
}
