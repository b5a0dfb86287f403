//! `papilla-device segment`: one-shot exams through the shared runtime. Each photograph gets its
//! mask (BMP, 0/128/255, original size), an overlay PNG and a JSON record, written as temporary
//! files then renamed, so a crash never leaves a half-written result.

use std::path::{Path, PathBuf};

use papilla_shared::bundle::Verification;
use papilla_shared::metrics::Measurements;
use papilla_shared::runtime::{Engine, RuntimeError};
use serde::Serialize;
use thiserror::Error;

/// Where the shipped model lives in the repository.
pub const SHIPPED_MODEL: &str = "models/papilla-default.papilla";

#[derive(Debug, Error)]
pub enum SegmentError {
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Model {
        path: PathBuf,
        #[source]
        source: RuntimeError,
    },
    #[error("{}: cannot read the photograph: {reason}", path.display())]
    Photo { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Segment {
        path: PathBuf,
        #[source]
        source: RuntimeError,
    },
    #[error(
        "no model: pass --bundle FILE, or run from the repository root where {SHIPPED_MODEL} is"
    )]
    NoModel,
}

/// What one exam found; written as `<name>.json`.
#[derive(Clone, Debug, Serialize)]
pub struct ExamRecord {
    pub image: PathBuf,
    pub mask: PathBuf,
    pub overlay: PathBuf,
    pub width: u32,
    pub height: u32,
    pub disc_found: bool,
    pub vcdr: f64,
    pub disc_area_px: u64,
    pub cup_area_px: u64,
    pub measurements: Measurements,
    /// vCDR at or above the referral threshold.
    pub refer: bool,
    pub refer_vcdr: f64,
    pub model: String,
    pub inference_ms: f64,
    pub total_ms: f64,
}

/// The bundle to use: `explicit`, else the shipped one (repository root, or beside the crate).
pub fn resolve_bundle(explicit: Option<&Path>) -> Result<PathBuf, SegmentError> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let candidates = [
        PathBuf::from(SHIPPED_MODEL),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(SHIPPED_MODEL),
    ];
    candidates.into_iter().find(|p| p.is_file()).ok_or(SegmentError::NoModel)
}

/// Loads and verifies a bundle (integrity always; signatures when the bundle has one).
pub fn load(path: &Path, threads: usize) -> Result<Engine, SegmentError> {
    let bytes = std::fs::read(path).map_err(|source| SegmentError::Io {
        path: path.to_owned(),
        what: "cannot read the model bundle",
        source,
    })?;
    Engine::from_bytes(&bytes, &Verification::integrity_only(), threads)
        .map_err(|source| SegmentError::Model { path: path.to_owned(), source })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SegmentError> {
    let io = |what| move |source| SegmentError::Io { path: path.to_owned(), what, source };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io("cannot create"))?;
        f.write_all(bytes).map_err(io("cannot write"))?;
        f.sync_all().map_err(io("cannot sync"))?;
    }
    std::fs::rename(&tmp, path).map_err(io("cannot rename into place"))
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encoding to memory");
    out.into_inner()
}

/// Segments one photograph and stores its results in `out`.
pub fn exam(
    engine: &Engine,
    image: &Path,
    out: &Path,
    refer_vcdr: f64,
) -> Result<ExamRecord, SegmentError> {
    let start = std::time::Instant::now();
    let bad = |reason: String| SegmentError::Photo { path: image.to_owned(), reason };
    let bytes = std::fs::read(image).map_err(|e| bad(e.to_string()))?;
    let format = image::guess_format(&bytes).map_err(|e| bad(e.to_string()))?;
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(&bytes) {
        // The decoder fills a cut-off JPEG with grey and succeeds; a half photograph must not
        // become an exam.
        return Err(bad("truncated JPEG (no end-of-image marker)".into()));
    }
    let photo = image::load_from_memory_with_format(&bytes, format)
        .map_err(|e| bad(e.to_string()))?
        .to_rgb8();
    let seg = engine
        .segment(&photo)
        .map_err(|source| SegmentError::Segment { path: image.to_owned(), source })?;
    std::fs::create_dir_all(out).map_err(|source| SegmentError::Io {
        path: out.to_owned(),
        what: "cannot create the output folder",
        source,
    })?;
    let stem = image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mask = out.join(format!("{stem}.bmp"));
    let overlay = out.join(format!("{stem}_overlay.png"));
    let record_path = out.join(format!("{stem}.json"));
    write_atomic(&mask, &encode(seg.mask.to_grey().into(), image::ImageFormat::Bmp))?;
    let drawn = papilla_shared::overlay::overlay(&photo, &seg.mask, None, 0);
    write_atomic(&overlay, &encode(drawn.into(), image::ImageFormat::Png))?;
    let m = seg.measurements;
    let manifest = engine.manifest();
    let record = ExamRecord {
        image: image.to_owned(),
        mask,
        overlay,
        width: photo.width(),
        height: photo.height(),
        disc_found: seg.disc_found,
        vcdr: m.vcdr,
        disc_area_px: m.disc_area,
        cup_area_px: m.cup_area,
        measurements: m,
        refer: seg.disc_found && m.vcdr >= refer_vcdr,
        refer_vcdr,
        model: format!("{} {}", manifest.name, manifest.version),
        inference_ms: seg.times.inference.as_secs_f64() * 1e3,
        total_ms: start.elapsed().as_secs_f64() * 1e3,
    };
    let json = serde_json::to_vec_pretty(&record).expect("a record serialises");
    write_atomic(&record_path, &json)?;
    Ok(record)
}

/// Whether a JPEG ends with its end-of-image marker (searched in the last 4 KiB, so trailers
/// some cameras append are allowed; an embedded thumbnail's marker sits near the start).
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096).max(bytes.len() / 2)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}
