//! The REFUGE challenge's evaluation, exactly: per image, the disc is every pixel below 255 and
//! the cup every pixel equal to 0; a vertical diameter is the largest number of structure
//! pixels in any one column (not the row span); vCDR = cup / (disc + 1e-7); scores are
//! averaged over images. Predictions are scored as they are, without clean-up.

use serde::{Deserialize, Serialize};

use crate::error::MetricsError;
use crate::labels::LabelMap;

/// REFUGE's epsilon in the cup-to-disc ratios.
pub const EPS: f64 = 1e-7;

/// Sizes of the disc and cup of one mask and the ratios between them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Measurements {
    /// Disc pixels (cup included).
    pub disc_area: u64,
    pub cup_area: u64,
    /// Largest count of disc pixels in one column.
    pub disc_vertical: u64,
    pub cup_vertical: u64,
    /// Largest count of disc pixels in one row.
    pub disc_horizontal: u64,
    pub cup_horizontal: u64,
    /// Vertical cup-to-disc ratio.
    pub vcdr: f64,
    /// Horizontal cup-to-disc ratio.
    pub hcdr: f64,
    /// Area cup-to-disc ratio.
    pub acdr: f64,
}

/// Measures a mask.
pub fn measure(mask: &LabelMap) -> Measurements {
    let w = mask.width() as usize;
    // Only the disc's box holds disc or cup pixels: a camera frame has millions of pixels and
    // the disc a small part of them (the box is found a row at a time).
    let (x0, x1, rows) = match crate::preprocess::disc_box(mask) {
        Some((x0, y0, x1, y1)) => (x0 as usize, x1 as usize + 1, y0 as usize..y1 as usize + 1),
        None => (0, 0, 0..0),
    };
    let mut disc_cols = vec![0u64; x1 - x0];
    let mut cup_cols = vec![0u64; x1 - x0];
    let (mut disc_row_max, mut cup_row_max) = (0u64, 0u64);
    let (mut disc_area, mut cup_area) = (0u64, 0u64);
    for y in rows {
        let row = &mask.classes()[y * w + x0..y * w + x1];
        let (mut disc_row, mut cup_row) = (0u64, 0u64);
        for (x, c) in row.iter().enumerate() {
            if c.is_disc() {
                disc_cols[x] += 1;
                disc_row += 1;
            }
            if *c == crate::labels::Class::Cup {
                cup_cols[x] += 1;
                cup_row += 1;
            }
        }
        disc_row_max = disc_row_max.max(disc_row);
        cup_row_max = cup_row_max.max(cup_row);
        disc_area += disc_row;
        cup_area += cup_row;
    }
    let disc_vertical = disc_cols.iter().copied().max().unwrap_or(0);
    let cup_vertical = cup_cols.iter().copied().max().unwrap_or(0);
    let ratio = |a: u64, b: u64| a as f64 / (b as f64 + EPS);
    Measurements {
        disc_area,
        cup_area,
        disc_vertical,
        cup_vertical,
        disc_horizontal: disc_row_max,
        cup_horizontal: cup_row_max,
        vcdr: ratio(cup_vertical, disc_vertical),
        hcdr: ratio(cup_row_max, disc_row_max),
        acdr: ratio(cup_area, disc_area),
    }
}

/// Scores of one predicted mask against its ground truth.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct ImageScores {
    pub disc_dice: f64,
    pub cup_dice: f64,
    pub disc_iou: f64,
    pub cup_iou: f64,
    pub vcdr: f64,
    pub vcdr_true: f64,
    pub hcdr: f64,
    pub hcdr_true: f64,
    pub acdr: f64,
    pub acdr_true: f64,
}

impl ImageScores {
    pub fn vcdr_error(&self) -> f64 {
        (self.vcdr - self.vcdr_true).abs()
    }
    pub fn hcdr_error(&self) -> f64 {
        (self.hcdr - self.hcdr_true).abs()
    }
    pub fn acdr_error(&self) -> f64 {
        (self.acdr - self.acdr_true).abs()
    }
}

/// Dice 2|A∩B| / (|A| + |B|); two empty sets agree perfectly (1.0).
pub fn dice(a: &[bool], b: &[bool]) -> f64 {
    let (inter, na, nb) = overlap(a, b);
    if na + nb == 0 { 1.0 } else { 2.0 * inter as f64 / (na + nb) as f64 }
}

/// IoU |A∩B| / |A∪B|; two empty sets agree perfectly (1.0).
pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    let (inter, na, nb) = overlap(a, b);
    let union = na + nb - inter;
    if union == 0 { 1.0 } else { inter as f64 / union as f64 }
}

fn overlap(a: &[bool], b: &[bool]) -> (u64, u64, u64) {
    a.iter().zip(b).fold((0, 0, 0), |(i, na, nb), (&x, &y)| {
        (i + u64::from(x && y), na + u64::from(x), nb + u64::from(y))
    })
}

/// Scores a prediction against the ground truth (same size required).
pub fn score(pred: &LabelMap, truth: &LabelMap) -> Result<ImageScores, MetricsError> {
    if pred.dimensions() != truth.dimensions() {
        return Err(MetricsError::SizeMismatch {
            pred_w: pred.width(),
            pred_h: pred.height(),
            truth_w: truth.width(),
            truth_h: truth.height(),
        });
    }
    let (pd, td) = (pred.disc_mask(), truth.disc_mask());
    let (pc, tc) = (pred.cup_mask(), truth.cup_mask());
    let (mp, mt) = (measure(pred), measure(truth));
    Ok(ImageScores {
        disc_dice: dice(&pd, &td),
        cup_dice: dice(&pc, &tc),
        disc_iou: iou(&pd, &td),
        cup_iou: iou(&pc, &tc),
        vcdr: mp.vcdr,
        vcdr_true: mt.vcdr,
        hcdr: mp.hcdr,
        hcdr_true: mt.hcdr,
        acdr: mp.acdr,
        acdr_true: mt.acdr,
    })
}

/// Means over images, as REFUGE reports them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct Summary {
    pub n: usize,
    pub disc_dice: f64,
    pub cup_dice: f64,
    pub disc_iou: f64,
    pub cup_iou: f64,
    /// Mean absolute vCDR error: REFUGE's third metric.
    pub vcdr_mae: f64,
    pub hcdr_mae: f64,
    pub acdr_mae: f64,
}

/// Averages per-image scores; an empty list gives `n = 0` and zeros.
pub fn summarize(scores: &[ImageScores]) -> Summary {
    if scores.is_empty() {
        return Summary::default();
    }
    let n = scores.len() as f64;
    let mean = |f: fn(&ImageScores) -> f64| scores.iter().map(f).sum::<f64>() / n;
    Summary {
        n: scores.len(),
        disc_dice: mean(|s| s.disc_dice),
        cup_dice: mean(|s| s.cup_dice),
        disc_iou: mean(|s| s.disc_iou),
        cup_iou: mean(|s| s.cup_iou),
        vcdr_mae: mean(ImageScores::vcdr_error),
        hcdr_mae: mean(ImageScores::hcdr_error),
        acdr_mae: mean(ImageScores::acdr_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Class;

    /// `measure` over every pixel, as it was before it looked only inside the disc's box.
    fn measure_whole(mask: &LabelMap) -> Measurements {
        let (w, h) = (mask.width() as usize, mask.height() as usize);
        let (mut dc, mut cc) = (vec![0u64; w], vec![0u64; w]);
        let (mut dr, mut cr, mut da, mut ca) = (0u64, 0u64, 0u64, 0u64);
        for y in 0..h {
            let (mut d, mut c) = (0u64, 0u64);
            for x in 0..w {
                let k = mask.get(x as u32, y as u32);
                if k.is_disc() {
                    dc[x] += 1;
                    d += 1;
                }
                if k == Class::Cup {
                    cc[x] += 1;
                    c += 1;
                }
            }
            (dr, cr, da, ca) = (dr.max(d), cr.max(c), da + d, ca + c);
        }
        let (dv, cv) =
            (dc.iter().copied().max().unwrap_or(0), cc.iter().copied().max().unwrap_or(0));
        let ratio = |a: u64, b: u64| a as f64 / (b as f64 + EPS);
        Measurements {
            disc_area: da,
            cup_area: ca,
            disc_vertical: dv,
            cup_vertical: cv,
            disc_horizontal: dr,
            cup_horizontal: cr,
            vcdr: ratio(cv, dv),
            hcdr: ratio(cr, dr),
            acdr: ratio(ca, da),
        }
    }

    proptest::proptest! {
        #[test]
        fn measuring_inside_the_disc_box_equals_measuring_every_pixel(
            w in 1u32..24,
            h in 1u32..24,
            cells in proptest::collection::vec((0u32..24, 0u32..24, 0u8..3), 0..40),
        ) {
            let mut m = LabelMap::filled(w, h, Class::Background);
            for (x, y, k) in cells {
                let class = [Class::Cup, Class::Rim, Class::Background][k as usize];
                m.set(x % w, y % h, class);
            }
            proptest::prop_assert_eq!(measure(&m), measure_whole(&m));
        }
    }

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

    const TRUTH: [&str; 5] = [
        ".......", //
        "..rrr..", //
        ".rrccr.", //
        "..rcr..", //
        "...r...", //
    ];

    #[test]
    fn vertical_diameter_is_the_largest_column_count_not_the_row_span() {
        // disc column counts: x1:1, x2:3, x3:4, x4:3, x5:1 -> 4; cup: x3:2, x4:1 -> 2
        let m = measure(&map(&TRUTH));
        assert_eq!((m.disc_vertical, m.cup_vertical), (4, 2));
        assert_eq!((m.disc_horizontal, m.cup_horizontal), (5, 2));
        assert_eq!((m.disc_area, m.cup_area), (12, 3));
        assert!((m.vcdr - 2.0 / (4.0 + 1e-7)).abs() < 1e-15);
        assert!((m.acdr - 0.25).abs() < 1e-7);

        // A column with a gap: the span is 5 rows, the REFUGE diameter is 3 pixels.
        let gap = measure(&map(&["r", "r", ".", ".", "r"]));
        assert_eq!(gap.disc_vertical, 3);
    }

    #[test]
    fn perfect_prediction_scores_one_and_zero_error() {
        let t = map(&TRUTH);
        let s = score(&t, &t).unwrap();
        assert_eq!((s.disc_dice, s.cup_dice, s.disc_iou, s.cup_iou), (1.0, 1.0, 1.0, 1.0));
        assert_eq!(s.vcdr_error(), 0.0);
    }

    #[test]
    fn empty_prediction_scores_zero_and_vcdr_zero() {
        let t = map(&TRUTH);
        let s = score(&LabelMap::filled(7, 5, Class::Background), &t).unwrap();
        assert_eq!((s.disc_dice, s.cup_dice), (0.0, 0.0));
        assert_eq!(s.vcdr, 0.0);
        assert!((s.vcdr_error() - 2.0 / (4.0 + 1e-7)).abs() < 1e-12);
    }

    #[test]
    fn stray_speck_lowers_dice_by_the_hand_computed_amount() {
        let t = map(&TRUTH);
        let mut p = t.clone();
        p.set(6, 0, Class::Rim); // one far disc pixel: |P| = 13, |T| = 12, |P∩T| = 12
        let s = score(&p, &t).unwrap();
        assert!((s.disc_dice - 24.0 / 25.0).abs() < 1e-12);
        assert!((s.disc_iou - 12.0 / 13.0).abs() < 1e-12);
        assert_eq!(s.cup_dice, 1.0);
        assert_eq!(s.vcdr_error(), 0.0, "the speck's column holds 1 pixel, below the max 4");
    }

    #[test]
    fn hole_in_the_cup_counts_as_rim() {
        let t = map(&TRUTH);
        let mut p = t.clone();
        p.set(3, 2, Class::Rim); // cup |P| = 2, |T| = 3, overlap 2
        let s = score(&p, &t).unwrap();
        assert!((s.cup_dice - 4.0 / 5.0).abs() < 1e-12);
        assert_eq!(s.disc_dice, 1.0);
        // cup columns now x3:1 (row 3), x4:1 -> 1; vCDR 1/4 vs 2/4
        assert!((s.vcdr - 0.25).abs() < 1e-7);
    }

    #[test]
    fn cup_outside_the_disc_still_counts_as_disc() {
        let t = map(&TRUTH);
        let mut p = t.clone();
        p.set(0, 0, Class::Cup); // REFUGE: cup pixels are < 255, so they are disc too
        let s = score(&p, &t).unwrap();
        assert!((s.disc_dice - 24.0 / 25.0).abs() < 1e-12);
        assert!((s.cup_dice - 6.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn both_empty_cups_agree() {
        let t = map(&["rr", "rr"]);
        let s = score(&t, &t).unwrap();
        assert_eq!(s.cup_dice, 1.0);
        assert_eq!(s.vcdr, 0.0);
    }

    #[test]
    fn size_mismatch_and_means() {
        let t = map(&TRUTH);
        assert!(matches!(
            score(&LabelMap::filled(7, 4, Class::Background), &t),
            Err(MetricsError::SizeMismatch { pred_h: 4, truth_h: 5, .. })
        ));
        let perfect = score(&t, &t).unwrap();
        let empty = score(&LabelMap::filled(7, 5, Class::Background), &t).unwrap();
        let sum = summarize(&[perfect, empty]);
        assert_eq!(sum.n, 2);
        assert!((sum.disc_dice - 0.5).abs() < 1e-12);
        assert!((sum.vcdr_mae - 1.0 / (4.0 + 1e-7)).abs() < 1e-12);
        assert_eq!(summarize(&[]).n, 0);
    }
}
