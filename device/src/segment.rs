//! `papilla-device segment`: one-shot exams through the same exam road as the service. Each
//! photograph gets its mask (BMP, 0/128/255, original size), an overlay PNG and a JSON record,
//! written as temporary files then renamed, so a crash never leaves a half-written result.

use std::path::{Path, PathBuf};

use papilla_shared::bundle::Verification;
use papilla_shared::runtime::{Engine, Framing, RuntimeError};
use serde::Serialize;
use thiserror::Error;

use crate::camera::Frame;
use crate::exam::{ExamError, Findings, analyse, render};
use crate::photo::DecodeOptions;
use crate::store::{StoreError, write_atomic};

/// Where the shipped model lives in the repository.
pub const SHIPPED_MODEL: &str = "models/papilla-default.papilla";

#[derive(Debug, Error)]
pub enum SegmentError {
    #[error("{}: {what}: {source}", path.display())]
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
    #[error(transparent)]
    Exam(#[from] ExamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "no model: pass --bundle FILE, install one with `papilla-device install-model`, or run from the repository root where {SHIPPED_MODEL} is"
    )]
    NoModel,
}

/// A one-shot exam; written as `<name>.json`.
#[derive(Clone, Debug, Serialize)]
pub struct ExamRecord {
    pub image: PathBuf,
    pub mask: PathBuf,
    pub overlay: PathBuf,
    #[serde(flatten)]
    pub findings: Findings,
    pub total_ms: f64,
}

/// The bundle to use: `explicit`, else the model installed under `root`, else the shipped one
/// (repository root, or beside the crate).
pub fn resolve_bundle(
    explicit: Option<&Path>,
    root: Option<&Path>,
) -> Result<PathBuf, SegmentError> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    if let Some(root) = root {
        let slots = crate::slots::Slots::new(root);
        if let Some(slot) = slots.current() {
            return Ok(slots.path(slot));
        }
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

/// Segments one photograph and stores its results in `out`.
pub fn exam(
    engine: &Engine,
    image: &Path,
    out: &Path,
    refer_vcdr: f64,
    decode: &DecodeOptions,
    framing: Framing,
) -> Result<ExamRecord, SegmentError> {
    let start = std::time::Instant::now();
    let bytes = std::fs::read(image).map_err(|source| SegmentError::Io {
        path: image.to_owned(),
        what: "cannot read the photograph",
        source,
    })?;
    let frame = Frame::File { name: image.to_owned(), bytes };
    let mut a = analyse(engine, &frame, decode, framing)?;
    let (mask_bytes, overlay_bytes) = render(&mut a);
    std::fs::create_dir_all(out).map_err(|source| SegmentError::Io {
        path: out.to_owned(),
        what: "cannot create the output folder",
        source,
    })?;
    let stem = image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mask = out.join(format!("{stem}.bmp"));
    let overlay = out.join(format!("{stem}_overlay.png"));
    let record_path = out.join(format!("{stem}.json"));
    let t = std::time::Instant::now();
    write_atomic(&mask, &mask_bytes)?;
    write_atomic(&overlay, &overlay_bytes)?;
    let mut record = ExamRecord {
        image: image.to_owned(),
        mask,
        overlay,
        findings: Findings::of(&a, refer_vcdr, engine),
        total_ms: 0.0,
    };
    record.findings.times.store_ms = t.elapsed().as_secs_f64() * 1e3;
    record.total_ms = start.elapsed().as_secs_f64() * 1e3;
    let json = serde_json::to_vec_pretty(&record).expect("a record serialises");
    write_atomic(&record_path, &json)?;
    Ok(record)
}
