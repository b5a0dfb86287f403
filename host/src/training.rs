//! The training loop: seed-recipe optimisation, validation with the shared post-processing and
//! REFUGE metrics every epoch, checkpoints, resume, `metrics.csv`, a PNG of the curves, and a
//! usable checkpoint on Ctrl-C.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::config::Config;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData, activation};
use papilla_shared::files::{self, Durability};
use papilla_shared::metrics::{self, ImageScores, Summary};
use papilla_shared::postprocess::{InferenceOptions, OutputSpec, postprocess};
use papilla_shared::preprocess::{PreprocessConfig, Tensor4, normalize};
use papilla_shared::synth::SplitMix64;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::augment::{AugmentConfig, augment};
use crate::backend::{Compute, Hardware};
use crate::data::{Sample, shuffle};
use crate::model::{UNet, UNetConfig};
use crate::plot;
use crate::progress::{Bar, Progress, fmt_duration};

/// File names inside a run directory.
pub const CONFIG_FILE: &str = "config.json";
pub const STATE_FILE: &str = "state.json";
pub const METRICS_FILE: &str = "metrics.csv";
pub const PLOT_FILE: &str = "curves.png";
/// The run's page: progress, best epoch, the curves and the epochs' table.
pub const RUN_PAGE: &str = "index.html";
pub const BEST_MODEL: &str = "model-best.bpk";
pub const LAST_MODEL: &str = "model-last.bpk";
pub const LAST_OPTIM: &str = "optim-last.bpk";

/// Optimiser family.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    /// SGD with momentum and L2 weight decay (the seed recipe).
    Momentum,
    /// AdamW with decoupled weight decay.
    AdamW,
}

/// What the Dice part of the loss measures.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Soft Dice of each class (cup, rim, background) over the whole batch (the seed recipe).
    ClassDice,
    /// Soft Dice of the disc (cup + rim) and of the cup, per image, then averaged: the regions
    /// and the averaging the REFUGE metrics use, so a small cup counts as much as a large one.
    NestedDice,
}

/// Everything a run needs to be reproduced; saved as `config.json` in the run directory.
#[derive(Config, Debug)]
pub struct TrainingConfig {
    pub model: UNetConfig,
    pub preprocess: PreprocessConfig,
    pub augment: AugmentConfig,
    /// Training data folders.
    pub data: Vec<String>,
    /// Explicit validation folders; empty uses `val_fraction` of the training data.
    pub val: Vec<String>,
    #[config(default = 150)]
    pub epochs: usize,
    #[config(default = 4)]
    pub batch_size: usize,
    /// Peak learning rate (reached after warm-up).
    #[config(default = 1e-3)]
    pub lr: f64,
    #[config(default = 10)]
    pub warmup_epochs: usize,
    #[config(default = "OptimizerKind::Momentum")]
    pub optimizer: OptimizerKind,
    #[config(default = 0.9)]
    pub momentum: f64,
    /// L2 penalty (Momentum) or decoupled decay (AdamW).
    #[config(default = 1e-4)]
    pub weight_decay: f64,
    /// Weight of the cross-entropy term added to the Dice loss (0 = Dice only, as the seed).
    #[config(default = 0.0)]
    pub ce_weight: f64,
    #[config(default = "LossKind::ClassDice")]
    pub loss: LossKind,
    /// Weight of the vertical cup-to-disc ratio term ([`soft_vcdr`]'s L1 error; 0 = off).
    #[config(default = 0.0)]
    pub vcdr_weight: f64,
    /// Epoch at which the current cosine cycle began: a warm restart (0 = the first cycle).
    #[config(default = 0)]
    pub cycle_start: usize,
    #[config(default = 0.1)]
    pub val_fraction: f64,
    #[config(default = 42)]
    pub seed: u64,
    /// Keep a numbered checkpoint every N epochs (0 = only best and last).
    #[config(default = 10)]
    pub checkpoint_every: usize,
    /// Each epoch draws the eyes whose true vCDR is at least `large_cup_vcdr` this many times
    /// (1 = every eye once): screening is for them, and REFUGE has few (31 of 400 at 0.6).
    #[config(default = 1)]
    pub large_cup_repeat: usize,
    #[config(default = 0.6)]
    pub large_cup_vcdr: f64,
}

/// One epoch's draw before shuffling: every sample once, and eyes with a large cup (true vCDR
/// at least `config.large_cup_vcdr`) `config.large_cup_repeat` times.
pub fn epoch_indices(true_vcdr: &[f64], config: &TrainingConfig) -> Vec<usize> {
    let mut order = Vec::with_capacity(true_vcdr.len());
    for (i, v) in true_vcdr.iter().enumerate() {
        let times = if *v >= config.large_cup_vcdr { config.large_cup_repeat.max(1) } else { 1 };
        order.extend(std::iter::repeat_n(i, times));
    }
    order
}

/// The true vCDR of each sample, as the REFUGE metric measures it on its ground truth.
pub fn true_vcdr(samples: &[Sample]) -> Vec<f64> {
    samples.iter().map(|s| metrics::measure(&s.truth).vcdr).collect()
}

impl TrainingConfig {
    /// Learning rate at batch `batch` of the epoch after `completed` epochs: linear warm-up,
    /// then cosine decay to zero at `epochs`, both counted from `cycle_start`. The position is
    /// taken from the epoch, not from a running step count, because a resumed run may draw
    /// more or fewer batches per epoch than before (data added or removed).
    pub fn lr_at(&self, completed: usize, batch: usize, steps_per_epoch: usize) -> f64 {
        let start = self.cycle_start.min(self.epochs) * steps_per_epoch;
        let step = (completed * steps_per_epoch + batch).saturating_sub(start);
        let total = (self.epochs * steps_per_epoch - start).max(1);
        let warm = (self.warmup_epochs * steps_per_epoch).min(total);
        if step < warm {
            return self.lr * (step + 1) as f64 / warm as f64;
        }
        let t = (step - warm) as f64 / (total - warm).max(1) as f64;
        0.5 * self.lr * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }

    fn optimizer(&self) -> ModuleOptimizer {
        match self.optimizer {
            OptimizerKind::Momentum => SgdConfig::new()
                .with_momentum(Some(
                    MomentumConfig::new().with_momentum(self.momentum).with_dampening(0.0),
                ))
                .with_weight_decay(Some(WeightDecayConfig::new(self.weight_decay as f32)))
                .init(),
            OptimizerKind::AdamW => {
                AdamWConfig::new().with_weight_decay(self.weight_decay as f32).init()
            }
        }
    }
}

/// Where a run stands; saved as `state.json` after every epoch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RunState {
    /// Completed epochs.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    pub best_score: Option<f64>,
    pub best_epoch: Option<usize>,
    pub best: Option<Summary>,
    pub wall_time_s: f64,
    /// Backend, device and threads of each stretch of the run (a resume on other hardware
    /// adds one); absent in runs written before it was recorded.
    #[serde(default)]
    pub hardware: Vec<Hardware>,
    /// Eyes trained on in the latest stretch (a large cup drawn several times counts once);
    /// 0 in runs written before it was recorded.
    #[serde(default)]
    pub train_images: usize,
}

/// One row of `metrics.csv`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub val_disc_dice: f64,
    pub val_cup_dice: f64,
    pub val_vcdr_mae: f64,
    /// Selection score: mean of the two Dice minus the vCDR MAE.
    pub score: f64,
    pub seconds: f64,
    pub images_per_s: f64,
}

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot save or load the checkpoint: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("no training samples")]
    NoTrainingData,
    #[error("no validation samples: use --val DIR or a --val-fraction above 0 with 2+ samples")]
    NoValidationData,
    #[error("input size {size} is not a multiple of {multiple} (UNet depth {depth})")]
    BadSize { size: u32, multiple: u32, depth: usize },
    #[error("the loss became {0} at epoch {1}: lower the learning rate")]
    Diverged(f64, usize),
    #[error(transparent)]
    Postprocess(#[from] papilla_shared::PostprocessError),
    #[error(transparent)]
    Curves(#[from] plot::CurvesError),
}

fn io_err(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.to_owned();
    move |source| TrainError::Io { path, what, source }
}

/// How a call to [`train`] ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub state: RunState,
    pub history: Vec<EpochMetrics>,
    /// True when stopped by the interrupt flag; the last checkpoint is usable.
    pub interrupted: bool,
}

/// Builds a normalised input batch.
///
/// # Shapes
/// - returns `[N, 3, H, W]`
pub fn input_batch(
    inputs: &[&papilla_shared::preprocess::Resized],
    config: &PreprocessConfig,
    device: &Device,
) -> Tensor<4> {
    let batch = normalized_batch(inputs, config);
    Tensor::from_data(TensorData::new(batch.data, batch.shape), device)
}

/// Network-sized samples normalised into one `[N, 3, H, W]` batch.
fn normalized_batch(
    inputs: &[&papilla_shared::preprocess::Resized],
    config: &PreprocessConfig,
) -> Tensor4 {
    let (w, h) = (inputs[0].width as usize, inputs[0].height as usize);
    let mut data = Vec::with_capacity(inputs.len() * 3 * w * h);
    for r in inputs {
        data.extend_from_slice(&normalize(r, config).data);
    }
    Tensor4 { shape: [inputs.len(), 3, h, w], data }
}

/// The UNet's scores of `batch` under `options`' test-time augmentation, and their shape:
/// the burn side of [`InferenceOptions::scores`], for validation and `evaluate --model RUN_DIR`.
pub fn scores(
    model: &UNet,
    batch: &mut Tensor4,
    options: &InferenceOptions,
    device: &Device,
) -> (Vec<f32>, [usize; 4]) {
    let mut dims = [0; 4];
    let values = options
        .scores(batch, |x| {
            let input = Tensor::from_data(TensorData::new(x.data.clone(), x.shape), device);
            let logits = model.forward(input);
            dims = logits.dims();
            Ok::<_, std::convert::Infallible>(crate::model::f32_values(logits.into_data()))
        })
        .unwrap_or_else(|never| match never {});
    (values, dims)
}

/// One-hot targets in class-index order.
///
/// # Shapes
/// - returns `[N, classes, H, W]`
pub fn target_batch(
    targets: &[&papilla_shared::LabelMap],
    classes: usize,
    device: &Device,
) -> Tensor<4> {
    let (w, h) = (targets[0].width() as usize, targets[0].height() as usize);
    let plane = w * h;
    let mut data = vec![0f32; targets.len() * classes * plane];
    for (b, t) in targets.iter().enumerate() {
        for (p, c) in t.classes().iter().enumerate() {
            data[(b * classes + *c as usize) * plane + p] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(data, [targets.len(), classes, h, w]), device)
}

/// Soft Dice loss (smooth 1, as PaddleSeg's DiceLoss) of the regions `kind` names, plus
/// `ce_weight` times cross-entropy.
///
/// # Shapes
/// - `logits`, `onehot`: `[N, C, H, W]` -> scalar `[1]`; `NestedDice` needs the class order
///   cup, rim, background.
pub fn loss(logits: Tensor<4>, onehot: Tensor<4>, ce_weight: f64, kind: LossKind) -> Tensor<1> {
    loss_with_vcdr(logits, onehot, ce_weight, kind, 0.0)
}

/// The vertical cup-to-disc ratio as the REFUGE metric measures it (the largest count of cup,
/// and of disc, pixels in one column), from soft masks: per image, the largest column sum of
/// the cup's and of the disc's probability, and their ratio. Differentiable, so the network
/// is told directly when it draws a large cup short.
///
/// # Shapes
/// - `probs`: `[N, C, H, W]` in the class order cup, rim, background -> `[N]`.
pub fn soft_vcdr(probs: Tensor<4>) -> Tensor<1> {
    let n = probs.dims()[0];
    let cup = probs.clone().narrow(1, 0, 1).sum_dim(2).max_dim(3);
    let disc = probs.narrow(1, 0, 2).sum_dim(1).sum_dim(2).max_dim(3);
    (cup / (disc + 1.0)).reshape([n])
}

/// [`loss`] plus `vcdr_weight` times the mean absolute error of [`soft_vcdr`] against the
/// one-hot truth's.
pub fn loss_with_vcdr(
    logits: Tensor<4>,
    onehot: Tensor<4>,
    ce_weight: f64,
    kind: LossKind,
    vcdr_weight: f64,
) -> Tensor<1> {
    let probs = activation::softmax(logits.clone(), 1);
    let vcdr_probs = (vcdr_weight > 0.0).then(|| probs.clone());
    let soft_dice = |p: Tensor<4>, t: Tensor<4>, dims: &[usize]| {
        let inter = (p.clone() * t.clone()).sum_dims(dims);
        (inter * 2.0 + 1.0) / (p.sum_dims(dims) + t.sum_dims(dims) + 1.0)
    };
    let dice = match kind {
        LossKind::ClassDice => soft_dice(probs, onehot.clone(), &[0, 2, 3]).mean(),
        LossKind::NestedDice => {
            let disc = |x: Tensor<4>| x.narrow(1, 0, 2).sum_dim(1);
            let cup = |x: Tensor<4>| x.narrow(1, 0, 1);
            let d = soft_dice(disc(probs.clone()), disc(onehot.clone()), &[2, 3]);
            let c = soft_dice(cup(probs), cup(onehot.clone()), &[2, 3]);
            (d.mean() + c.mean()) / 2.0
        }
    };
    let mut total = dice.neg() + 1.0;
    if let Some(p) = vcdr_probs {
        let err = (soft_vcdr(p) - soft_vcdr(onehot.clone())).abs().mean();
        total = total + err * vcdr_weight;
    }
    if ce_weight > 0.0 {
        let ce = (activation::log_softmax(logits, 1) * onehot).sum_dim(1).mean().neg();
        total + ce * ce_weight
    } else {
        total
    }
}

/// Masks of cached samples at their photographs' size: the model in batches, then the shared
/// post-processing with each sample's geometry. `device` must not be an autodiff device.
pub fn predict_masks(
    model: &UNet,
    samples: &[Sample],
    preprocess: &PreprocessConfig,
    batch_size: usize,
    options: &InferenceOptions,
    device: &Device,
) -> Result<Vec<papilla_shared::LabelMap>, TrainError> {
    let spec = OutputSpec::seed();
    let mut masks = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(batch_size.max(1)) {
        let inputs: Vec<_> = chunk.iter().map(|s| &s.input).collect();
        let mut batch = normalized_batch(&inputs, preprocess);
        // The same test-time augmentation and shape fit as the tract runtime applies.
        let (values, dims) = scores(model, &mut batch, options, device);
        let [_, c, h, w] = dims;
        let per = c * h * w;
        for (i, sample) in chunk.iter().enumerate() {
            let slice = values.get(i * per..(i + 1) * per).expect("one block of logits per sample");
            let mask = postprocess(slice, &[1, c, h, w], &spec, &sample.geometry)?;
            masks.push(options.fit(mask));
        }
    }
    Ok(masks)
}

/// Runs the model on samples and scores them at their original size with the shared
/// post-processing and REFUGE metrics. `device` must not be an autodiff device.
pub fn validate(
    model: &UNet,
    samples: &[Sample],
    config: &TrainingConfig,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Vec<ImageScores>, TrainError> {
    progress.begin(Bar::Nested, "validation", samples.len() as u64);
    let mut scores = Vec::with_capacity(samples.len());
    // A few batches at a time, so the nested bar moves.
    for part in samples.chunks(config.batch_size.max(1) * 4) {
        let masks = predict_masks(
            model,
            part,
            &config.preprocess,
            config.batch_size,
            &InferenceOptions::default(),
            device,
        )?;
        scores.extend(part.iter().zip(&masks).map(|(s, m)| {
            metrics::score(m, &s.truth).expect("geometry maps back to the truth's size")
        }));
        progress.advance(Bar::Nested, part.len() as u64);
    }
    progress.end(Bar::Nested, None);
    Ok(scores)
}

/// Selection score of a validation summary (higher is better).
pub fn selection_score(s: &Summary) -> f64 {
    (s.disc_dice + s.cup_dice) / 2.0 - s.vcdr_mae
}

fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).expect("plain data serialises");
    write_atomic(path, text.as_bytes())
}

/// Writes via a temporary file and a rename, so a crash never leaves half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    files::write_atomic(path, bytes, Durability::Atomic).map_err(io_err(path, "cannot write"))
}

fn save_model(model: &UNet, path: &Path) -> Result<(), TrainError> {
    let tmp = files::temp_path(path);
    model
        .clone()
        .save_file(&tmp)
        .map_err(|e| TrainError::Checkpoint { path: tmp.clone(), message: e.to_string() })?;
    files::commit(&tmp, path, Durability::Atomic).map_err(io_err(path, "cannot replace"))
}

/// Loads a checkpoint into a freshly built model.
pub fn load_model(config: &UNetConfig, path: &Path, device: &Device) -> Result<UNet, TrainError> {
    config
        .init(device)
        .try_load_file(path)
        .map_err(|e| TrainError::Checkpoint { path: path.to_owned(), message: e.to_string() })
}

/// Epochs a run directory has completed (0 before its first).
pub fn completed_epochs(run_dir: &Path) -> Result<usize, TrainError> {
    let path = run_dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(0);
    }
    Ok(load_state(&path)?.epoch)
}

/// The backend a run last trained on (`None`: no state yet, or a run written before the
/// backend was recorded).
pub fn last_backend(run_dir: &Path) -> Result<Option<crate::cli::BackendArg>, TrainError> {
    use crate::cli::BackendArg;
    let path = run_dir.join(STATE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let state = load_state(&path)?;
    Ok(state.hardware.last().and_then(|h| BackendArg::from_burn_name(&h.backend)))
}

fn load_state(path: &Path) -> Result<RunState, TrainError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path, "cannot read"))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainError::Config { path: path.to_owned(), message: e.to_string() })
}

/// Reads `config.json` of a run directory.
pub fn load_config(run_dir: &Path) -> Result<TrainingConfig, TrainError> {
    let path = run_dir.join(CONFIG_FILE);
    let text =
        std::fs::read_to_string(&path).map_err(io_err(&path, "cannot read the run config"))?;
    config_from_json(&text).map_err(|e| TrainError::Config { path, message: e.to_string() })
}

/// Parses a run config; fields added after a run was written read as their defaults (burn's
/// `Config` derive would refuse them as missing).
fn config_from_json(text: &str) -> Result<TrainingConfig, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_str(text)?;
    if let Some(fields) = value.as_object_mut() {
        fields.entry("loss").or_insert_with(|| serde_json::json!(LossKind::ClassDice));
        fields.entry("cycle_start").or_insert_with(|| serde_json::json!(0));
        fields.entry("large_cup_repeat").or_insert_with(|| serde_json::json!(1));
        fields.entry("large_cup_vcdr").or_insert_with(|| serde_json::json!(0.6));
        fields.entry("vcdr_weight").or_insert_with(|| serde_json::json!(0.0));
    }
    serde_json::from_value(value)
}

fn append_metrics(path: &Path, m: &EpochMetrics) -> Result<(), TrainError> {
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path, "cannot open"))?;
    let mut line = String::new();
    if new {
        line += "epoch,lr,train_loss,val_disc_dice,val_cup_dice,val_vcdr_mae,score,seconds,images_per_s\n";
    }
    line += &format!(
        "{},{:.6e},{:.6},{:.6},{:.6},{:.6},{:.6},{:.2},{:.3}\n",
        m.epoch,
        m.lr,
        m.train_loss,
        m.val_disc_dice,
        m.val_cup_dice,
        m.val_vcdr_mae,
        m.score,
        m.seconds,
        m.images_per_s
    );
    f.write_all(line.as_bytes()).map_err(io_err(path, "cannot append"))?;
    f.sync_data().map_err(io_err(path, "cannot sync"))
}

/// Reads `metrics.csv` back (for resume and plotting).
pub fn read_metrics(path: &Path) -> Vec<EpochMetrics> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let v: Vec<f64> = l.split(',').map(|x| x.parse().unwrap_or(f64::NAN)).collect();
            (v.len() == 9).then(|| EpochMetrics {
                epoch: v[0] as usize,
                lr: v[1],
                train_loss: v[2],
                val_disc_dice: v[3],
                val_cup_dice: v[4],
                val_vcdr_mae: v[5],
                score: v[6],
                seconds: v[7],
                images_per_s: v[8],
            })
        })
        .collect()
}

/// How the caller follows and stops a training run.
#[derive(Clone, Copy)]
pub struct Watch<'a> {
    /// Turns true to stop cleanly, with a usable last checkpoint.
    pub interrupt: &'a AtomicBool,
    /// Receives the epochs, batches and validations.
    pub progress: &'a dyn Progress,
}

impl std::fmt::Debug for Watch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("interrupt", &self.interrupt).finish_non_exhaustive()
    }
}

/// Trains (or resumes) a run in `out`. `compute` holds the training device (autodiff is
/// added here) and what it is, recorded in `state.json`. Stops cleanly, with a usable last checkpoint, when `watch.interrupt` turns true.
pub fn train(
    config: &TrainingConfig,
    train_set: &[Sample],
    val_set: &[Sample],
    out: &Path,
    compute: &Compute,
    resume: bool,
    watch: Watch<'_>,
) -> Result<TrainOutcome, TrainError> {
    let Watch { interrupt, progress } = watch;
    if train_set.is_empty() {
        return Err(TrainError::NoTrainingData);
    }
    if val_set.is_empty() {
        return Err(TrainError::NoValidationData);
    }
    let multiple = config.model.size_multiple();
    for size in [config.preprocess.width, config.preprocess.height] {
        if size % multiple != 0 {
            return Err(TrainError::BadSize { size, multiple, depth: config.model.depth });
        }
    }
    std::fs::create_dir_all(out).map_err(io_err(out, "cannot create the run directory"))?;
    let train_device = compute.device.clone().autodiff();
    let eval_device = compute.device.clone().without_autodiff();

    let state_path = out.join(STATE_FILE);
    let (mut model, mut optim, mut state) = if resume && state_path.exists() {
        let state = load_state(&state_path)?;
        let model = load_model(&config.model, &out.join(LAST_MODEL), &train_device)?;
        let optim_path = out.join(LAST_OPTIM);
        let optim = config
            .optimizer()
            .load(&optim_path)
            .map_err(|e| TrainError::Checkpoint { path: optim_path, message: e.to_string() })?;
        (model, optim, state)
    } else {
        train_device.seed(config.seed);
        let _ = std::fs::remove_file(out.join(METRICS_FILE));
        (config.model.init(&train_device), config.optimizer(), RunState::default())
    };
    if state.hardware.last() != Some(&compute.hardware) {
        state.hardware.push(compute.hardware.clone());
    }
    state.train_images = train_set.len();
    save_json(&out.join(CONFIG_FILE), config)?;

    let mut history = read_metrics(&out.join(METRICS_FILE));
    let draw = epoch_indices(&true_vcdr(train_set), config);
    if config.large_cup_repeat > 1 {
        let large = (draw.len() - train_set.len()) / (config.large_cup_repeat - 1);
        progress.note(&format!(
            "large cups (true vCDR >= {}): {large} of {} eyes, drawn {} times an epoch",
            config.large_cup_vcdr,
            train_set.len(),
            config.large_cup_repeat
        ));
    }
    let steps_per_epoch = draw.len().div_ceil(config.batch_size.max(1));
    let classes = config.model.num_classes;
    let run_start = Instant::now();
    let wall_before = state.wall_time_s;

    while state.epoch < config.epochs {
        let epoch = state.epoch + 1;
        let mut rng =
            SplitMix64::new(config.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        let mut order = draw.clone();
        shuffle(&mut order, &mut rng);
        let started = Instant::now();
        let (mut loss_sum, mut seen) = (0f64, 0usize);
        let mut lr = config.lr_at(state.epoch, 0, steps_per_epoch);
        let label = format!("epoch {epoch}/{}", config.epochs);
        progress.begin(Bar::Main, &label, steps_per_epoch as u64);
        for (b, batch) in order.chunks(config.batch_size.max(1)).enumerate() {
            if interrupt.load(Ordering::SeqCst) {
                progress.end(Bar::Main, None);
                return finish_interrupted(&model, &optim, out, state, history);
            }
            let augmented: Vec<_> = batch
                .iter()
                .map(|&i| {
                    // Style mixing borrows another training photograph's look (drawn only
                    // when it is on, so runs without it keep their random stream).
                    let style = (config.augment.camera.style_mix > 0.0 && train_set.len() > 1)
                        .then(|| {
                            &train_set[(rng.next_u64() % train_set.len() as u64) as usize].input
                        });
                    let s = &train_set[i];
                    augment(&s.input, &s.target, &config.augment, style, &mut rng)
                })
                .collect();
            let inputs: Vec<_> = augmented.iter().map(|(r, _)| r).collect();
            let targets: Vec<_> = augmented.iter().map(|(_, t)| t).collect();
            let x = input_batch(&inputs, &config.preprocess, &train_device);
            let y = target_batch(&targets, classes, &train_device);
            let l = loss_with_vcdr(
                model.forward(x),
                y,
                config.ce_weight,
                config.loss,
                config.vcdr_weight,
            );
            let value = f64::from(l.clone().into_scalar::<f32>());
            if !value.is_finite() {
                return Err(TrainError::Diverged(value, epoch));
            }
            let grads = GradientsParams::from_grads(l.backward(), &model);
            lr = config.lr_at(state.epoch, b, steps_per_epoch);
            model = optim.step(lr, model, grads);
            state.step += 1;
            loss_sum += value * batch.len() as f64;
            seen += batch.len();
            let elapsed = started.elapsed().as_secs_f64();
            let ips = seen as f64 / elapsed.max(1e-9);
            let left = (steps_per_epoch - b - 1) as f64 * batch.len() as f64 / ips.max(1e-9)
                + (config.epochs - epoch) as f64 * draw.len() as f64 / ips.max(1e-9);
            let status = format!(
                "loss {:.4} lr {lr:.2e} {ips:.2} img/s, run ETA {}",
                loss_sum / seen as f64,
                fmt_duration(left)
            );
            progress.event(crate::progress::Event::Advance {
                bar: Bar::Main,
                n: 1,
                status: Some(&status),
            });
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let valid = model.valid();
        let summary =
            metrics::summarize(&validate(&valid, val_set, config, &eval_device, progress)?);
        let score = selection_score(&summary);
        let m = EpochMetrics {
            epoch,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            val_disc_dice: summary.disc_dice,
            val_cup_dice: summary.cup_dice,
            val_vcdr_mae: summary.vcdr_mae,
            score,
            seconds: started.elapsed().as_secs_f64(),
            images_per_s: seen as f64 / train_seconds.max(1e-9),
        };
        progress.end(
            Bar::Main,
            Some(&format!(
                "epoch {epoch}: loss {:.4}  val Dice disc {:.4} cup {:.4} vCDR MAE {:.4} ({} images)",
                m.train_loss, summary.disc_dice, summary.cup_dice, summary.vcdr_mae, summary.n
            )),
        );
        state.epoch = epoch;
        state.wall_time_s = wall_before + run_start.elapsed().as_secs_f64();
        if state.best_score.is_none_or(|b| score > b) {
            state.best_score = Some(score);
            state.best_epoch = Some(epoch);
            state.best = Some(summary);
            save_model(&model, &out.join(BEST_MODEL))?;
        }
        if config.checkpoint_every > 0 && epoch % config.checkpoint_every == 0 {
            save_model(&model, &out.join(format!("model-epoch-{epoch:04}.bpk")))?;
        }
        save_checkpoint(&model, &optim, out, &state)?;
        append_metrics(&out.join(METRICS_FILE), &m)?;
        history.push(m);
        plot::write_curves(&history, &out.join(PLOT_FILE))?;
        let name = out.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let page = crate::report::run_page(&name, config.epochs, &state, &history);
        std::fs::write(out.join(RUN_PAGE), page)
            .map_err(io_err(&out.join(RUN_PAGE), "cannot write"))?;
    }
    Ok(TrainOutcome { state, history, interrupted: false })
}

/// Saves model, optimiser and state; the state goes last, so a crash in between leaves the
/// previous consistent checkpoint (a resumed run repeats at most one epoch).
fn save_checkpoint(
    model: &UNet,
    optim: &ModuleOptimizer,
    out: &Path,
    state: &RunState,
) -> Result<(), TrainError> {
    save_model(model, &out.join(LAST_MODEL))?;
    let path = out.join(LAST_OPTIM);
    let tmp = files::temp_path(&path);
    optim
        .save(&tmp)
        .map_err(|e| TrainError::Checkpoint { path: tmp.clone(), message: e.to_string() })?;
    files::commit(&tmp, &path, Durability::Atomic).map_err(io_err(&path, "cannot replace"))?;
    save_json(&out.join(STATE_FILE), state)
}

fn finish_interrupted(
    model: &UNet,
    optim: &ModuleOptimizer,
    out: &Path,
    state: RunState,
    history: Vec<EpochMetrics>,
) -> Result<TrainOutcome, TrainError> {
    // The interrupted epoch is discarded: the checkpoint holds the weights reached so far,
    // and `state.epoch` still counts only completed epochs, so --resume repeats this epoch.
    save_checkpoint(model, optim, out, &state)?;
    Ok(TrainOutcome { state, history, interrupted: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_keeps_the_backend_it_last_trained_on() {
        use crate::backend::Hardware;
        use crate::cli::BackendArg;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_backend(dir.path()).unwrap(), None, "no state yet");
        let hw = |b: &str| Hardware { backend: b.into(), device: "cpu".into(), threads: 2 };
        let mut state = RunState { epoch: 3, ..RunState::default() };
        save_json(&dir.path().join(STATE_FILE), &state).unwrap();
        assert_eq!(last_backend(dir.path()).unwrap(), None, "written before it was recorded");
        state.hardware = vec![hw("flex"), hw("tch")];
        save_json(&dir.path().join(STATE_FILE), &state).unwrap();
        assert_eq!(last_backend(dir.path()).unwrap(), Some(BackendArg::Tch));
        std::fs::write(dir.path().join(STATE_FILE), "{").unwrap();
        assert!(last_backend(dir.path()).is_err(), "a damaged state is an error, not flex");
    }

    #[test]
    fn large_cups_are_drawn_more_often_and_old_configs_draw_every_eye_once() {
        let vcdr = [0.3, 0.6, 0.59, 0.8];
        assert_eq!(epoch_indices(&vcdr, &cfg()), vec![0, 1, 2, 3]);
        let c = cfg().with_large_cup_repeat(3);
        assert_eq!(epoch_indices(&vcdr, &c), vec![0, 1, 1, 1, 2, 3, 3, 3]);
        let c = c.with_large_cup_vcdr(0.5);
        assert_eq!(epoch_indices(&vcdr, &c).len(), 10);
        let mut json = serde_json::to_value(cfg()).unwrap();
        let fields = json.as_object_mut().unwrap();
        fields.remove("large_cup_repeat");
        fields.remove("large_cup_vcdr");
        let old = config_from_json(&json.to_string()).unwrap();
        assert_eq!((old.large_cup_repeat, old.large_cup_vcdr), (1, 0.6));
    }

    fn cfg() -> TrainingConfig {
        TrainingConfig::new(
            UNetConfig::new(),
            PreprocessConfig::square(64),
            AugmentConfig::none(),
            vec![],
            vec![],
        )
    }

    #[test]
    fn warm_up_then_cosine_to_zero() {
        let c = cfg().with_epochs(20).with_warmup_epochs(2).with_lr(0.01);
        // 10 steps per epoch: warm-up over 20 steps
        assert!((c.lr_at(0, 0, 10) - 0.0005).abs() < 1e-12);
        assert!((c.lr_at(1, 9, 10) - 0.01).abs() < 1e-12);
        assert!((c.lr_at(2, 0, 10) - 0.01).abs() < 1e-12);
        assert!((c.lr_at(11, 0, 10) - 0.005).abs() < 1e-9, "half-way through the cosine");
        assert!(c.lr_at(19, 9, 10) < 1e-5);
    }

    #[test]
    fn a_warm_restart_runs_its_own_warm_up_and_cosine() {
        let c = cfg().with_epochs(20).with_warmup_epochs(1).with_lr(0.01).with_cycle_start(10);
        // 10 steps per epoch; the cycle is epochs 11-20
        assert!((c.lr_at(10, 0, 10) - 0.001).abs() < 1e-12, "first warm-up step");
        assert!((c.lr_at(10, 9, 10) - 0.01).abs() < 1e-12, "peak");
        assert!((c.lr_at(15, 5, 10) - 0.005).abs() < 1e-9, "half-way through the cosine");
        assert!(c.lr_at(19, 9, 10) < 1e-5);
    }

    #[test]
    fn a_restart_on_more_data_follows_its_own_epochs_not_the_old_step_count() {
        // Seen on a real run: 36 epochs of 189 batches, then a restart at lr 0.001 with a third
        // data set (314 batches an epoch). Counting steps made every batch of the new cycle sit
        // "before" its start, stuck at the first warm-up rate (3.2e-6) for 8 epochs.
        let c = cfg().with_epochs(54).with_warmup_epochs(1).with_lr(0.001).with_cycle_start(36);
        assert!((c.lr_at(36, 0, 314) - 0.001 / 314.0).abs() < 1e-12, "first warm-up step");
        assert!((c.lr_at(36, 313, 314) - 0.001).abs() < 1e-12, "peak after one epoch");
        let mid = c.lr_at(45, 157, 314);
        assert!(mid > 0.0004 && mid < 0.0006, "about half-way through the cosine: {mid}");
        assert!(c.lr_at(53, 313, 314) < 1e-7);
    }

    #[test]
    fn an_older_config_without_loss_or_cycle_reads_as_the_first_cycle_of_class_dice() {
        let mut v = serde_json::to_value(cfg().with_loss(LossKind::NestedDice)).unwrap();
        let o = v.as_object_mut().unwrap();
        assert!(o.remove("loss").is_some() && o.remove("cycle_start").is_some());
        let back = config_from_json(&v.to_string()).unwrap();
        assert_eq!((back.loss, back.cycle_start), (LossKind::ClassDice, 0));
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = cfg().with_ce_weight(0.5).with_optimizer(OptimizerKind::AdamW);
        let text = serde_json::to_string(&c).unwrap();
        let back: TrainingConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back.ce_weight, 0.5);
        assert_eq!(back.optimizer, OptimizerKind::AdamW);
        assert_eq!(back.model, c.model);
        assert_eq!(back.preprocess, c.preprocess);
    }

    #[test]
    fn dice_loss_is_zero_for_a_confident_right_answer_and_high_for_a_wrong_one() {
        let device = Device::flex();
        let t = papilla_shared::LabelMap::filled(2, 2, papilla_shared::Class::Rim);
        let y = target_batch(&[&t], 3, &device);
        let right = y.clone() * 50.0;
        let wrong = y.clone().neg() * 50.0;
        let l_right = loss(right, y.clone(), 0.0, LossKind::ClassDice).into_scalar::<f32>();
        let l_wrong = loss(wrong, y, 1.0, LossKind::ClassDice).into_scalar::<f32>();
        // classes absent from the target give (0 + 1) / (0 + 1) = 1 with smooth 1
        assert!(l_right < 0.01, "{l_right}");
        assert!(l_wrong > 0.5, "{l_wrong}");
    }

    /// A 6x6 disc whose cup is a 2-wide column 4 pixels tall, against a prediction whose cup is
    /// 2 tall: the soft vCDR is the metric's ratio (smoothed by 1 in the disc), and the vCDR term
    /// adds exactly its weight times the error.
    #[test]
    fn soft_vcdr_counts_the_tallest_column_and_its_term_penalises_a_short_cup() {
        use papilla_shared::{Class, LabelMap};
        let device = Device::flex();
        let cup = |rows: std::ops::Range<u32>| {
            let mut m = LabelMap::filled(6, 6, Class::Rim);
            for y in rows {
                m.set(2, y, Class::Cup);
                m.set(3, y, Class::Cup);
            }
            m
        };
        let (truth, short) = (cup(1..5), cup(2..4));
        let y = target_batch(&[&truth], 3, &device);
        let v = soft_vcdr(y.clone()).into_data().try_to_vec::<f32>().unwrap();
        assert!((v[0] - 4.0 / 7.0).abs() < 1e-5, "{v:?}");
        let logits = target_batch(&[&short], 3, &device) * 50.0;
        let plain = loss(logits.clone(), y.clone(), 0.0, LossKind::NestedDice).into_scalar::<f32>();
        let with = loss_with_vcdr(logits.clone(), y.clone(), 0.0, LossKind::NestedDice, 2.0)
            .into_scalar::<f32>();
        assert!((with - plain - 2.0 * (4.0 - 2.0) / 7.0).abs() < 1e-3, "{plain} {with}");
        let right = target_batch(&[&truth], 3, &device) * 50.0;
        let none = loss_with_vcdr(right, y, 0.0, LossKind::NestedDice, 2.0).into_scalar::<f32>();
        assert!(none < 0.01, "{none}");
    }

    /// Two 4x4 images: the first all cup, predicted right; the second with a one-pixel cup in
    /// its rim, predicted as rim. Over the batch the cup is nearly all right, per image half
    /// of the cups are missed.
    #[test]
    fn nested_dice_weighs_each_image_s_cup_the_same() {
        use papilla_shared::{Class, LabelMap};
        let device = Device::flex();
        let big = LabelMap::filled(4, 4, Class::Cup);
        let mut small = LabelMap::filled(4, 4, Class::Rim);
        small.set(1, 1, Class::Cup);
        let y = target_batch(&[&big, &small], 3, &device);
        let pred_small = LabelMap::filled(4, 4, Class::Rim);
        let logits = target_batch(&[&big, &pred_small], 3, &device) * 50.0;
        let class = loss(logits.clone(), y.clone(), 0.0, LossKind::ClassDice).into_scalar::<f32>();
        let nested = loss(logits, y, 0.0, LossKind::NestedDice).into_scalar::<f32>();
        // nested: disc right in both, cup 1 and 1/(1+1) (smooth 1) -> 1 - (1 + 0.75) / 2
        assert!((nested - 0.125).abs() < 1e-3, "{nested}");
        assert!(class < 0.06, "{class}");
    }

    #[test]
    fn nested_dice_scores_the_disc_right_when_only_the_cup_is_wrong() {
        use papilla_shared::{Class, LabelMap};
        let device = Device::flex();
        let t = LabelMap::filled(2, 2, Class::Rim);
        let y = target_batch(&[&t], 3, &device);
        let swapped = target_batch(&[&LabelMap::filled(2, 2, Class::Cup)], 3, &device) * 50.0;
        let nested = loss(swapped, y, 0.0, LossKind::NestedDice).into_scalar::<f32>();
        // the disc is right; the cup is 4 px where none is: 1 - (1 + 1/5) / 2
        assert!((nested - 0.4).abs() < 1e-3, "{nested}");
    }
}
