//! `papilla-device segment`: one-shot exams through the same exam road as the service. Each
//! photograph gets its mask (BMP, 0/128/255, original size), an overlay PNG and a JSON record,
//! written as temporary files then renamed, so a crash never leaves a half-written result.

use std::path::{Path, PathBuf};

use papilla_shared::bundle::Verification;
use papilla_shared::runtime::{Engine, OpenError};
use serde::Serialize;
use thiserror::Error;

use crate::camera::Frame;
use crate::exam::{ExamError, ExamOptions};
use crate::record::Findings;
use crate::store::{StoreError, write_atomic};

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
    #[error(transparent)]
    Model(#[from] OpenError),
    #[error(transparent)]
    Exam(#[from] ExamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "no model: pass --bundle FILE, install one with `papilla-device install-model`, or run from the repository root where {SHIPPED_MODEL} is"
    )]
    NoModel,
}

/// What `segment` wrote for one photograph; printed by `--json` and written as `<name>.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Segmented {
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
    Ok(Engine::open(path, &Verification::integrity_only(), threads)?)
}

/// Segments one photograph and stores its results in `out`.
pub fn exam(
    engine: &Engine,
    image: &Path,
    out: &Path,
    opts: &ExamOptions<'_>,
) -> Result<Segmented, SegmentError> {
    let start = std::time::Instant::now();
    let bytes = std::fs::read(image).map_err(|source| SegmentError::Io {
        path: image.to_owned(),
        what: "cannot read the photograph",
        source,
    })?;
    let frame = Frame::File { name: image.to_owned(), bytes };
    let done = crate::exam::run(engine, &frame, opts)?;
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
    write_atomic(&mask, &done.mask)?;
    write_atomic(&overlay, &done.overlay)?;
    let mut record = Segmented {
        image: image.to_owned(),
        mask,
        overlay,
        findings: done.findings,
        total_ms: 0.0,
    };
    record.findings.times.store_ms = t.elapsed().as_secs_f64() * 1e3;
    record.total_ms = start.elapsed().as_secs_f64() * 1e3;
    let json = serde_json::to_vec_pretty(&record).expect("a record serialises");
    write_atomic(&record_path, &json)?;
    Ok(record)
}
