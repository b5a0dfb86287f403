//! One exam, the same for `segment`, the service and `bench` ([`run`]): decode (scaled down
//! when large) -> quality measures -> the shared runtime (locator, crop, segmenter,
//! post-processing, the mask straight at the photograph's original size) -> files to store.
//! The callers differ only in where the files go.

use std::borrow::Cow;
use std::path::Path;
use std::time::{Duration, Instant};

use image::{ImageFormat, RgbImage};
use papilla_shared::labels::LabelMap;
use papilla_shared::metrics::Measurements;
use papilla_shared::runtime::{Engine, Framing, Located, RuntimeError};
use thiserror::Error;

use crate::camera::Frame;
use crate::config::QualityConfig;
use crate::photo::{DecodeOptions, PhotoError, decode};
use crate::quality::Quality;
use crate::record::{ExamRecord, Findings, Times};
use crate::store::ExamFile;

#[derive(Debug, Error)]
pub enum ExamError {
    #[error("{}", name.display())]
    Photo {
        name: std::path::PathBuf,
        #[source]
        source: PhotoError,
    },
    #[error("{}", name.display())]
    Model {
        name: std::path::PathBuf,
        #[source]
        source: RuntimeError,
    },
    /// The quality gate or the missing disc (only with [`ExamOptions::gate`]).
    #[error("{0}")]
    Refused(String),
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What the model found in one photograph.
#[derive(Debug)]
pub struct Analysis {
    /// The decoded photograph (scaled down when the JPEG was large).
    pub photo: RgbImage,
    /// The original size in pixels.
    pub original: (u32, u32),
    /// The size of the decode the segmenter cropped from: `photo`'s, or a finer decode's when
    /// the disc's crop in `photo` was smaller than the segmenter's input.
    pub segmented: (u32, u32),
    /// The mask shrunk to the decoded size, only to draw the overlay.
    pub mask_decoded: LabelMap,
    /// The cleaned mask at the original size (stored, and measured).
    pub mask: LabelMap,
    pub measurements: Measurements,
    pub disc_found: bool,
    pub quality: Quality,
    pub times: Times,
}

/// A decoded frame: pixels (scaled down when the JPEG was large) and the original size.
#[derive(Debug)]
pub struct Decoded {
    pub photo: RgbImage,
    pub original: (u32, u32),
    pub times: Times,
}

/// Decodes one frame.
fn decode_frame(frame: &Frame, decode_opts: &DecodeOptions) -> Result<Decoded, ExamError> {
    let mut times = Times::default();
    let t = Instant::now();
    let (photo, original) = match frame {
        Frame::File { name, bytes } => {
            let p = decode(bytes, name, decode_opts)
                .map_err(|source| ExamError::Photo { name: name.clone(), source })?;
            (p.image, p.original)
        }
        Frame::Pixels { image, .. } => (image.clone(), image.dimensions()),
    };
    times.decode_ms = ms(t.elapsed());
    Ok(Decoded { photo, original, times })
}

/// Measures the quality of a decoded frame.
fn measure_quality(d: &mut Decoded) -> Quality {
    let t = Instant::now();
    let q = Quality::measure(&d.photo);
    d.times.quality_ms = ms(t.elapsed());
    q
}

/// Segments a decoded frame framed as `framing` says; the mask comes back at the original size.
fn segment_decoded(
    engine: &Engine,
    d: Decoded,
    quality: Quality,
    frame: &Frame,
    decode_opts: &DecodeOptions,
    framing: Framing,
) -> Result<Analysis, ExamError> {
    let Decoded { photo, original, mut times } = d;
    let name = frame.name();
    let model = |source| ExamError::Model { name: name.to_owned(), source };
    // The engine interpolates the scores onto the original size itself: the stored mask and
    // the vCDR are the full photograph's, as the host's are.
    let (seg, segmented) = if framing == Framing::Fundus {
        let located = engine.locate(&photo).map_err(model)?;
        let t = Instant::now();
        let finer = finer_decode(engine, &located, &photo, original, frame, decode_opts)?;
        times.decode_ms += ms(t.elapsed());
        let image = finer.as_ref().unwrap_or(&photo);
        let seg = engine.segment_located(image, &located, original).map_err(model)?;
        (seg, image.dimensions())
    } else {
        let seg = engine.segment_framed_at(&photo, framing, original).map_err(model)?;
        (seg, photo.dimensions())
    };
    times.preprocess_ms = ms(seg.times.preprocess);
    times.inference_ms = ms(seg.times.inference);
    let t = Instant::now();
    // Only for drawing the overlay on the decoded photograph; nothing is measured on it.
    let (dw, dh) = photo.dimensions();
    let mask_decoded =
        if (dw, dh) == original { seg.mask.clone() } else { seg.mask.resize_nearest(dw, dh) };
    times.postprocess_ms = ms(seg.times.postprocess) + ms(t.elapsed());
    Ok(Analysis {
        photo,
        original,
        segmented,
        mask_decoded,
        mask: seg.mask,
        measurements: seg.measurements,
        disc_found: seg.disc_found,
        quality,
        times,
    })
}

/// A finer decode of a JPEG that was decoded scaled down, when the disc's crop in it is
/// smaller than the segmenter's input: the segmenter then crops from the finer decode, so the
/// crop is shrunk to the input as on the host (which decodes at full size), never enlarged.
/// The locator's answer holds for any decode. `None` when the decode is fine enough.
fn finer_decode(
    engine: &Engine,
    located: &Located,
    photo: &RgbImage,
    original: (u32, u32),
    frame: &Frame,
    opts: &DecodeOptions,
) -> Result<Option<RgbImage>, ExamError> {
    let Frame::File { name, bytes } = frame else { return Ok(None) };
    let (w, h) = photo.dimensions();
    if (w, h) == original {
        return Ok(None);
    }
    let Some(crop) = engine.crop_in(located, (w, h)) else { return Ok(None) };
    let (iw, ih) = engine.segmenter_input();
    // How much the crop would be enlarged; the decode's shorter side grows by as much.
    let enlarge =
        (f64::from(iw) / f64::from(crop.width)).max(f64::from(ih) / f64::from(crop.height));
    if enlarge <= 1.0 {
        return Ok(None);
    }
    let min_side = (f64::from(w.min(h)) * enlarge).ceil() as u32;
    let finer = decode(bytes, name, &DecodeOptions { min_side, ..*opts })
        .map_err(|source| ExamError::Photo { name: name.clone(), source })?;
    Ok(Some(finer.image))
}

/// Decodes, measures and segments one frame (no gate: `segment` and `bench`).
pub fn analyse(
    engine: &Engine,
    frame: &Frame,
    decode_opts: &DecodeOptions,
    framing: Framing,
) -> Result<Analysis, ExamError> {
    let mut d = decode_frame(frame, decode_opts)?;
    let q = measure_quality(&mut d);
    segment_decoded(engine, d, q, frame, decode_opts, framing)
}

/// Encodes an image into memory.
pub fn encode(img: image::DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encoding to memory cannot fail");
    out.into_inner()
}

/// The mask (8-bit BMP, 0/128/255, original size) and the overlay (PNG, decoded size).
pub fn render(a: &mut Analysis) -> (Vec<u8>, Vec<u8>) {
    let t = Instant::now();
    let mask = encode(a.mask.to_grey().into(), ImageFormat::Bmp);
    let drawn = papilla_shared::overlay::overlay(&a.photo, &a.mask_decoded, None, 0);
    let overlay = encode(drawn.into(), ImageFormat::Png);
    a.times.encode_ms = ms(t.elapsed());
    (mask, overlay)
}

impl Findings {
    pub fn of(a: &Analysis, refer_vcdr: f64, engine: &Engine) -> Self {
        let m = a.measurements;
        let manifest = engine.manifest();
        Self {
            width: a.original.0,
            height: a.original.1,
            decoded_width: a.photo.width(),
            decoded_height: a.photo.height(),
            disc_found: a.disc_found,
            vcdr: m.vcdr,
            disc_area_px: m.disc_area,
            cup_area_px: m.cup_area,
            measurements: m,
            refer: a.disc_found && m.vcdr >= refer_vcdr,
            refer_vcdr,
            quality: a.quality,
            model: format!("{} {}", manifest.name, manifest.version),
            times: a.times,
        }
    }
}

/// What [`run`] needs besides the model and the frame.
#[derive(Clone, Copy, Debug)]
pub struct ExamOptions<'a> {
    pub decode: DecodeOptions,
    pub framing: Framing,
    pub refer_vcdr: f64,
    /// The service's gate: a photograph it refuses, or one without a disc, ends the exam as
    /// [`ExamError::Refused`] before (or instead of) rendering. `None` segments anything.
    pub gate: Option<&'a QualityConfig>,
}

/// One exam's results, ready for a sink: the store (service, bench) or a folder (segment).
#[derive(Debug)]
pub struct ExamOutput<'f> {
    pub findings: Findings,
    /// 8-bit BMP, 0 cup / 128 rim / 255 background, the photograph's original size.
    pub mask: Vec<u8>,
    /// PNG, the decoded size.
    pub overlay: Vec<u8>,
    /// The photograph as it is kept in the exam folder: its name there and its bytes (a file
    /// frame's own bytes, a pixel frame encoded as PNG).
    pub photo_name: String,
    pub photo: Cow<'f, [u8]>,
}

impl ExamOutput<'_> {
    /// The stored record of this exam.
    pub fn record(&self, id: u64, unix_ms: i64, source: &str) -> ExamRecord {
        ExamRecord {
            id,
            time: iso8601(unix_ms),
            unix_ms,
            source: source.to_owned(),
            photo: self.photo_name.clone(),
            findings: self.findings.clone(),
        }
    }

    /// The exam folder's files, `record_json` the record's bytes.
    pub fn files<'a>(&'a self, record_json: &'a [u8]) -> [ExamFile<'a>; 4] {
        [
            ExamFile { name: &self.photo_name, bytes: &self.photo },
            ExamFile { name: "mask.bmp", bytes: &self.mask },
            ExamFile { name: "overlay.png", bytes: &self.overlay },
            ExamFile { name: "record.json", bytes: record_json },
        ]
    }
}

/// The exam, the one road of the service, `segment` and `bench`: decode (scaled down when
/// large) -> quality measures (and the gate, if any) -> segmentation with the mask at the
/// original size -> mask and overlay encoded -> findings. Storing is the caller's.
pub fn run<'f>(
    engine: &Engine,
    frame: &'f Frame,
    opts: &ExamOptions<'_>,
) -> Result<ExamOutput<'f>, ExamError> {
    let mut decoded = decode_frame(frame, &opts.decode)?;
    // The gate runs before the model: a lens cap costs milliseconds, not an inference.
    let quality = measure_quality(&mut decoded);
    if let Some(reason) = opts.gate.and_then(|g| quality.refusal(g)) {
        return Err(ExamError::Refused(reason));
    }
    let mut a = segment_decoded(engine, decoded, quality, frame, &opts.decode, opts.framing)?;
    if opts.gate.is_some() && !a.disc_found {
        return Err(ExamError::Refused("no optic disc found".into()));
    }
    let (mask, overlay) = render(&mut a);
    let findings = Findings::of(&a, opts.refer_vcdr, engine);
    let (photo_name, photo) = match frame {
        Frame::File { name, bytes } => {
            let ext =
                name.extension().and_then(|e| e.to_str()).unwrap_or("jpg").to_ascii_lowercase();
            (format!("photo.{ext}"), Cow::Borrowed(bytes.as_slice()))
        }
        // A pixel frame is decoded unscaled: the analysed photo is its pixels, moved out here
        // rather than copied from the frame.
        Frame::Pixels { .. } => (
            "photo.png".to_owned(),
            Cow::Owned(encode(std::mem::take(&mut a.photo).into(), ImageFormat::Png)),
        ),
    };
    Ok(ExamOutput { findings, mask, overlay, photo_name, photo })
}

/// The file name of `path` as text.
pub fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's civil-from-days.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-27T17:45:03.120Z`.
pub fn iso8601(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        unix_ms.rem_euclid(1000)
    )
}

/// Parses `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` into Unix milliseconds.
pub fn parse_date(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a date like 2026-11-27 or 2026-11-27T08:00:00Z");
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let p: Vec<&str> = date.split('-').collect();
    let [y, m, d] = p.as_slice() else { return Err(bad()) };
    let (y, m, d): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(t) = time {
        let q: Vec<u32> =
            t.split(':').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
        let [h, mi, s] = q.as_slice() else { return Err(bad()) };
        if *h > 23 || *mi > 59 || *s > 60 {
            return Err(bad());
        }
        secs += i64::from(h * 3600 + mi * 60 + s);
    }
    Ok(secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        // 2026-11-27T17:45:03.120Z, computed with `date -u -d @1795801503`.
        assert_eq!(iso8601(1_795_801_503_120), "2026-11-27T17:45:03.120Z");
        assert_eq!(parse_date("2026-11-27T17:45:03Z").unwrap(), 1_795_801_503_000);
        assert_eq!(parse_date("2024-02-29").unwrap() / 1000 % 86_400, 0);
        assert_eq!(iso8601(parse_date("2024-02-29").unwrap()), "2024-02-29T00:00:00.000Z");
        for bad in ["2026-13-01", "27/11/2026", "2026-11", "2026-11-27T25:00:00Z", "1900-01-01", ""]
        {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
