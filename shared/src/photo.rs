//! The one photograph decoder of host and device (bytes in, no file I/O): the size is checked
//! before any pixel is decoded, a cut-off JPEG is refused, the EXIF orientation is applied, and
//! a large JPEG is decoded already scaled down (the IDCT at 1/2, 1/4 or 1/8), which is most of
//! what makes an exam fast on a 12-megapixel camera. Host and device differ only by
//! [`DecodeOptions`]: the camera's (the default) wants a name that agrees with the content and
//! 8-bit RGB; a data set's ([`DecodeOptions::data_set`]) takes JPEG, PNG or BMP by content and
//! converts grey, 16-bit and CMYK images to 8-bit RGB, saying so.

use std::path::Path;

use image::metadata::Orientation;
use image::{ImageFormat, RgbImage};
use thiserror::Error;

/// Why a photograph was refused. Shown with the file's name.
#[derive(Debug, Error, PartialEq)]
pub enum PhotoError {
    #[error("empty file")]
    Empty,
    #[error("not a JPEG, PNG or BMP image")]
    Unknown,
    #[error("unsupported extension {0:?}: expected .jpg, .jpeg or .png")]
    Extension(String),
    #[error("named as {named} but the content is {found}")]
    Mismatch { named: &'static str, found: String },
    #[error("truncated JPEG (no end-of-image marker)")]
    Truncated,
    #[error("{width}x{height} pixels is more than the limit of {limit} pixels")]
    TooLarge { width: u32, height: u32, limit: u64 },
    #[error("greyscale image: a colour fundus photograph is needed")]
    Greyscale,
    #[error("{0}: the camera must deliver 8-bit RGB")]
    Format(String),
    #[error("cannot decode: {0}")]
    Decode(String),
}

/// Limits and policy of decoding.
#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// A JPEG is decoded at the smallest IDCT scale whose shorter side is still this long.
    /// 0 decodes at full size.
    pub min_side: u32,
    pub max_pixels: u64,
    /// Grey, 16-bit and CMYK images: refused (a camera must deliver 8-bit RGB), or converted
    /// to 8-bit RGB and reported in [`Photo::converted`] (data sets).
    pub convert_colour: bool,
    /// The file's extension must be .jpg/.jpeg/.png and agree with the content (the camera);
    /// otherwise the content alone decides, JPEG, PNG or BMP (data sets).
    pub by_name: bool,
    /// Turn the pixels as the EXIF orientation says. Off for a data set's photographs, whose
    /// masks were drawn on the stored pixels.
    pub orient: bool,
}

impl Default for DecodeOptions {
    /// The camera's: 8-bit RGB JPEG or PNG named as what it is, at full size.
    fn default() -> Self {
        Self {
            min_side: 0,
            max_pixels: 100_000_000,
            convert_colour: false,
            by_name: true,
            orient: true,
        }
    }
}

impl DecodeOptions {
    /// A data set's photographs (training, evaluation): by content, colour converted, stored
    /// pixels as they are.
    pub fn data_set() -> Self {
        Self { convert_colour: true, by_name: false, orient: false, ..Self::default() }
    }

    /// A photograph to segment on the host: as a data set's, but turned as its EXIF says,
    /// as the camera's decoder does.
    pub fn photograph() -> Self {
        Self { orient: true, ..Self::data_set() }
    }
}

/// A decoded photograph.
#[derive(Debug)]
pub struct Photo {
    /// Pixels, possibly scaled down from the original.
    pub image: RgbImage,
    /// The original size in pixels: masks are written at this size.
    pub original: (u32, u32),
    /// The colour mode converted to 8-bit RGB, if it was not that ([`DecodeOptions::convert_colour`]).
    pub converted: Option<String>,
}

/// Which format a file name promises.
pub fn format_from_name(path: &Path) -> Result<ImageFormat, PhotoError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => Ok(ImageFormat::Jpeg),
        "png" => Ok(ImageFormat::Png),
        _ => Err(PhotoError::Extension(ext)),
    }
}

/// Decodes `bytes`, which came from a file called `name`.
pub fn decode(bytes: &[u8], name: &Path, opts: &DecodeOptions) -> Result<Photo, PhotoError> {
    if bytes.is_empty() {
        return Err(PhotoError::Empty);
    }
    let found = image::guess_format(bytes).ok();
    if opts.by_name {
        let named = format_from_name(name)?;
        match found {
            Some(f) if f == named => {}
            Some(f) => {
                return Err(PhotoError::Mismatch {
                    named: format_name(named),
                    found: format!("{f:?}"),
                });
            }
            None => {
                return Err(PhotoError::Mismatch {
                    named: format_name(named),
                    found: "not an image".into(),
                });
            }
        }
    }
    match found {
        Some(ImageFormat::Jpeg) => decode_jpeg(bytes, opts),
        Some(f @ (ImageFormat::Png | ImageFormat::Bmp)) => decode_other(bytes, f, opts),
        _ => Err(PhotoError::Unknown),
    }
}

fn format_name(f: ImageFormat) -> &'static str {
    if f == ImageFormat::Jpeg { "JPEG" } else { "PNG" }
}

fn check_size(width: u32, height: u32, opts: &DecodeOptions) -> Result<(), PhotoError> {
    if u64::from(width) * u64::from(height) > opts.max_pixels || width == 0 || height == 0 {
        return Err(PhotoError::TooLarge { width, height, limit: opts.max_pixels });
    }
    Ok(())
}

/// Whether a JPEG ends with its end-of-image marker (searched in the last 4 KiB, so trailers
/// some cameras append are allowed; an embedded thumbnail's marker sits near the start). The
/// decoders fill a cut-off JPEG with grey and succeed; half a photograph must not become an
/// exam.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096).max(bytes.len() / 2)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn decode_jpeg(bytes: &[u8], opts: &DecodeOptions) -> Result<Photo, PhotoError> {
    use jpeg_decoder::{Decoder, PixelFormat};
    if !jpeg_is_complete(bytes) {
        return Err(PhotoError::Truncated);
    }
    let mut d = Decoder::new(bytes);
    d.read_info().map_err(|e| PhotoError::Decode(e.to_string()))?;
    let info = d.info().ok_or_else(|| PhotoError::Decode("no frame header".into()))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    check_size(w, h, opts)?;
    match info.pixel_format {
        PixelFormat::RGB24 => {}
        // Grey and CMYK for a data set: the image crate's decoder converts them.
        _ if opts.convert_colour => return decode_other(bytes, ImageFormat::Jpeg, opts),
        PixelFormat::L8 | PixelFormat::L16 => return Err(PhotoError::Greyscale),
        PixelFormat::CMYK32 => return Err(PhotoError::Format("CMYK JPEG".into())),
    }
    if opts.min_side > 0 && w.min(h) > opts.min_side {
        // The IDCT scales 1/8, 1/4, 1/2: the smallest that keeps the shorter side >= min_side.
        let k = [8u32, 4, 2].into_iter().find(|k| w.min(h) / k >= opts.min_side).unwrap_or(1);
        let (rw, rh) = (w.div_ceil(k) as u16, h.div_ceil(k) as u16);
        d.scale(rw, rh).map_err(|e| PhotoError::Decode(e.to_string()))?;
    }
    let pixels = d.decode().map_err(|e| PhotoError::Decode(e.to_string()))?;
    let info = d.info().ok_or_else(|| PhotoError::Decode("no frame header".into()))?;
    let image = RgbImage::from_raw(u32::from(info.width), u32::from(info.height), pixels)
        .ok_or_else(|| PhotoError::Decode("pixel buffer of the wrong length".into()))?;
    let orientation = d.exif_data().and_then(Orientation::from_exif_chunk).filter(|_| opts.orient);
    Ok(oriented(image, (w, h), orientation, None))
}

/// The photograph turned as its EXIF orientation says (a camera held on its side writes the
/// pixels unturned and the turn in EXIF), so the mask and the overlay are drawn the way a
/// viewer shows the photograph; `original` turns with it.
fn oriented(
    image: RgbImage,
    (w, h): (u32, u32),
    orientation: Option<Orientation>,
    converted: Option<String>,
) -> Photo {
    let Some(orientation) = orientation.filter(|o| *o != Orientation::NoTransforms) else {
        return Photo { image, original: (w, h), converted };
    };
    let mut turned = image::DynamicImage::ImageRgb8(image);
    turned.apply_orientation(orientation);
    let quarter = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let original = if quarter { (h, w) } else { (w, h) };
    Photo { image: turned.into_rgb8(), original, converted }
}

/// PNG and BMP, and the JPEGs jpeg-decoder leaves to the image crate (grey, CMYK) for a data
/// set, with the allocation limited.
fn decode_other(
    bytes: &[u8],
    format: ImageFormat,
    opts: &DecodeOptions,
) -> Result<Photo, PhotoError> {
    use image::{ColorType, ImageDecoder};
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(opts.max_pixels.saturating_mul(4));
    let cursor = std::io::Cursor::new(bytes);
    let decode = |e: image::ImageError| PhotoError::Decode(e.to_string());
    let mut d: Box<dyn ImageDecoder + '_> = match format {
        ImageFormat::Png => Box::new(image::codecs::png::PngDecoder::new(cursor).map_err(decode)?),
        ImageFormat::Bmp => Box::new(image::codecs::bmp::BmpDecoder::new(cursor).map_err(decode)?),
        _ => Box::new(image::codecs::jpeg::JpegDecoder::new(cursor).map_err(decode)?),
    };
    let (w, h) = d.dimensions();
    check_size(w, h, opts)?;
    d.set_limits(limits).map_err(decode)?;
    let colour = d.color_type();
    let converted = match colour {
        ColorType::Rgb8 | ColorType::Rgba8 => None,
        other if opts.convert_colour => Some(format!("{other:?}")),
        ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16 => {
            return Err(PhotoError::Greyscale);
        }
        other => return Err(PhotoError::Format(format!("{other:?} {}", format_label(format)))),
    };
    let orientation = if opts.orient { d.orientation().ok() } else { None };
    let image = image::DynamicImage::from_decoder(d).map_err(decode)?.to_rgb8();
    Ok(oriented(image, (w, h), orientation, converted))
}

fn format_label(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Bmp => "BMP",
        _ => "PNG",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{DynamicImage, GrayImage, ImageBuffer, Rgb};

    pub(crate) fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let mut out = std::io::Cursor::new(Vec::new());
        DynamicImage::from(img).write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn err(bytes: &[u8], name: &str) -> PhotoError {
        decode(bytes, Path::new(name), &DecodeOptions::default()).unwrap_err()
    }

    #[test]
    fn bad_photographs_are_refused_with_the_reason() {
        let j = jpeg(64, 48);
        assert_eq!(err(&[], "a.jpg"), PhotoError::Empty);
        assert_eq!(err(&j, "a.txt"), PhotoError::Extension("txt".into()));
        assert!(matches!(err(&j, "a.png"), PhotoError::Mismatch { named: "PNG", .. }));
        assert!(matches!(err(b"hello world", "a.jpg"), PhotoError::Mismatch { .. }));
        assert_eq!(err(&j[..j.len() / 2], "a.jpg"), PhotoError::Truncated);
        let grey = png(DynamicImage::ImageLuma8(GrayImage::new(8, 8)));
        assert_eq!(err(&grey, "g.png"), PhotoError::Greyscale);
        let deep: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::new(8, 8);
        assert!(matches!(
            err(&png(DynamicImage::ImageRgb16(deep)), "d.png"),
            PhotoError::Format(_)
        ));
        let mut gj = std::io::Cursor::new(Vec::new());
        DynamicImage::ImageLuma8(GrayImage::new(16, 16))
            .write_to(&mut gj, ImageFormat::Jpeg)
            .unwrap();
        assert_eq!(err(gj.get_ref(), "g.jpg"), PhotoError::Greyscale);
    }

    #[test]
    fn a_data_set_photograph_is_read_by_content_and_converted_to_rgb() {
        let opts = DecodeOptions::data_set();
        let read = |bytes: &[u8], name: &str| decode(bytes, Path::new(name), &opts);
        // Grey (8- and 16-bit) is converted, and the conversion reported.
        let grey = png(DynamicImage::ImageLuma8(GrayImage::from_pixel(8, 6, image::Luma([77]))));
        let p = read(&grey, "g.png").unwrap();
        assert_eq!(p.converted.as_deref(), Some("L8"));
        assert_eq!((p.image.dimensions(), p.image.get_pixel(3, 3).0), ((8, 6), [77, 77, 77]));
        let deep: ImageBuffer<Rgb<u16>, Vec<u16>> =
            ImageBuffer::from_pixel(4, 4, Rgb([65535, 0, 0]));
        let p = read(&png(DynamicImage::ImageRgb16(deep)), "d.png").unwrap();
        assert_eq!(
            (p.converted.as_deref(), p.image.get_pixel(0, 0).0),
            (Some("Rgb16"), [255, 0, 0])
        );
        // By content: a JPEG named .png, and a BMP (REFUGE's masks' format) both decode.
        let j = jpeg(64, 48);
        assert_eq!(read(&j, "mislabelled.png").unwrap().image.dimensions(), (64, 48));
        let mut bmp = std::io::Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(RgbImage::from_pixel(5, 3, Rgb([1, 2, 3])))
            .write_to(&mut bmp, ImageFormat::Bmp)
            .unwrap();
        let p = read(bmp.get_ref(), "x.bmp").unwrap();
        assert_eq!((p.converted, p.image.get_pixel(4, 2).0), (None, [1, 2, 3]));
        // The camera's default refuses what the data-set reading accepts.
        assert_eq!(err(&grey, "g.png"), PhotoError::Greyscale);
        assert!(matches!(err(bmp.get_ref(), "x.bmp"), PhotoError::Extension(_)));
        // Still refused by both: a cut-off JPEG and what is no image at all.
        assert_eq!(read(&j[..j.len() / 2], "a.jpg").unwrap_err(), PhotoError::Truncated);
        assert_eq!(read(b"hello world", "a.jpg").unwrap_err(), PhotoError::Unknown);
    }

    #[test]
    fn huge_dimensions_are_refused_before_decoding() {
        // A 16x16 JPEG whose frame header claims 30000x30000.
        let mut j = jpeg(16, 16);
        let sof = j.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        j[sof + 5..sof + 9].copy_from_slice(&[0x75, 0x30, 0x75, 0x30]);
        assert_eq!(
            err(&j, "big.jpg"),
            PhotoError::TooLarge { width: 30000, height: 30000, limit: 100_000_000 }
        );
        // The same for a PNG header.
        let mut p = png(DynamicImage::ImageRgb8(RgbImage::new(16, 16)));
        p[16..24].copy_from_slice(&[0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30]);
        let crc = crc32fast::hash(&p[12..29]).to_be_bytes();
        p[29..33].copy_from_slice(&crc);
        assert!(matches!(err(&p, "big.png"), PhotoError::TooLarge { width: 30000, .. }));
    }

    #[test]
    fn large_jpegs_decode_scaled_down_but_keep_their_size() {
        let j = jpeg(1600, 1200);
        let opts = DecodeOptions { min_side: 300, ..Default::default() };
        let p = decode(&j, Path::new("x.JPG"), &opts).unwrap();
        // 1200 / 4 = 300 is the smallest shorter side >= 300.
        assert_eq!(p.image.dimensions(), (400, 300));
        assert_eq!(p.original, (1600, 1200));
        let full = decode(&j, Path::new("x.jpeg"), &DecodeOptions::default()).unwrap();
        assert_eq!(full.image.dimensions(), (1600, 1200));
        // The scaled decode looks like the full one, scaled: compare a pixel's neighbourhood.
        let a = p.image.get_pixel(200, 150)[0] as i32;
        let b = full.image.get_pixel(801, 601)[0] as i32;
        assert!((a - b).abs() <= 8, "{a} vs {b}");
    }
}
