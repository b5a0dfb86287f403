//! Class labels of a disc/cup mask and their 0/128/255 encoding (GAMMA, REFUGE).
//!
//! The seed maps mask grey levels 0/128/255 to classes 0/1/2; Papilla keeps that order so
//! a class index, a network output channel and a mask level line up everywhere.

use image::{DynamicImage, GrayImage};
use serde::{Deserialize, Serialize};

use crate::error::MaskError;

/// One pixel's class. The discriminant is the class index of the seed recipe.
#[repr(u8)]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Optic cup (mask level 0).
    Cup = 0,
    /// Neuro-retinal rim: disc outside the cup (mask level 128).
    Rim = 1,
    /// Everything outside the disc (mask level 255).
    Background = 2,
}

impl Class {
    /// All classes in index order.
    pub const ALL: [Class; 3] = [Class::Cup, Class::Rim, Class::Background];

    /// The grey level this class is written as in a GAMMA/REFUGE mask.
    pub const fn grey(self) -> u8 {
        match self {
            Class::Cup => 0,
            Class::Rim => 128,
            Class::Background => 255,
        }
    }

    /// The class of a class index (0, 1, 2), if it is one.
    pub const fn from_index(index: u8) -> Option<Class> {
        match index {
            0 => Some(Class::Cup),
            1 => Some(Class::Rim),
            2 => Some(Class::Background),
            _ => None,
        }
    }

    /// The class whose level is nearest to `v`; ties (64) go to the rim.
    ///
    /// Midpoints: 64 between 0 and 128, 191.5 between 128 and 255.
    pub const fn nearest(v: u8) -> Class {
        if v < 64 {
            Class::Cup
        } else if v < 192 {
            Class::Rim
        } else {
            Class::Background
        }
    }

    /// True for the cup and the rim: REFUGE's disc is every pixel below 255.
    pub const fn is_disc(self) -> bool {
        !matches!(self, Class::Background)
    }
}

/// A per-pixel class map in row-major order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelMap {
    width: u32,
    height: u32,
    data: Vec<Class>,
}

impl LabelMap {
    /// A map filled with one class.
    pub fn filled(width: u32, height: u32, class: Class) -> Self {
        Self { width, height, data: vec![class; width as usize * height as usize] }
    }

    /// A map from row-major classes; `None` if the length is not `width * height`.
    pub fn from_classes(width: u32, height: u32, data: Vec<Class>) -> Option<Self> {
        (data.len() == width as usize * height as usize).then_some(Self { width, height, data })
    }

    /// Builds a map from a cup mask and a disc mask (row-major booleans). A cup pixel counts
    /// as disc even where the disc mask misses it (RIM-ONE DL has a few such pixels).
    pub fn from_disc_cup(width: u32, height: u32, disc: &[bool], cup: &[bool]) -> Option<Self> {
        let n = width as usize * height as usize;
        if disc.len() != n || cup.len() != n {
            return None;
        }
        let data = disc
            .iter()
            .zip(cup)
            .map(|(&d, &c)| match (d, c) {
                (_, true) => Class::Cup,
                (true, false) => Class::Rim,
                (false, false) => Class::Background,
            })
            .collect();
        Some(Self { width, height, data })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// `(width, height)`.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Row-major classes.
    pub fn classes(&self) -> &[Class] {
        &self.data
    }

    /// Mutable row-major classes.
    pub fn classes_mut(&mut self) -> &mut [Class] {
        &mut self.data
    }

    /// The class at `(x, y)`. Panics outside the map, like slice indexing.
    pub fn get(&self, x: u32, y: u32) -> Class {
        self.data[y as usize * self.width as usize + x as usize]
    }

    /// Sets the class at `(x, y)`. Panics outside the map, like slice indexing.
    pub fn set(&mut self, x: u32, y: u32, class: Class) {
        self.data[y as usize * self.width as usize + x as usize] = class;
    }

    /// Number of pixels of `class`.
    pub fn count(&self, class: Class) -> usize {
        self.data.iter().filter(|&&c| c == class).count()
    }

    /// REFUGE's disc (pixels < 255) as row-major booleans.
    pub fn disc_mask(&self) -> Vec<bool> {
        self.data.iter().map(|c| c.is_disc()).collect()
    }

    /// REFUGE's cup (pixels == 0) as row-major booleans.
    pub fn cup_mask(&self) -> Vec<bool> {
        self.data.iter().map(|&c| c == Class::Cup).collect()
    }

    /// Class indices (0/1/2), row-major: the training target.
    pub fn indices(&self) -> Vec<u8> {
        self.data.iter().map(|&c| c as u8).collect()
    }

    /// The mask as written to disk: 0 cup, 128 rim, 255 background.
    pub fn to_grey(&self) -> GrayImage {
        let raw = self.data.iter().map(|c| c.grey()).collect();
        GrayImage::from_raw(self.width, self.height, raw)
            .expect("buffer length equals width * height by construction")
    }

    /// Nearest-neighbour resize with pixel-centre sampling, the same rule as
    /// [`crate::preprocess::Geometry::to_network`].
    pub fn resize_nearest(&self, width: u32, height: u32) -> LabelMap {
        let mut out = Vec::with_capacity(width as usize * height as usize);
        for y in 0..height {
            let sy = nearest_source(y, height, self.height);
            for x in 0..width {
                out.push(self.get(nearest_source(x, width, self.width), sy));
            }
        }
        LabelMap { width, height, data: out }
    }
}

/// Source index of output index `i` when `n_out` samples cover `n_in`, sampling at pixel centres.
pub(crate) fn nearest_source(i: u32, n_out: u32, n_in: u32) -> u32 {
    let s = ((u64::from(i) * 2 + 1) * u64::from(n_in)) / (2 * u64::from(n_out));
    (s as u32).min(n_in.saturating_sub(1))
}

/// A decoded mask and what decoding had to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedMask {
    pub labels: LabelMap,
    /// Pixels whose level was not exactly 0, 128 or 255 and went to the nearest level.
    pub snapped: u64,
}

/// Largest spread between R, G and B still taken as grey; JPEG-compressed grey masks drift a
/// few levels between channels. Anything further apart is a colour and an error.
pub const GREY_TOLERANCE: u8 = 8;

/// What a mask is for, which decides whether an empty one is acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskRole {
    /// Ground truth or a training target: an all-background mask marks no disc and is an
    /// error (a mislabelled or wrong file).
    Truth,
    /// A model's prediction: all background is a legitimate (bad) answer and scores zero.
    Prediction,
}

/// Decodes mask file contents (BMP or PNG). `file` names the mask in errors.
pub fn decode_mask_bytes(
    bytes: &[u8],
    file: &str,
    role: MaskRole,
) -> Result<DecodedMask, MaskError> {
    let img = image::load_from_memory(bytes)
        .map_err(|source| MaskError::Decode { file: file.to_owned(), source })?;
    decode_mask(&img, file, role)
}

/// Decodes a mask image: 8-bit grey, or 8-bit RGB(A) whose channels agree (alpha opaque).
pub fn decode_mask(
    img: &DynamicImage,
    file: &str,
    role: MaskRole,
) -> Result<DecodedMask, MaskError> {
    let (width, height) = (img.width(), img.height());
    if width == 0 || height == 0 {
        return Err(MaskError::Empty { file: file.to_owned() });
    }
    let levels: Vec<u8> = match img {
        DynamicImage::ImageLuma8(g) => g.as_raw().clone(),
        DynamicImage::ImageLumaA8(g) => {
            let mut out = Vec::with_capacity(g.len() / 2);
            for (i, px) in g.pixels().enumerate() {
                check_opaque(px.0[1], i, width, file)?;
                out.push(px.0[0]);
            }
            out
        }
        DynamicImage::ImageRgb8(rgb) => {
            let mut out = Vec::with_capacity(rgb.len() / 3);
            for (i, px) in rgb.pixels().enumerate() {
                out.push(grey_of(px.0, i, width, file)?);
            }
            out
        }
        DynamicImage::ImageRgba8(rgba) => {
            let mut out = Vec::with_capacity(rgba.len() / 4);
            for (i, px) in rgba.pixels().enumerate() {
                check_opaque(px.0[3], i, width, file)?;
                out.push(grey_of([px.0[0], px.0[1], px.0[2]], i, width, file)?);
            }
            out
        }
        other => {
            return Err(MaskError::UnsupportedColour {
                file: file.to_owned(),
                colour: format!("{:?}", other.color()),
            });
        }
    };
    let mut snapped = 0u64;
    let data: Vec<Class> = levels
        .iter()
        .map(|&v| {
            let c = Class::nearest(v);
            snapped += u64::from(v != c.grey());
            c
        })
        .collect();
    if role == MaskRole::Truth && data.iter().all(|&c| c == Class::Background) {
        return Err(MaskError::AllBackground { file: file.to_owned() });
    }
    Ok(DecodedMask { labels: LabelMap { width, height, data }, snapped })
}

fn grey_of(rgb: [u8; 3], index: usize, width: u32, file: &str) -> Result<u8, MaskError> {
    let (lo, hi) = (rgb.iter().min().copied(), rgb.iter().max().copied());
    let (lo, hi) = (lo.unwrap_or(0), hi.unwrap_or(0));
    if hi - lo > GREY_TOLERANCE {
        let (x, y) = (index as u32 % width, index as u32 / width);
        return Err(MaskError::NotGrey { file: file.to_owned(), x, y, rgb });
    }
    let sum: u16 = rgb.iter().map(|&v| u16::from(v)).sum();
    Ok(((sum + 1) / 3) as u8)
}

fn check_opaque(alpha: u8, index: usize, width: u32, file: &str) -> Result<(), MaskError> {
    if alpha == 255 {
        return Ok(());
    }
    let (x, y) = (index as u32 % width, index as u32 / width);
    Err(MaskError::Transparent { file: file.to_owned(), x, y, alpha })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Luma, Rgb, RgbImage};
    use std::io::Cursor;

    fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        img.write_to(&mut buf, format).unwrap();
        buf.into_inner()
    }

    #[test]
    fn nearest_level_midpoints() {
        assert_eq!(Class::nearest(0), Class::Cup);
        assert_eq!(Class::nearest(63), Class::Cup);
        assert_eq!(Class::nearest(64), Class::Rim);
        assert_eq!(Class::nearest(191), Class::Rim);
        assert_eq!(Class::nearest(192), Class::Background);
        assert_eq!(Class::nearest(255), Class::Background);
    }

    #[test]
    fn grey_bmp_round_trip_and_off_grey_values_are_snapped_and_counted() {
        let mut g = GrayImage::from_pixel(4, 3, Luma([255]));
        g.put_pixel(1, 1, Luma([0]));
        g.put_pixel(2, 1, Luma([128]));
        g.put_pixel(3, 1, Luma([140])); // resized edge: -> rim
        g.put_pixel(0, 2, Luma([20])); // -> cup
        g.put_pixel(1, 2, Luma([230])); // -> background
        let bytes = encode(&DynamicImage::ImageLuma8(g), ImageFormat::Bmp);
        let m = decode_mask_bytes(&bytes, "a.bmp", MaskRole::Truth).unwrap();
        assert_eq!(m.snapped, 3);
        assert_eq!(m.labels.get(1, 1), Class::Cup);
        assert_eq!(m.labels.get(2, 1), Class::Rim);
        assert_eq!(m.labels.get(3, 1), Class::Rim);
        assert_eq!(m.labels.get(0, 2), Class::Cup);
        assert_eq!(m.labels.get(1, 2), Class::Background);
        assert_eq!(m.labels.count(Class::Cup), 2);
        let grey = m.labels.to_grey();
        assert_eq!(grey.get_pixel(3, 1).0[0], 128);
        assert_eq!(grey.get_pixel(0, 0).0[0], 255);
    }

    #[test]
    fn rgb_grey_png_is_accepted_and_colour_is_refused_with_position() {
        let mut rgb = RgbImage::from_pixel(3, 2, Rgb([255, 255, 255]));
        rgb.put_pixel(0, 0, Rgb([128, 128, 128]));
        rgb.put_pixel(1, 0, Rgb([2, 0, 4])); // JPEG-like drift: still grey
        let bytes = encode(&DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Png);
        let m = decode_mask_bytes(&bytes, "b.png", MaskRole::Truth).unwrap();
        assert_eq!(m.labels.get(0, 0), Class::Rim);
        assert_eq!(m.labels.get(1, 0), Class::Cup);
        assert_eq!(m.snapped, 1);

        rgb.put_pixel(2, 1, Rgb([255, 0, 0]));
        let bytes = encode(&DynamicImage::ImageRgb8(rgb), ImageFormat::Png);
        let err = decode_mask_bytes(&bytes, "red.png", MaskRole::Prediction).unwrap_err();
        assert!(
            matches!(err, MaskError::NotGrey { ref file, x: 2, y: 1, rgb: [255, 0, 0] } if file == "red.png"),
            "{err:?}"
        );
        assert!(err.to_string().contains("red.png"));
    }

    #[test]
    fn all_background_16_bit_and_garbage_are_errors_naming_the_file() {
        let g = GrayImage::from_pixel(5, 5, Luma([250]));
        let img = DynamicImage::ImageLuma8(g);
        let err = decode_mask(&img, "bg.bmp", MaskRole::Truth).unwrap_err();
        assert!(matches!(err, MaskError::AllBackground { .. }));
        assert!(err.to_string().contains("bg.bmp"));
        let empty = decode_mask(&img, "bg.bmp", MaskRole::Prediction).unwrap();
        assert_eq!(empty.labels.count(Class::Background), 25, "an empty prediction is valid");

        let g16 = image::ImageBuffer::<Luma<u16>, _>::from_pixel(2, 2, Luma([0u16]));
        let err =
            decode_mask(&DynamicImage::ImageLuma16(g16), "deep.png", MaskRole::Truth).unwrap_err();
        assert!(matches!(err, MaskError::UnsupportedColour { .. }), "{err:?}");

        let err = decode_mask_bytes(b"not an image", "junk.bmp", MaskRole::Truth).unwrap_err();
        assert!(matches!(err, MaskError::Decode { .. }));
        assert!(err.to_string().contains("junk.bmp"));
    }

    #[test]
    fn transparent_pixels_are_refused() {
        let mut img = image::RgbaImage::from_pixel(2, 2, image::Rgba([0, 0, 0, 255]));
        img.put_pixel(1, 0, image::Rgba([0, 0, 0, 0]));
        let err =
            decode_mask(&DynamicImage::ImageRgba8(img), "t.png", MaskRole::Truth).unwrap_err();
        assert!(matches!(err, MaskError::Transparent { x: 1, y: 0, alpha: 0, .. }), "{err:?}");
    }

    #[test]
    fn disc_cup_masks_put_stray_cup_pixels_inside_the_disc() {
        let disc = [false, true, true, false];
        let cup = [false, false, true, true];
        let m = LabelMap::from_disc_cup(2, 2, &disc, &cup).unwrap();
        assert_eq!(m.classes(), &[Class::Background, Class::Rim, Class::Cup, Class::Cup]);
        assert!(LabelMap::from_disc_cup(3, 2, &disc, &cup).is_none());
    }

    #[test]
    fn nearest_resize_samples_pixel_centres() {
        let m = LabelMap::from_classes(
            4,
            1,
            vec![Class::Cup, Class::Rim, Class::Background, Class::Background],
        )
        .unwrap();
        let half = m.resize_nearest(2, 1);
        // centres of the two outputs fall on source pixels 1 and 3
        assert_eq!(half.classes(), &[Class::Rim, Class::Background]);
        let double = m.resize_nearest(8, 1);
        assert_eq!(double.count(Class::Cup), 2);
        assert_eq!(double.get(2, 0), Class::Rim);
    }
}
