//! `papilla score`: a GAMMA/REFUGE submission folder against its ground truth, with the
//! REFUGE definitions of `papilla_shared::metrics`.

use std::path::{Path, PathBuf};

use papilla_shared::labels::MaskRole;
use papilla_shared::metrics::{self, ImageScores, Summary};
use serde::{Deserialize, Deserializer, Serialize};
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

/// The vCDR at and above which an eye is referred, unless a command says otherwise: the
/// REFUGE-era screening convention, and the figure the model card's referral tables use.
pub const DEFAULT_REFERRAL_VCDR: f64 = 0.6;

/// The scores of one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoredImage {
    /// File stem shared by the prediction and the ground truth.
    pub name: String,
    /// The eye's diagnosis where the data set gives one (RIM-ONE DL's folders, REFUGE's
    /// g*/n* names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glaucoma: Option<bool>,
    #[serde(flatten)]
    pub scores: ImageScores,
    pub vcdr_error: f64,
    /// Prediction pixels that were not exactly 0/128/255 and went to the nearest level.
    pub pred_snapped: u64,
    pub truth_snapped: u64,
}

/// A scored submission.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreReport {
    #[serde(flatten)]
    pub summary: Summary,
    /// Referral at a vCDR threshold, the true vCDR deciding who should have been referred.
    pub referral: Referral,
    /// Errors by true-vCDR range: where the model draws cups too small or too large.
    pub vcdr_bins: Vec<VcdrBin>,
    /// AUC of the predicted vCDR for glaucoma, where every image has a diagnosis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub glaucoma_auc: Option<f64>,
    /// The same AUC of the experts' vCDR (the ceiling the masks allow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub glaucoma_auc_truth: Option<f64>,
    /// Eyes with glaucoma and without, where diagnoses exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub glaucoma_eyes: Option<[usize; 2]>,
    pub images: Vec<ScoredImage>,
    /// Predictions without a ground truth (ignored).
    #[serde(default)]
    pub extra_predictions: Vec<String>,
}

/// Referral at `threshold`: an eye is referred when its predicted vCDR is at or above it, and
/// should be when its true vCDR is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Referral {
    pub threshold: f64,
    /// Eyes whose true vCDR is at or above the threshold.
    pub eligible: usize,
    /// Of those, referred.
    pub referred: usize,
    /// Of those, not referred.
    pub missed: usize,
    /// Eyes below the threshold that were referred.
    #[serde(rename = "false")]
    pub false_referrals: usize,
    /// Eyes below the threshold.
    pub below: usize,
    /// referred / eligible (0 when none is eligible).
    pub sensitivity: f64,
}

/// The images whose true vCDR lies in `[lo, hi)`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct VcdrBin {
    pub lo: f64,
    /// Infinite for the last bin (`null` in JSON).
    #[serde(deserialize_with = "null_is_infinite")]
    pub hi: f64,
    pub n: usize,
    /// Mean of predicted minus true vCDR: negative when cups come out too small.
    pub signed_error: f64,
    pub abs_error: f64,
    pub cup_dice: f64,
}

/// JSON has no infinity: serde_json writes it as `null`.
fn null_is_infinite<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

/// Bounds of [`vcdr_bins`]: small cups, the 0.1 steps where screening decides, large cups.
pub const VCDR_BIN_EDGES: [f64; 6] = [0.0, 0.4, 0.5, 0.6, 0.7, f64::INFINITY];

/// Referral counts of `(predicted, true)` vCDR pairs at `threshold`.
pub fn referral(pairs: &[(f64, f64)], threshold: f64) -> Referral {
    let eligible = pairs.iter().filter(|(_, t)| *t >= threshold).count();
    let referred = pairs.iter().filter(|(p, t)| *t >= threshold && *p >= threshold).count();
    let false_referrals = pairs.iter().filter(|(p, t)| *t < threshold && *p >= threshold).count();
    Referral {
        threshold,
        eligible,
        referred,
        missed: eligible - referred,
        false_referrals,
        below: pairs.len() - eligible,
        sensitivity: if eligible > 0 { referred as f64 / eligible as f64 } else { 0.0 },
    }
}

/// Signed and absolute vCDR error and cup Dice per true-vCDR bin ([`VCDR_BIN_EDGES`]); empty
/// bins are left out.
pub fn vcdr_bins(images: &[ImageScores]) -> Vec<VcdrBin> {
    VCDR_BIN_EDGES
        .windows(2)
        .filter_map(|w| {
            let inside: Vec<&ImageScores> =
                images.iter().filter(|s| s.vcdr_true >= w[0] && s.vcdr_true < w[1]).collect();
            let n = inside.len();
            let mean = |f: &dyn Fn(&ImageScores) -> f64| {
                inside.iter().map(|s| f(s)).sum::<f64>() / n as f64
            };
            (n > 0).then(|| VcdrBin {
                lo: w[0],
                hi: w[1],
                n,
                signed_error: mean(&|s| s.vcdr - s.vcdr_true),
                abs_error: mean(&ImageScores::vcdr_error),
                cup_dice: mean(&|s| s.cup_dice),
            })
        })
        .collect()
}

/// Area under the ROC curve of `score` for telling `positive` eyes from the rest
/// (Mann-Whitney; ties count half). `None` without both kinds of eye.
pub fn auc(scored: &[(f64, bool)]) -> Option<f64> {
    let pos: Vec<f64> = scored.iter().filter(|(_, g)| *g).map(|(s, _)| *s).collect();
    let neg: Vec<f64> = scored.iter().filter(|(_, g)| !*g).map(|(s, _)| *s).collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut wins = 0f64;
    for p in &pos {
        for n in &neg {
            wins += match p.partial_cmp(n) {
                Some(std::cmp::Ordering::Greater) => 1.0,
                Some(std::cmp::Ordering::Equal) => 0.5,
                _ => 0.0,
            };
        }
    }
    Some(wins / (pos.len() * neg.len()) as f64)
}

impl ScoreReport {
    /// The report of scored images: means, referral at `threshold`, bins and, where every
    /// image has a diagnosis, the glaucoma AUCs.
    pub fn new(images: Vec<ScoredImage>, extra_predictions: Vec<String>, threshold: f64) -> Self {
        let per: Vec<ImageScores> = images.iter().map(|i| i.scores).collect();
        let pairs: Vec<(f64, f64)> = per.iter().map(|s| (s.vcdr, s.vcdr_true)).collect();
        let labels: Option<Vec<bool>> = images.iter().map(|i| i.glaucoma).collect();
        let (mut glaucoma_auc, mut glaucoma_auc_truth, mut glaucoma_eyes) = (None, None, None);
        if let Some(labels) = labels.filter(|l| !l.is_empty()) {
            let with = |f: fn(&ImageScores) -> f64| {
                per.iter().zip(&labels).map(|(s, g)| (f(s), *g)).collect::<Vec<_>>()
            };
            glaucoma_auc = auc(&with(|s| s.vcdr));
            glaucoma_auc_truth = auc(&with(|s| s.vcdr_true));
            let g = labels.iter().filter(|g| **g).count();
            glaucoma_eyes = Some([g, labels.len() - g]);
        }
        ScoreReport {
            summary: metrics::summarize(&per),
            referral: referral(&pairs, threshold),
            vcdr_bins: vcdr_bins(&per),
            glaucoma_auc,
            glaucoma_auc_truth,
            glaucoma_eyes,
            images,
            extra_predictions,
        }
    }
}

fn mask_files(dir: &Path) -> Result<Vec<PathBuf>, ScoreError> {
    let files = papilla_shared::files::list_files(dir)
        .map_err(|source| ScoreError::ListDir { dir: dir.to_owned(), source })?;
    Ok(files.into_iter().filter(|p| is_mask_file(p)).collect())
}

/// Scores every ground-truth mask in `truth` against the mask of the same stem in `pred`
/// (`.bmp`, or `.png`).
pub fn score_dirs(pred: &Path, truth: &Path, threshold: f64) -> Result<ScoreReport, ScoreError> {
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
            glaucoma: crate::data::refuge_diagnosis(&name),
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
    Ok(ScoreReport::new(images, extra_predictions, threshold))
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
        let r = &self.referral;
        out += &format!(
            "referral at vCDR >= {}: {} of {} eligible eyes referred ({} missed), {} false referrals among {}\n",
            r.threshold, r.referred, r.eligible, r.missed, r.false_referrals, r.below
        );
        if let (Some(a), Some(t), Some([g, n])) =
            (self.glaucoma_auc, self.glaucoma_auc_truth, self.glaucoma_eyes)
        {
            out += &format!(
                "glaucoma AUC of the vCDR: predicted {a:.3}, experts' masks {t:.3} ({g} glaucoma, {n} normal)\n"
            );
        }
        out += &format!(
            "{:<12} {:>5} {:>12} {:>10} {:>9}\n",
            "true vCDR", "n", "signed err", "abs err", "Dice cup"
        );
        for b in &self.vcdr_bins {
            let range = if b.hi.is_finite() {
                format!("{:.1}-{:.1}", b.lo, b.hi)
            } else {
                format!(">= {:.1}", b.lo)
            };
            out += &format!(
                "{range:<12} {:>5} {:>+12.4} {:>10.4} {:>9.4}\n",
                b.n, b.signed_error, b.abs_error, b.cup_dice
            );
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
            "glaucoma",
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
            row.push(i.glaucoma.map(|g| u8::from(g).to_string()).unwrap_or_default());
            wr.write_record(&row)?;
        }
        wr.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn scores(vcdr: f64, vcdr_true: f64, cup_dice: f64) -> ImageScores {
        ImageScores { vcdr, vcdr_true, cup_dice, ..ImageScores::default() }
    }

    #[test]
    fn referral_counts_each_kind_of_eye_once() {
        // referred, missed, a false referral exactly at the threshold, a correct pass.
        let pairs = [(0.7, 0.8), (0.5, 0.65), (0.6, 0.5), (0.3, 0.3)];
        let r = referral(&pairs, 0.6);
        assert_eq!((r.eligible, r.referred, r.missed, r.false_referrals, r.below), (2, 1, 1, 1, 2));
        assert_eq!(r.sensitivity, 0.5);
        let none = referral(&[(0.2, 0.3)], 0.6);
        assert_eq!((none.eligible, none.sensitivity), (0, 0.0));
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["false"], 1, "the issue's field name: {json}");
    }

    #[test]
    fn auc_is_the_share_of_correctly_ordered_pairs_with_ties_half() {
        let scored = [(0.9, true), (0.5, true), (0.5, false), (0.1, false)];
        assert_eq!(auc(&scored), Some(3.5 / 4.0));
        assert_eq!(auc(&[(0.1, true), (0.9, false)]), Some(0.0));
        assert_eq!(auc(&[(0.1, true), (0.9, true)]), None);
    }

    #[test]
    fn bins_give_the_signed_error_where_cups_are_large() {
        let per = [scores(0.30, 0.35, 0.9), scores(0.50, 0.75, 0.6), scores(0.70, 0.85, 0.8)];
        let bins = vcdr_bins(&per);
        assert_eq!(bins.len(), 2, "empty bins are left out: {bins:?}");
        assert_eq!((bins[0].lo, bins[0].hi, bins[0].n), (0.0, 0.4, 1));
        assert!((bins[0].signed_error + 0.05).abs() < 1e-12);
        assert_eq!((bins[1].lo, bins[1].n), (0.7, 2));
        assert!((bins[1].signed_error + 0.2).abs() < 1e-12, "{bins:?}");
        assert!((bins[1].cup_dice - 0.7).abs() < 1e-12);
    }

    #[test]
    fn a_report_has_aucs_only_when_every_eye_has_a_diagnosis() {
        let image = |name: &str, vcdr, vcdr_true, glaucoma| ScoredImage {
            name: name.into(),
            glaucoma,
            scores: scores(vcdr, vcdr_true, 0.8),
            vcdr_error: (vcdr - vcdr_true).abs(),
            pred_snapped: 0,
            truth_snapped: 0,
        };
        let labelled = vec![
            image("g0001", 0.7, 0.8, Some(true)),
            image("g0002", 0.4, 0.7, Some(true)),
            image("n0001", 0.5, 0.4, Some(false)),
        ];
        let r = ScoreReport::new(labelled.clone(), Vec::new(), 0.6);
        assert_eq!(r.glaucoma_auc, Some(0.5));
        assert_eq!(r.glaucoma_auc_truth, Some(1.0));
        assert_eq!(r.glaucoma_eyes, Some([2, 1]));
        assert_eq!((r.referral.referred, r.referral.missed), (1, 1));
        assert!(r.table().contains("glaucoma AUC of the vCDR: predicted 0.500"), "{}", r.table());
        let mut mixed = labelled;
        mixed.push(image("V0001", 0.3, 0.3, None));
        let r = ScoreReport::new(mixed, Vec::new(), 0.6);
        assert_eq!(r.glaucoma_auc, None);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("glaucoma_auc").is_none() && json["referral"]["eligible"] == 2, "{json}");
    }

    #[test]
    fn refuge_names_carry_the_diagnosis() {
        assert_eq!(crate::data::refuge_diagnosis("g0001"), Some(true));
        assert_eq!(crate::data::refuge_diagnosis("n0400"), Some(false));
        for other in ["V0001", "g01", "g00012", "ng001", "", "é001", "gé01"] {
            assert_eq!(crate::data::refuge_diagnosis(other), None, "{other}");
        }
    }
}
