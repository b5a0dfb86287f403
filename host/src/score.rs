//! `papilla score`: a GAMMA/REFUGE submission folder against its ground truth, with the
//! REFUGE definitions of `papilla_shared::metrics`.

use std::path::{Path, PathBuf};

use papilla_shared::labels::MaskRole;
use papilla_shared::metrics::{self, ImageScores, Summary};
use serde::Serialize;
use thiserror::Error;

use crate::data::stem;
use crate::masks::{MaskFileError, is_mask_file, read_mask};

/// Why a submission cannot be scored.
#[derive(Debug, Error)]
pub enum ScoreError {
    #[error("{}: cannot list the folder", dir.display())]
    ListDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no ground-truth masks (.bmp or .png) in the folder", dir.display())]
    NoTruth { dir: PathBuf },
    #[error("{}: no prediction for ground truth {} (expected {}.bmp)", expected.display(), truth.display(), expected.with_extension("").display())]
    MissingPrediction { truth: PathBuf, expected: PathBuf },
    #[error("{}: prediction is {pred_w}x{pred_h} but the ground truth {} is {truth_w}x{truth_h}", pred.display(), truth.display())]
    SizeMismatch {
        pred: PathBuf,
        truth: PathBuf,
        pred_w: u32,
        pred_h: u32,
        truth_w: u32,
        truth_h: u32,
    },
    #[error(transparent)]
    Mask(#[from] MaskFileError),
}

/// The scores of one image.
#[derive(Debug, Clone, Serialize)]
pub struct ScoredImage {
    /// File stem shared by the prediction and the ground truth.
    pub name: String,
    #[serde(flatten)]
    pub scores: ImageScores,
    pub vcdr_error: f64,
    /// Prediction pixels that were not exactly 0/128/255 and went to the nearest level.
    pub pred_snapped: u64,
    pub truth_snapped: u64,
}

/// A scored submission.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    #[serde(flatten)]
    pub summary: Summary,
    pub images: Vec<ScoredImage>,
    /// Predictions without a ground truth (ignored).
    pub extra_predictions: Vec<String>,
}

fn mask_files(dir: &Path) -> Result<Vec<PathBuf>, ScoreError> {
    let list_err = |source| ScoreError::ListDir { dir: dir.to_owned(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_err)? {
        let path = entry.map_err(list_err)?.path();
        if path.is_file() && is_mask_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Scores every ground-truth mask in `truth` against the mask of the same stem in `pred`
/// (`.bmp`, or `.png`).
pub fn score_dirs(pred: &Path, truth: &Path) -> Result<ScoreReport, ScoreError> {
    let truths = mask_files(truth)?;
    if truths.is_empty() {
        return Err(ScoreError::NoTruth { dir: truth.to_owned() });
    }
    let preds = mask_files(pred)?;
    let mut images = Vec::with_capacity(truths.len());
    for t in &truths {
        let name = stem(t);
        let candidates = [pred.join(format!("{name}.bmp")), pred.join(format!("{name}.png"))];
        let Some(p) = candidates.iter().find(|c| c.is_file()) else {
            return Err(ScoreError::MissingPrediction {
                truth: t.clone(),
                expected: candidates[0].clone(),
            });
        };
        let truth_mask = read_mask(t, MaskRole::Truth)?;
        let pred_mask = read_mask(p, MaskRole::Prediction)?;
        let scores = metrics::score(&pred_mask.labels, &truth_mask.labels).map_err(|e| {
            let papilla_shared::MetricsError::SizeMismatch { pred_w, pred_h, truth_w, truth_h } = e;
            ScoreError::SizeMismatch {
                pred: p.clone(),
                truth: t.clone(),
                pred_w,
                pred_h,
                truth_w,
                truth_h,
            }
        })?;
        images.push(ScoredImage {
            name,
            vcdr_error: scores.vcdr_error(),
            scores,
            pred_snapped: pred_mask.snapped,
            truth_snapped: truth_mask.snapped,
        });
    }
    let truth_names: std::collections::BTreeSet<String> = truths.iter().map(|t| stem(t)).collect();
    let extra_predictions =
        preds.iter().map(|p| stem(p)).filter(|s| !truth_names.contains(s)).collect();
    let per_image: Vec<ImageScores> = images.iter().map(|i| i.scores).collect();
    Ok(ScoreReport { summary: metrics::summarize(&per_image), images, extra_predictions })
}

impl ScoreReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let s = &self.summary;
        let mut out = format!("{} images\n", s.n);
        out += &format!("{:<12} {:>8}\n", "metric", "mean");
        for (name, v) in [
            ("Dice disc", s.disc_dice),
            ("Dice cup", s.cup_dice),
            ("vCDR MAE", s.vcdr_mae),
            ("IoU disc", s.disc_iou),
            ("IoU cup", s.cup_iou),
            ("hCDR MAE", s.hcdr_mae),
            ("aCDR MAE", s.acdr_mae),
        ] {
            out += &format!("{name:<12} {v:>8.4}\n");
        }
        let snapped: u64 = self.images.iter().map(|i| i.pred_snapped).sum();
        if snapped > 0 {
            out += &format!(
                "note: {snapped} prediction pixels were not 0/128/255 and were moved to the nearest level\n"
            );
        }
        if !self.extra_predictions.is_empty() {
            out += &format!(
                "note: {} predictions have no ground truth and were ignored\n",
                self.extra_predictions.len()
            );
        }
        out
    }

    /// Per-image rows as CSV.
    pub fn write_csv<W: std::io::Write>(&self, w: W) -> Result<(), csv::Error> {
        let mut wr = csv::Writer::from_writer(w);
        wr.write_record([
            "name",
            "disc_dice",
            "cup_dice",
            "disc_iou",
            "cup_iou",
            "vcdr",
            "vcdr_true",
            "vcdr_error",
            "hcdr",
            "hcdr_true",
            "acdr",
            "acdr_true",
        ])?;
        for i in &self.images {
            let s = &i.scores;
            let mut row = vec![i.name.clone()];
            row.extend(
                [
                    s.disc_dice,
                    s.cup_dice,
                    s.disc_iou,
                    s.cup_iou,
                    s.vcdr,
                    s.vcdr_true,
                    i.vcdr_error,
                    s.hcdr,
                    s.hcdr_true,
                    s.acdr,
                    s.acdr_true,
                ]
                .iter()
                .map(|v| format!("{v}")),
            );
            wr.write_record(&row)?;
        }
        wr.flush()?;
        Ok(())
    }
}
