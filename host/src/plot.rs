//! `curves.png`: training loss, validation Dice disc and cup and vCDR MAE against epochs, on a
//! shared 0-1 axis (the loss clipped to it), with labelled axes and a legend.

use std::path::Path;

use image::RgbImage;
use plotters::prelude::*;

use crate::charts::{self, ChartError, FONT};
use crate::history::EpochMetrics;

const W: u32 = 720;
const H: u32 = 400;

/// Reads one plotted value of an epoch.
type Getter = fn(&EpochMetrics) -> f64;

/// The series: name, value, colour.
const SERIES: [(&str, Getter, RGBColor); 4] = [
    ("training loss", |m| m.train_loss, RGBColor(220, 40, 40)),
    ("val Dice disc", |m| m.val_disc_dice, RGBColor(30, 150, 60)),
    ("val Dice cup", |m| m.val_cup_dice, RGBColor(40, 80, 220)),
    ("val vCDR MAE", |m| m.val_vcdr_mae, RGBColor(0, 0, 0)),
];

/// Draws the curves of `history` into a PNG at `path`.
pub fn write_curves(history: &[EpochMetrics], path: &Path) -> Result<(), CurvesError> {
    let img = curves(history)?;
    img.save(path).map_err(|source| CurvesError::Write { path: path.to_owned(), source })
}

/// Why `curves.png` was not written.
#[derive(Debug, thiserror::Error)]
pub enum CurvesError {
    #[error(transparent)]
    Chart(#[from] ChartError),
    #[error("{}: cannot write the PNG", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: image::ImageError,
    },
}

/// The plot as an image.
pub fn curves(history: &[EpochMetrics]) -> Result<RgbImage, ChartError> {
    let last = history.last().map_or(1, |m| m.epoch).max(2) as f64;
    let first = history.first().map_or(1, |m| m.epoch) as f64;
    charts::draw(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .caption("training run", (FONT, 18))
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(first.min(last - 1.0)..last, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss (clipped at 1), Dice, vCDR MAE")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        for (name, get, colour) in SERIES {
            let points: Vec<(f64, f64)> =
                history.iter().map(|m| (m.epoch as f64, get(m).clamp(0.0, 1.0))).collect();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn m(epoch: usize, disc: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            lr: 0.0,
            train_loss: 2.0, // clipped to the top
            val_disc_dice: disc,
            val_cup_dice: 0.2,
            val_vcdr_mae: 0.0,
            score: 0.0,
            seconds: 0.0,
            images_per_s: 0.0,
        }
    }

    fn rows_with(img: &RgbImage, colour: [u8; 3], columns: std::ops::Range<u32>) -> Vec<u32> {
        (0..img.height())
            .filter(|&y| columns.clone().any(|x| img.get_pixel(x, y).0 == colour))
            .collect()
    }

    #[test]
    fn curves_are_drawn_where_the_values_are_with_a_legend() {
        let img = curves(&[m(1, 0.5), m(2, 0.5), m(3, 0.5), m(4, 0.5)]).unwrap();
        assert_eq!(img.dimensions(), (W, H));
        // Left half of the plot (the legend sits on the right): the loss, clipped to 1, at
        // the top; the disc Dice of 0.5 and the cup Dice of 0.2 below it, in proportion.
        let left = 80..W / 2;
        let loss = rows_with(&img, [220, 40, 40], left.clone());
        let disc = rows_with(&img, [30, 150, 60], left.clone());
        let cup = rows_with(&img, [40, 80, 220], left);
        assert!(!loss.is_empty() && !disc.is_empty() && !cup.is_empty());
        let mid = |r: &[u32]| r.iter().sum::<u32>() as f64 / r.len() as f64;
        assert!(mid(&loss) < mid(&disc) && mid(&disc) < mid(&cup), "{loss:?} {disc:?} {cup:?}");
        // 0.5 sits 0.5 / 0.8 of the way from 1 down to 0.2.
        let expected = mid(&loss) + (mid(&cup) - mid(&loss)) * 0.5 / 0.8;
        assert!((mid(&disc) - expected).abs() < 6.0, "0.5 at {} vs {expected}", mid(&disc));
        // The legend: each colour's sample line on the right, and text (dark pixels) beside it.
        let right = W / 2..W;
        for c in [[220, 40, 40], [30, 150, 60], [40, 80, 220]] {
            assert!(!rows_with(&img, c, right.clone()).is_empty(), "legend colour {c:?}");
        }
        let text = img.pixels().filter(|p| p.0.iter().all(|&v| v < 80)).count();
        assert!(text > 500, "labels and legend text drawn: {text} dark pixels");
    }

    #[test]
    fn one_epoch_and_no_epoch_still_draw() {
        assert_eq!(curves(&[m(1, 0.9)]).unwrap().dimensions(), (W, H));
        assert_eq!(curves(&[]).unwrap().dimensions(), (W, H));
    }
}
