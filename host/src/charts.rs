//! Charts drawn with plotters into the image crate's buffers (PNG through `image`, not
//! plotters' own encoder), with DejaVu Sans embedded so text needs no system font.

use std::sync::Once;

use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;

/// The font family every chart uses.
pub const FONT: &str = "sans-serif";

/// Registers the embedded font once per process.
fn fonts() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // DejaVu Sans is a valid TrueType font; a failure here would only lose the labels.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// A chart could not be drawn (plotters' error, as text: its type borrows the backend).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(pub String);

pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws `width` x `height` pixels with `draw` on a white background.
pub fn draw(
    width: u32,
    height: u32,
    draw: impl FnOnce(&Area<'_>) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<RgbImage, ChartError> {
    fonts();
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| ChartError(e.to_string()))?;
        draw(&root).map_err(|e| ChartError(e.to_string()))?;
        root.present().map_err(|e| ChartError(e.to_string()))?;
    }
    RgbImage::from_raw(width, height, buf).ok_or_else(|| ChartError("buffer size".into()))
}

/// Series colours, distinguishable in print and by most colour-blind readers (Okabe-Ito).
pub const BLUE: RGBColor = RGBColor(0, 114, 178);
pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
pub const GREEN: RGBColor = RGBColor(0, 158, 115);
pub const VERMILION: RGBColor = RGBColor(213, 94, 0);
pub const GREY: RGBColor = RGBColor(120, 120, 120);
