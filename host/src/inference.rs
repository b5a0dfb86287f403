//! Running a trained run directory (burn checkpoint + `config.json`) through the shared road:
//! `papilla evaluate` and `papilla predict`.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use image::RgbImage;
use papilla_shared::LabelMap;
use papilla_shared::files::{self, Durability};
use papilla_shared::metrics;
use papilla_shared::postprocess::{InferenceOptions, OutputSpec, postprocess};
use papilla_shared::preprocess::preprocess;
use thiserror::Error;

use crate::data::Sample;
use crate::model::UNet;
use crate::run_dir::{self, BEST_MODEL, LAST_MODEL, RunDir, RunDirError};
use crate::score::{ScoreReport, ScoredImage};
use crate::train_config::TrainingConfig;
use crate::training::{self, TrainError};

#[derive(Debug, Error)]
pub enum InferError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Run(#[from] RunDirError),
    #[error("{}: no checkpoint ({BEST_MODEL} or {LAST_MODEL}) in the run directory", dir.display())]
    NoCheckpoint { dir: PathBuf },
    #[error("{}: {reason}", path.display())]
    Image { path: PathBuf, reason: String },
    #[error(transparent)]
    Preprocess(#[from] papilla_shared::PreprocessError),
    #[error(transparent)]
    Postprocess(#[from] papilla_shared::PostprocessError),
    #[error(transparent)]
    Runtime(#[from] papilla_shared::runtime::RuntimeError),
    #[error("{}: cannot write", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("{}: cannot list the folder", dir.display())]
    ListDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no .jpg or .png photographs in the folder", dir.display())]
    NoImages { dir: PathBuf },
}

/// A trained model ready for inference.
#[derive(Debug)]
pub struct RunModel {
    pub config: TrainingConfig,
    pub model: UNet,
    pub device: Device,
    pub checkpoint: PathBuf,
    /// Test-time augmentation and shape fit, as a bundle of this run would apply them
    /// (default: none).
    pub options: InferenceOptions,
}

/// Loads the best checkpoint of a run directory (the last one if no best exists).
pub fn load_run(run_dir: &Path, device: &Device) -> Result<RunModel, InferError> {
    let run = RunDir::new(run_dir);
    let config = run.config()?;
    let device = device.clone().without_autodiff();
    let checkpoint =
        run.checkpoint().ok_or_else(|| InferError::NoCheckpoint { dir: run_dir.to_owned() })?;
    let model = run_dir::load_model(&config.model, &checkpoint, &device)?;
    Ok(RunModel { config, model, device, checkpoint, options: InferenceOptions::default() })
}

impl RunModel {
    /// Segments one photograph: shared preprocessing, the UNet, shared post-processing.
    pub fn segment(&self, image: &RgbImage) -> Result<LabelMap, InferError> {
        let (mut input, geometry) = preprocess(image, &self.config.preprocess, None)?;
        let (values, dims) = training::scores(&self.model, &mut input, &self.options, &self.device);
        let [n, c, h, w] = dims;
        debug_assert_eq!(n, 1);
        let mask = postprocess(&values, &[1, c, h, w], &OutputSpec::seed(), &geometry)?;
        Ok(self.options.fit(mask))
    }

    /// Masks of cached samples at their photographs' size, in batches.
    pub fn predict_samples(&self, samples: &[Sample]) -> Result<Vec<LabelMap>, InferError> {
        Ok(training::predict_masks(
            &self.model,
            samples,
            &self.config.preprocess,
            self.config.batch_size,
            &self.options,
            &self.device,
        )?)
    }
}

/// Scores cached samples; returns the report and the predicted masks (same order).
pub fn evaluate(
    run: &RunModel,
    samples: &[Sample],
    threshold: f64,
) -> Result<(ScoreReport, Vec<LabelMap>), InferError> {
    let masks = run.predict_samples(samples)?;
    let report = score_masks(samples, &masks, threshold);
    Ok((report, masks))
}

/// The REFUGE report of predicted masks against the samples' ground truth (same order).
pub fn score_masks(samples: &[Sample], masks: &[LabelMap], threshold: f64) -> ScoreReport {
    let mut images = Vec::with_capacity(samples.len());
    for (s, m) in samples.iter().zip(masks) {
        let scores =
            metrics::score(m, &s.truth).expect("prediction mapped back to the truth's size");
        images.push(ScoredImage {
            name: s.name.clone(),
            glaucoma: s.glaucoma,
            vcdr_error: scores.vcdr_error(),
            scores,
            pred_snapped: 0,
            truth_snapped: 0,
        });
    }
    ScoreReport::new(images, Vec::new(), threshold)
}

/// Photographs of a folder (or of its `fundus color images/` sub-folder), sorted.
pub fn list_photos(dir: &Path) -> Result<Vec<PathBuf>, InferError> {
    let sub = dir.join(crate::data::GAMMA_IMAGES);
    let dir = if sub.is_dir() { sub } else { dir.to_owned() };
    let photos: Vec<PathBuf> = files::list_files(&dir)
        .map_err(|source| InferError::ListDir { dir: dir.clone(), source })?
        .into_iter()
        .filter(|p| files::is_photo_name(p))
        .collect();
    if photos.is_empty() {
        return Err(InferError::NoImages { dir });
    }
    Ok(photos)
}

/// Reads a photograph for inference (EXIF orientation applied, as on the camera), naming the
/// file in errors.
pub fn read_photo(path: &Path) -> Result<RgbImage, InferError> {
    crate::data::read_photo_oriented(path)
        .map(|(img, _)| img)
        .map_err(|reason| InferError::Image { path: path.to_owned(), reason })
}

/// Writes a mask as an 8-bit BMP (0/128/255) via a temporary file and a rename.
pub fn write_mask_bmp(mask: &LabelMap, path: &Path) -> Result<(), InferError> {
    let tmp = files::temp_path(path);
    mask.to_grey()
        .save_with_format(&tmp, image::ImageFormat::Bmp)
        .map_err(|source| InferError::Write { path: tmp.clone(), source })?;
    files::commit(&tmp, path, Durability::Atomic).map_err(|e| InferError::Write {
        path: path.to_owned(),
        source: image::ImageError::IoError(e),
    })
}
