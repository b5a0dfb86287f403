//! `curves.png`: training loss (red), validation Dice disc (green), Dice cup (blue) and vCDR
//! MAE (black) against epochs, on a shared 0-1 axis with grid lines every 0.1. Drawn with the
//! image crate alone, so no font or plotting library is needed.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::training::EpochMetrics;

const W: u32 = 720;
const H: u32 = 400;
const MARGIN: u32 = 20;

/// Reads one plotted value of an epoch.
type Getter = fn(&EpochMetrics) -> f64;

/// Draws the curves of `history` into a PNG at `path`.
pub fn write_curves(history: &[EpochMetrics], path: &Path) -> image::ImageResult<()> {
    curves(history).save(path)
}

/// The plot as an image.
pub fn curves(history: &[EpochMetrics]) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let (x0, x1, y0, y1) = (MARGIN, W - MARGIN, MARGIN, H - MARGIN);
    for i in 0..=10 {
        let y = y1 - (y1 - y0) * i / 10;
        let shade = if i % 5 == 0 { 170 } else { 225 };
        for x in x0..=x1 {
            img.put_pixel(x, y, Rgb([shade; 3]));
        }
    }
    for y in y0..=y1 {
        img.put_pixel(x0, y, Rgb([120; 3]));
    }
    let n = history.len();
    if n == 0 {
        return img;
    }
    let px = |i: usize| -> f32 {
        if n == 1 {
            (x0 + x1) as f32 / 2.0
        } else {
            x0 as f32 + (x1 - x0) as f32 * i as f32 / (n - 1) as f32
        }
    };
    let py = |v: f64| -> f32 { y1 as f32 - (y1 - y0) as f32 * v.clamp(0.0, 1.0) as f32 };
    let series: [(Getter, [u8; 3]); 4] = [
        (|m| m.train_loss, [220, 40, 40]),
        (|m| m.val_disc_dice, [30, 150, 60]),
        (|m| m.val_cup_dice, [40, 80, 220]),
        (|m| m.val_vcdr_mae, [0, 0, 0]),
    ];
    for (get, colour) in series {
        let pts: Vec<(f32, f32)> =
            history.iter().enumerate().map(|(i, m)| (px(i), py(get(m)))).collect();
        for w in pts.windows(2) {
            line(&mut img, w[0], w[1], colour);
        }
        for &(x, y) in &pts {
            dot(&mut img, x, y, colour);
        }
    }
    img
}

fn line(img: &mut RgbImage, a: (f32, f32), b: (f32, f32), c: [u8; 3]) {
    let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()) * 2.0).ceil().max(1.0) as usize;
    for s in 0..=steps {
        let t = s as f32 / steps as f32;
        dot(img, a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t, c);
    }
}

fn dot(img: &mut RgbImage, x: f32, y: f32, c: [u8; 3]) {
    for dy in -1i32..=1 {
        for dx in -1i32..=1 {
            let (px, py) = (x.round() as i32 + dx, y.round() as i32 + dy);
            if px >= 0 && py >= 0 && (px as u32) < W && (py as u32) < H {
                img.put_pixel(px as u32, py as u32, Rgb(c));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_are_drawn_where_the_values_are() {
        let m = |epoch, dice| EpochMetrics {
            epoch,
            lr: 0.0,
            train_loss: 2.0, // clipped to the top
            val_disc_dice: dice,
            val_cup_dice: 0.0,
            val_vcdr_mae: 0.0,
            score: 0.0,
            seconds: 0.0,
            images_per_s: 0.0,
        };
        let img = curves(&[m(1, 0.5), m(2, 1.0)]);
        assert_eq!(img.get_pixel(MARGIN, H / 2).0, [30, 150, 60], "disc Dice 0.5 at the left");
        assert_eq!(
            img.get_pixel(W - MARGIN, MARGIN).0,
            [30, 150, 60],
            "disc Dice 1.0 at the right"
        );
        assert_eq!(img.get_pixel(W / 2, MARGIN).0, [220, 40, 40], "loss clipped to 1");
    }
}
