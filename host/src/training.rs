//! The training loop: seed-recipe optimisation, validation with the shared post-processing and
//! REFUGE metrics every epoch, checkpoints, resume, `metrics.csv`, a PNG of the curves, and a
//! usable checkpoint on Ctrl-C.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use papilla_shared::metrics::{self, ImageScores, Summary};
use papilla_shared::postprocess::{InferenceOptions, OutputSpec, postprocess};
use papilla_shared::preprocess::{PreprocessConfig, Tensor4, normalize};
use papilla_shared::synth::SplitMix64;
use thiserror::Error;

use crate::augment::augment;
use crate::backend::Compute;
use crate::data::{Sample, shuffle};
use crate::history::EpochMetrics;
use crate::loss::{loss_with_vcdr, target_batch};
use crate::model::UNet;
use crate::plot;
use crate::progress::{Bar, Progress, fmt_duration};
use crate::run_dir::{PLOT_FILE, RunDir, RunDirError, RunState};
use crate::train_config::{FolderRepeat, TrainingConfig};

/// One epoch's draw before shuffling: every sample once, eyes with a large cup (true vCDR at
/// least `config.large_cup_vcdr`) `config.large_cup_repeat` times (or their folder's
/// `config.folder_large_cup_repeat`), and that count multiplied by the `config.folder_repeat`
/// of the eye's folder (`folders[i]`).
pub fn epoch_indices(true_vcdr: &[f64], folders: &[&str], config: &TrainingConfig) -> Vec<usize> {
    let of = |list: &[FolderRepeat], folder: &str| {
        list.iter().find(|r| r.folder == folder).map(|r| r.times.max(1))
    };
    let mut order = Vec::with_capacity(true_vcdr.len());
    for (i, (v, folder)) in true_vcdr.iter().zip(folders).enumerate() {
        let large = if *v >= config.large_cup_vcdr {
            of(&config.folder_large_cup_repeat, folder).unwrap_or(config.large_cup_repeat.max(1))
        } else {
            1
        };
        let of_folder = of(&config.folder_repeat, folder).unwrap_or(1);
        order.extend(std::iter::repeat_n(i, large * of_folder));
    }
    order
}

/// The true vCDR of each sample, as the REFUGE metric measures it on its ground truth.
pub fn true_vcdr(samples: &[Sample]) -> Vec<f64> {
    samples.iter().map(|s| metrics::measure(&s.truth).vcdr).collect()
}

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Run(#[from] RunDirError),
    #[error("no training samples")]
    NoTrainingData,
    #[error("no validation samples: use --val DIR or a --val-fraction above 0 with 2+ samples")]
    NoValidationData,
    #[error("input size {size} is not a multiple of {multiple}, the network's downsampling")]
    BadSize { size: u32, multiple: u32 },
    #[error("the loss became {0} at epoch {1}: lower the learning rate")]
    Diverged(f64, usize),
    #[error(transparent)]
    Postprocess(#[from] papilla_shared::PostprocessError),
    #[error(transparent)]
    Curves(#[from] plot::CurvesError),
    #[error("cannot start from pretrained weights")]
    Pretrained(#[source] crate::model::PretrainedError),
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
            return Err(TrainError::BadSize { size, multiple });
        }
    }
    let run = RunDir::new(out);
    run.create()?;
    let train_device = compute.device.clone().autodiff();
    let eval_device = compute.device.clone().without_autodiff();

    let resumed = if resume { run.state()? } else { None };
    let (mut model, mut optim, mut state) = match resumed {
        Some(state) => {
            let (model, optim) = run.load_last(config, &train_device)?;
            (model, optim, state)
        }
        None => {
            train_device.seed(config.run_seed());
            run.clear_history()?;
            let mut model = config.model.init(&train_device);
            if let Some(path) = &config.pretrained {
                let n = model.load_lite0(Path::new(path)).map_err(TrainError::Pretrained)?;
                progress.note(&format!("encoder: {n} ImageNet tensors from {path}"));
            }
            (model, config.optimizer(), RunState::default())
        }
    };
    if state.hardware.last() != Some(&compute.hardware) {
        state.hardware.push(compute.hardware.clone());
    }
    state.train_images = train_set.len();
    run.save_config(config)?;

    let mut history = run.history();
    let vcdr = true_vcdr(train_set);
    let folders: Vec<&str> = train_set.iter().map(|s| s.folder()).collect();
    let draw = epoch_indices(&vcdr, &folders, config);
    if config.large_cup_repeat > 1 {
        let large = vcdr.iter().filter(|v| **v >= config.large_cup_vcdr).count();
        progress.note(&format!(
            "large cups (true vCDR >= {}): {large} of {} eyes, drawn {} times an epoch",
            config.large_cup_vcdr,
            train_set.len(),
            config.large_cup_repeat
        ));
    }
    for r in &config.folder_repeat {
        let eyes = folders.iter().filter(|f| **f == r.folder).count();
        progress.note(&format!("{}: {eyes} eyes, each drawn {} times as often", r.folder, r.times));
    }
    for r in &config.folder_large_cup_repeat {
        let large = (folders.iter().zip(&vcdr))
            .filter(|(f, v)| **f == r.folder && **v >= config.large_cup_vcdr)
            .count();
        progress.note(&format!("{}: its {large} large cups drawn {} times", r.folder, r.times));
    }
    if draw.len() != train_set.len() {
        progress.note(&format!("{} draws an epoch from {} eyes", draw.len(), train_set.len()));
    }
    let steps_per_epoch = draw.len().div_ceil(config.batch_size.max(1));
    // At peak rate 0 (the BatchNorm epoch after `average`) no step can move a weight, so the
    // forward runs without gradients and nothing is differentiated (a quarter of the time,
    // BENCHMARKS.md). BatchNorm still takes its training path and updates its running
    // statistics; the optimiser's moments keep their values.
    let statistics_only = config.lr == 0.0;
    if statistics_only {
        model = model.no_grad();
    }
    let classes = config.model.num_classes;
    let run_start = Instant::now();
    let wall_before = state.wall_time_s;

    while state.epoch < config.epochs {
        let epoch = state.epoch + 1;
        let mut rng =
            SplitMix64::new(config.run_seed().wrapping_mul(1_000_003).wrapping_add(epoch as u64));
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
                return finish_interrupted(&model, &optim, &run, state, history);
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
            lr = config.lr_at(state.epoch, b, steps_per_epoch);
            if statistics_only {
                // Nothing to differentiate, but burn's autodiff frees finished graphs only
                // when some backward runs: without one memory grows by gigabytes a minute.
                let _ = Tensor::<1>::zeros([1], &train_device).require_grad().sum().backward();
            } else {
                let grads = GradientsParams::from_grads(l.backward(), &model);
                model = optim.step(lr, model, grads);
            }
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
            run.save_best(&model)?;
        }
        if config.checkpoint_every > 0 && epoch % config.checkpoint_every == 0 {
            run.save_numbered(&model, epoch)?;
        }
        run.save_checkpoint(&model, &optim, &state)?;
        run.append_history(&m)?;
        history.push(m);
        plot::write_curves(&history, &run.file(PLOT_FILE))?;
        run.write_page(&crate::report::run_page(&run.name(), config.epochs, &state, &history))?;
    }
    Ok(TrainOutcome { state, history, interrupted: false })
}

fn finish_interrupted(
    model: &UNet,
    optim: &burn::optim::ModuleOptimizer,
    run: &RunDir,
    state: RunState,
    history: Vec<EpochMetrics>,
) -> Result<TrainOutcome, TrainError> {
    // The interrupted epoch is discarded: the checkpoint holds the weights reached so far,
    // and `state.epoch` still counts only completed epochs, so --resume repeats this epoch.
    run.save_checkpoint(model, optim, &state)?;
    Ok(TrainOutcome { state, history, interrupted: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train_config::test_config;

    #[test]
    fn large_cups_are_drawn_more_often_and_old_configs_draw_every_eye_once() {
        let vcdr = [0.3, 0.6, 0.59, 0.8];
        let folders = ["a"; 4];
        assert_eq!(epoch_indices(&vcdr, &folders, &test_config()), vec![0, 1, 2, 3]);
        let c = test_config().with_large_cup_repeat(3);
        assert_eq!(epoch_indices(&vcdr, &folders, &c), vec![0, 1, 1, 1, 2, 3, 3, 3]);
        let c = c.with_large_cup_vcdr(0.5);
        assert_eq!(epoch_indices(&vcdr, &folders, &c).len(), 10);
        let mut json = serde_json::to_value(test_config()).unwrap();
        let fields = json.as_object_mut().unwrap();
        fields.remove("large_cup_repeat");
        fields.remove("large_cup_vcdr");
        fields.remove("folder_repeat");
        let old = TrainingConfig::from_json(&json.to_string()).unwrap();
        assert_eq!((old.large_cup_repeat, old.large_cup_vcdr), (1, 0.6));
        assert!(old.folder_repeat.is_empty(), "runs from before --folder-repeat draw folders once");
    }

    #[test]
    fn a_repeated_folder_multiplies_its_eyes_draws_and_leaves_the_others() {
        let vcdr = [0.3, 0.7, 0.3, 0.7];
        let folders = ["canon", "canon", "rimone", "rimone"];
        let repeat = |times| vec![FolderRepeat { folder: "rimone".into(), times }];
        let c = test_config().with_folder_repeat(repeat(2));
        assert_eq!(epoch_indices(&vcdr, &folders, &c), vec![0, 1, 2, 2, 3, 3]);
        let c = c.with_large_cup_repeat(3);
        let draw = epoch_indices(&vcdr, &folders, &c);
        assert_eq!(draw, vec![0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3]);
        let c = test_config().with_folder_repeat(repeat(0));
        assert_eq!(
            epoch_indices(&vcdr, &folders, &c),
            vec![0, 1, 2, 3],
            "0 draws once, never drops"
        );
    }

    #[test]
    fn a_folders_own_large_cup_repeat_replaces_the_common_one_for_its_eyes_only() {
        let vcdr = [0.3, 0.7, 0.3, 0.7];
        let folders = ["canon", "canon", "rimone", "rimone"];
        let rimone = |times| vec![FolderRepeat { folder: "rimone".into(), times }];
        let c = test_config().with_large_cup_repeat(3).with_folder_large_cup_repeat(rimone(1));
        assert_eq!(epoch_indices(&vcdr, &folders, &c), vec![0, 1, 1, 1, 2, 3]);
        let c = c.with_folder_large_cup_repeat(rimone(2)).with_folder_repeat(rimone(2));
        let draw = epoch_indices(&vcdr, &folders, &c);
        assert_eq!(draw, vec![0, 1, 1, 1, 2, 2, 3, 3, 3, 3], "times the folder's repeat");
        let mut json = serde_json::to_value(test_config()).unwrap();
        json.as_object_mut().unwrap().remove("folder_large_cup_repeat");
        let old = TrainingConfig::from_json(&json.to_string()).unwrap();
        assert!(old.folder_large_cup_repeat.is_empty(), "older runs: one large-cup repeat");
    }

    #[test]
    fn an_epoch_at_rate_0_moves_batchnorm_statistics_and_no_weight() {
        use crate::backend::{Hardware, collect};
        use crate::progress::Silent;
        use crate::run_dir::load_model;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("synth");
        let args =
            crate::cli::SynthArgs { out: data.clone(), count: 6, size: 64, disc: None, seed: 7 };
        crate::app::synth(&args, &Silent).unwrap();
        let mut config = test_config().with_epochs(1).with_warmup_epochs(0).with_lr(0.01);
        config.model = config.model.with_base_channels(4).with_depth(2);
        let mut samples =
            crate::app::load_folders(&[data], "train", &config.preprocess, 1, &Silent).unwrap();
        let val = samples.split_off(4);
        let compute = Compute {
            device: Device::flex(),
            hardware: Hardware { backend: "flex".into(), device: "test".into(), threads: 1 },
        };
        let (out, stop) = (dir.path().join("run"), AtomicBool::new(false));
        let watch = || Watch { interrupt: &stop, progress: &Silent };
        let floats = || {
            let m = load_model(&config.model, &out.join("model-last.bpk"), &compute.device);
            collect(&m.unwrap(), None).unwrap()
        };
        train(&config, &samples, &val, &out, &compute, false, watch()).unwrap();
        let before = floats();
        // What `train --resume --epochs 2 --restart-lr 0` runs after `average`.
        let bn = test_config().with_epochs(2).with_lr(0.0).with_cycle_start(1);
        let bn = TrainingConfig { model: config.model.clone(), ..bn };
        let done = train(&bn, &samples, &val, &out, &compute, true, watch()).unwrap();
        assert_eq!(done.state.epoch, 2);
        let after = floats();
        assert_eq!(before.len(), after.len());
        let mut moved = 0;
        for ((name, a), (_, b)) in before.iter().zip(&after) {
            if name.contains("running") {
                moved += usize::from(a != b);
            } else {
                assert_eq!(a, b, "{name} changed at learning rate 0");
            }
        }
        assert!(moved > 0, "no BatchNorm statistic moved: {:?}", before.iter().map(|n| &n.0));
    }
}
