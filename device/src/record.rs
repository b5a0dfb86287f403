//! What an exam leaves behind, as data only: the record stored in its folder
//! ([`ExamRecord`], `record.json`), what it found ([`Findings`]), where its time went
//! ([`Times`]) and its line in the index ([`IndexEntry`], [`Outcome`]).
//!
//! The exam fills these, the store writes and recovers them, the service and the commands read
//! them; this module depends on none of those, so a change of the exam road cannot silently
//! change what crash recovery parses.

use papilla_shared::metrics::Measurements;
use serde::{Deserialize, Serialize};

use crate::quality::Quality;

/// Milliseconds spent in each stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Times {
    pub decode_ms: f64,
    pub quality_ms: f64,
    pub preprocess_ms: f64,
    pub inference_ms: f64,
    pub postprocess_ms: f64,
    pub encode_ms: f64,
    pub store_ms: f64,
}

impl Times {
    pub fn total_ms(&self) -> f64 {
        self.decode_ms
            + self.quality_ms
            + self.preprocess_ms
            + self.inference_ms
            + self.postprocess_ms
            + self.encode_ms
            + self.store_ms
    }
}

/// What one exam found, as written into every record (`segment`'s and the service's).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Findings {
    pub width: u32,
    pub height: u32,
    pub decoded_width: u32,
    pub decoded_height: u32,
    pub disc_found: bool,
    pub vcdr: f64,
    pub disc_area_px: u64,
    pub cup_area_px: u64,
    pub measurements: Measurements,
    /// A disc was found and its vCDR reached the referral threshold.
    pub refer: bool,
    pub refer_vcdr: f64,
    pub quality: Quality,
    /// "name version" of the model bundle.
    pub model: String,
    pub times: Times,
}

/// The record of a stored exam (`record.json` in its folder).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExamRecord {
    pub id: u64,
    /// UTC, ISO 8601.
    pub time: String,
    pub unix_ms: i64,
    /// The photograph's name as captured.
    pub source: String,
    /// The photograph's file in the exam folder.
    pub photo: String,
    #[serde(flatten)]
    pub findings: Findings,
}

impl ExamRecord {
    /// The record's line in the index.
    pub fn index_entry(&self) -> IndexEntry {
        IndexEntry {
            id: self.id,
            unix_ms: self.unix_ms,
            source: self.source.clone(),
            outcome: Outcome::Completed,
            vcdr: self.findings.vcdr,
            disc_area_px: self.findings.disc_area_px,
            cup_area_px: self.findings.cup_area_px,
            refer: self.findings.refer,
            model: self.findings.model.clone(),
        }
    }

    /// `record.json`'s bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a record serialises")
    }
}

/// How an exam ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Segmented and stored; its folder holds the files.
    Completed,
    /// The quality gate said no (the reason); nothing but this entry is stored.
    Refused(String),
    /// Capture, decoding, the model or storage failed (the error).
    Failed(String),
}

/// One line of the index: enough to list and export exams without opening their folders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub id: u64,
    /// Milliseconds since the Unix epoch (UTC).
    pub unix_ms: i64,
    /// The photograph's original file name.
    pub source: String,
    pub outcome: Outcome,
    pub vcdr: f64,
    pub disc_area_px: u64,
    pub cup_area_px: u64,
    pub refer: bool,
    /// "name version" of the model bundle.
    pub model: String,
}
