//! Overlay of a mask on its photograph for people to check: the predicted disc outline in
//! green and the cup outline in blue; a ground truth, when given, in yellow (disc) and cyan
//! (cup). Outlines are `thickness` pixels wide, inside the structure.

use image::{Rgb, RgbImage};

use crate::labels::{Class, LabelMap};

/// Outline colours.
pub const PRED_DISC: [u8; 3] = [0, 230, 0];
pub const PRED_CUP: [u8; 3] = [30, 80, 255];
pub const TRUTH_DISC: [u8; 3] = [255, 230, 0];
pub const TRUTH_CUP: [u8; 3] = [0, 230, 230];

/// Draws outlines over a copy of `photo`. The masks must be the photograph's size; a
/// thickness of 0 picks one from the image size (about 1/300 of the shorter side, at least 1).
///
/// Panics if a mask is not the photograph's size: the caller made both from one geometry.
pub fn overlay(
    photo: &RgbImage,
    pred: &LabelMap,
    truth: Option<&LabelMap>,
    thickness: u32,
) -> RgbImage {
    assert_eq!(photo.dimensions(), pred.dimensions(), "mask and photograph differ in size");
    let t =
        if thickness == 0 { (photo.width().min(photo.height()) / 300).max(1) } else { thickness };
    let mut out = photo.clone();
    if let Some(truth) = truth {
        assert_eq!(photo.dimensions(), truth.dimensions(), "truth and photograph differ in size");
        draw_outline(&mut out, truth, |c| c.is_disc(), t, TRUTH_DISC);
        draw_outline(&mut out, truth, |c| c == Class::Cup, t, TRUTH_CUP);
    }
    draw_outline(&mut out, pred, |c| c.is_disc(), t, PRED_DISC);
    draw_outline(&mut out, pred, |c| c == Class::Cup, t, PRED_CUP);
    out
}

/// Marks pixels of the structure within `t` pixels (Chebyshev) of a pixel outside it.
fn draw_outline(
    img: &mut RgbImage,
    mask: &LabelMap,
    inside: impl Fn(Class) -> bool,
    t: u32,
    colour: [u8; 3],
) {
    let (w, h) = mask.dimensions();
    let t = t as i64;
    for y in 0..h {
        for x in 0..w {
            if !inside(mask.get(x, y)) {
                continue;
            }
            let edge = (-t..=t).any(|dy| {
                (-t..=t).any(|dx| {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    nx < 0
                        || ny < 0
                        || nx >= w as i64
                        || ny >= h as i64
                        || !inside(mask.get(nx as u32, ny as u32))
                })
            });
            if edge {
                img.put_pixel(x, y, Rgb(colour));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlines_sit_on_the_structure_border() {
        let photo = RgbImage::from_pixel(9, 9, Rgb([10, 10, 10]));
        let mut m = LabelMap::filled(9, 9, Class::Background);
        for y in 2..7 {
            for x in 2..7 {
                m.set(x, y, Class::Rim);
            }
        }
        m.set(4, 4, Class::Cup);
        let o = overlay(&photo, &m, None, 1);
        assert_eq!(o.get_pixel(2, 2).0, PRED_DISC);
        assert_eq!(o.get_pixel(3, 3).0, [10, 10, 10], "inside the disc, not on its border");
        assert_eq!(o.get_pixel(4, 4).0, PRED_CUP);
        assert_eq!(o.get_pixel(1, 1).0, [10, 10, 10]);
        let with_truth = overlay(&photo, &LabelMap::filled(9, 9, Class::Background), Some(&m), 1);
        assert_eq!(with_truth.get_pixel(2, 2).0, TRUTH_DISC);
    }
}
