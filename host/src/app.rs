//! The commands behind the `papilla` binary, as library functions (the binary only parses
//! arguments, prints and maps errors to exit codes).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use burn::tensor::Device;
use thiserror::Error;

use crate::augment::{AugmentConfig, CameraAugment};
use crate::backend::{BackendError, StepCheck, compare_training_step, device_for};
use crate::cli::{
    ActTypeArg, BackendArg, CalibMethodArg, CheckBackendArgs, EncoderArg, EvaluateArgs, ExportArgs,
    Int8FormArg, LossArg, OptimizerArg, PredictArgs, SynthArgs, TrainArgs, UpsamplingArg,
    WeightScalesArg,
};
use crate::data::{self, DataError, LoadReport, Sample};
use crate::export::{CalibMethod, ExportError, ExportOptions, ExportReport};
use crate::inference::{self, InferError};
use crate::loss::LossKind;
use crate::model::{Encoder, UNetConfig, Upsampling};
use crate::onnx::{ActType, Form, WeightScales};
use crate::progress::{Bar, Progress};
use crate::report::{self, ReportError};
use crate::run_dir::{HELD_OUT_FILE, RunDir, RunDirError};
use crate::score::ScoreReport;
use crate::train_config::{OptimizerKind, TrainingConfig};
use crate::training::{self, TrainError, TrainOutcome};
use papilla_shared::bundle::Verification;
use papilla_shared::postprocess::InferenceOptions;
use papilla_shared::preprocess::{PreprocessConfig, RoiPolicy};
use papilla_shared::runtime::{Engine, Framing};

#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Run(#[from] RunDirError),
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot write the zip file: {message}", path.display())]
    Zip { path: PathBuf, message: String },
    #[error(
        "{}: this run is a coarse-to-fine second stage and needs its locator: export a bundle with both (papilla export --locator) and predict with --model FILE.papilla", run.display()
    )]
    SecondStage { run: PathBuf },
    #[error(
        "{}: --roi-context with --resume changes a second stage's crops, but this run trains on whole photographs",
        run.display()
    )]
    NotASecondStage { run: PathBuf },
    #[error("{flag} {folder}: no --data folder has that name (they are: {})", known.join(", "))]
    UnknownRepeatFolder { flag: &'static str, folder: String, known: Vec<String> },
    #[error(transparent)]
    Open(#[from] papilla_shared::runtime::OpenError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("a worker thread panicked")]
    WorkerPanicked,
    #[error("evaluate needs --data: a bundle has no validation data, and this run held none out")]
    NoEvalData,
    #[error("--disc-centred runs an exported bundle (the runtime frames the crop); {} is a run directory: export it first", .0.display())]
    DiscCentredNeedsBundle(PathBuf),
    #[error("--held-out-of picks the eyes a bundle is scored on; {} is a run directory, scored without --data on the eyes it held out", .0.display())]
    HeldOutNeedsBundle(PathBuf),
    #[error("none of the eyes in {data} is among those {} held out for validation", run.display())]
    NoHeldOutEyes { run: PathBuf, data: String },
    #[error("--shape-fit and --tta choose how a run directory is scored; {} is a bundle, which carries its own", .0.display())]
    BundleCarriesInference(PathBuf),
}

/// Loads several data folders, reporting each folder's cleaning report to `progress`.
pub fn load_folders(
    dirs: &[PathBuf],
    rimone_split: &str,
    config: &PreprocessConfig,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Vec<Sample>, AppError> {
    let loaded = load_folders_with(dirs, rimone_split, config, threads, &|_, _| (), progress)?;
    Ok(loaded.into_iter().map(|(s, ())| s).collect())
}

/// [`load_folders`], handing each photograph to `with_photo` while it is decoded.
fn load_folders_with<T: Send>(
    dirs: &[PathBuf],
    rimone_split: &str,
    config: &PreprocessConfig,
    threads: usize,
    with_photo: &(dyn Fn(&data::Pair, &image::RgbImage) -> T + Sync),
    progress: &dyn Progress,
) -> Result<Vec<(Sample, T)>, AppError> {
    let mut all = Vec::new();
    for dir in dirs {
        let (loaded, _): (Vec<(Sample, T)>, LoadReport) =
            data::load_dir_with(dir, rimone_split, config, threads, with_photo, progress)?;
        all.extend(loaded);
    }
    Ok(all)
}

fn encoder(arg: EncoderArg) -> Encoder {
    match arg {
        EncoderArg::Plain => Encoder::Plain,
        EncoderArg::EfficientnetLite0 => Encoder::EfficientNetLite0,
    }
}

/// The training config a `papilla train` command line asks for.
pub fn training_config(args: &TrainArgs) -> TrainingConfig {
    let model = UNetConfig::new()
        .with_depth(args.depth)
        .with_base_channels(args.base_channels)
        .with_batch_norm(!args.no_batch_norm)
        .with_upsampling(match args.upsampling {
            UpsamplingArg::Transpose => Upsampling::ConvTranspose,
            UpsamplingArg::Nearest => Upsampling::Nearest,
        })
        .with_encoder(encoder(args.encoder))
        .with_anti_alias(args.anti_alias);
    let augment = if args.no_augment {
        AugmentConfig::none()
    } else {
        AugmentConfig {
            rotate_deg: args.rotate,
            scale: args.scale,
            translate: args.translate,
            vflip: args.vflip.unwrap_or(AugmentConfig::default().vflip),
            camera: CameraAugment {
                style_mix: args.style_mix,
                ..if args.camera_augment { CameraAugment::standard() } else { Default::default() }
            },
            ..AugmentConfig::default()
        }
    };
    let roi =
        args.roi_context.map(|context| RoiPolicy { context, min_side_fraction: args.roi_min_side });
    let names = |v: &[PathBuf]| v.iter().map(|p| p.display().to_string()).collect();
    TrainingConfig::new(
        model,
        PreprocessConfig { roi, ..PreprocessConfig::square(args.size) },
        augment,
        names(&args.data),
        names(&args.val),
    )
    .with_epochs(args.epochs.unwrap_or(150))
    .with_batch_size(args.batch)
    .with_lr(args.lr)
    .with_warmup_epochs(args.warmup_epochs)
    .with_optimizer(match args.optimizer {
        OptimizerArg::Momentum => OptimizerKind::Momentum,
        OptimizerArg::Adamw => OptimizerKind::AdamW,
    })
    .with_weight_decay(args.weight_decay)
    .with_pretrained(args.pretrained.as_ref().map(|p| p.display().to_string()))
    .with_ce_weight(args.ce_weight)
    .with_loss(loss_kind(args.loss.unwrap_or(LossArg::Dice)))
    .with_val_fraction(args.val_fraction)
    .with_seed(args.seed)
    .with_init_seed(args.init_seed)
    .with_checkpoint_every(args.checkpoint_every)
    .with_large_cup_repeat(args.large_cup_repeat.unwrap_or(1))
    .with_large_cup_vcdr(args.large_cup_vcdr.unwrap_or(0.6))
    .with_folder_repeat(args.folder_repeat.clone())
    .with_folder_large_cup_repeat(args.folder_large_cup_repeat.clone())
    .with_vcdr_weight(args.vcdr_weight.unwrap_or(0.0))
}

fn loss_kind(arg: LossArg) -> LossKind {
    match arg {
        LossArg::Dice => LossKind::ClassDice,
        LossArg::Nested => LossKind::NestedDice,
    }
}

/// `papilla train`.
pub fn train(
    args: &TrainArgs,
    interrupt: Arc<AtomicBool>,
    progress: &dyn Progress,
) -> Result<TrainOutcome, AppError> {
    let run = RunDir::new(&args.out);
    let resuming = args.resume && run.has_config();
    let backend = match args.backend {
        Some(b) => b,
        None if resuming => run.last_backend()?.unwrap_or(BackendArg::Cpu),
        None => BackendArg::Cpu,
    };
    let compute = device_for(backend, args.threads)?;
    let config = if resuming {
        let mut c = run.config()?;
        if let Some(e) = args.epochs {
            c.epochs = e;
        }
        if let Some(l) = args.loss {
            c.loss = loss_kind(l);
        }
        if let Some(r) = args.large_cup_repeat {
            c.large_cup_repeat = r;
        }
        if let Some(v) = args.large_cup_vcdr {
            c.large_cup_vcdr = v;
        }
        if !args.folder_repeat.is_empty() {
            c.folder_repeat = args.folder_repeat.clone();
        }
        if !args.folder_large_cup_repeat.is_empty() {
            c.folder_large_cup_repeat = args.folder_large_cup_repeat.clone();
        }
        if let Some(w) = args.vcdr_weight {
            c.vcdr_weight = w;
        }
        if let Some(context) = args.roi_context {
            let roi = c
                .preprocess
                .roi
                .as_mut()
                .ok_or_else(|| AppError::NotASecondStage { run: args.out.clone() })?;
            roi.context = context;
        }
        if let Some(lr) = args.restart_lr {
            c.lr = lr;
            c.cycle_start = run.completed_epochs()?;
        }
        if let Some(p) = args.vflip {
            c.augment.vflip = p;
        }
        if let Some(side) = args.resize {
            c.preprocess.width = side;
            c.preprocess.height = side;
        }
        if args.anti_alias {
            c.model.anti_alias = true;
        }
        c
    } else {
        // Nothing to resume: a restart at epoch 0 is the first cycle, peaking at its rate.
        let c = training_config(args);
        match args.restart_lr {
            Some(lr) => c.with_lr(lr),
            None => c,
        }
    };
    let data: Vec<PathBuf> = config.data.iter().map(PathBuf::from).collect();
    let val: Vec<PathBuf> = config.val.iter().map(PathBuf::from).collect();
    let names: Vec<String> = data.iter().map(|d| data::folder_name(d)).collect();
    let repeats = [
        ("--folder-repeat", &config.folder_repeat),
        ("--folder-large-cup-repeat", &config.folder_large_cup_repeat),
    ];
    for (flag, list) in repeats {
        if let Some(r) = list.iter().find(|r| !names.contains(&r.folder)) {
            let folder = r.folder.clone();
            return Err(AppError::UnknownRepeatFolder { flag, folder, known: names });
        }
    }
    let samples = load_folders(&data, "train", &config.preprocess, args.threads, progress)?;
    let (train_set, val_set) = if val.is_empty() {
        data::split_validation(samples, config.val_fraction, config.seed)
    } else {
        (samples, load_folders(&val, "test", &config.preprocess, args.threads, progress)?)
    };
    record_held_out(&run, resuming, &val_set, progress)?;
    progress.note(&format!(
        "training on {} images, validating on {}, {}x{} px, {:.2} GFLOP per image forward",
        train_set.len(),
        val_set.len(),
        config.preprocess.width,
        config.preprocess.height,
        config.model.flops(config.preprocess.width as usize) / 1e9
    ));
    let watch = training::Watch { interrupt: &interrupt, progress };
    let (out, resume) = (&args.out, args.resume);
    Ok(training::train(&config, &train_set, &val_set, out, &compute, resume, watch)?)
}

/// Writes the names of the eyes `run` validates on. A resumed run whose data folders changed
/// draws another split: it keeps only the eyes held out both times (the others were trained on)
/// and says so.
fn record_held_out(
    run: &RunDir,
    resuming: bool,
    val_set: &[Sample],
    progress: &dyn Progress,
) -> Result<(), AppError> {
    let mut names: Vec<String> = val_set.iter().map(|s| s.name.clone()).collect();
    names.sort();
    if resuming && let Some(before) = run.held_out()? {
        let now: std::collections::HashSet<&String> = names.iter().collect();
        let kept: Vec<String> = before.iter().filter(|n| now.contains(n)).cloned().collect();
        if kept.len() < before.len() || kept.len() < names.len() {
            progress.note(&format!(
                "warning: the data folders changed since this run started: {} of the {} eyes it \
                 validates on now were held out before; {} keeps only those",
                kept.len(),
                names.len(),
                run.file(HELD_OUT_FILE).display()
            ));
        }
        names = kept;
    }
    run.create()?;
    Ok(run.save_held_out(&names)?)
}

/// A `--model` that is a file is an exported bundle; a folder is a training run.
pub fn is_bundle(model: &Path) -> bool {
    model.is_file()
}

/// Loads a bundle for host use: hashes checked, signatures accepted when valid.
pub fn load_engine(path: &Path, threads: usize) -> Result<Engine, AppError> {
    Ok(Engine::open(path, &Verification::integrity_only(), threads)?)
}

/// Segments `photos` with `engine` on `threads` workers (tract single-threaded in each).
fn segment_all<T: Sync, F>(
    engine: &Engine,
    items: &[T],
    framing: Framing,
    threads: usize,
    photo: F,
) -> Result<Vec<papilla_shared::LabelMap>, AppError>
where
    F: Fn(&T) -> Result<image::RgbImage, AppError> + Sync,
{
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<Result<Vec<_>, AppError>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let photo = &photo;
                s.spawn(move || {
                    part.iter()
                        .map(|it| {
                            let img = photo(it)?;
                            Ok(engine.segment_framed(&img, framing).map_err(InferError::from)?.mask)
                        })
                        .collect::<Result<Vec<_>, AppError>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(AppError::WorkerPanicked)))
            .collect()
    });
    let mut masks = Vec::with_capacity(items.len());
    for p in parts {
        masks.extend(p?);
    }
    Ok(masks)
}

/// A sample's photograph at its ground truth's size (the loader resized it the same way).
fn photo_at_truth_size(s: &Sample) -> Result<image::RgbImage, AppError> {
    // Unrotated, as the loader read it: the mask was drawn on the stored pixels.
    let (photo, _) = data::read_image(&s.image_path)
        .map_err(|reason| InferError::Image { path: s.image_path.clone(), reason })?;
    if photo.dimensions() == s.truth.dimensions() {
        return Ok(photo);
    }
    let (w, h) = s.truth.dimensions();
    Ok(image::imageops::resize(&photo, w, h, image::imageops::FilterType::Triangle))
}

/// `papilla evaluate --model FILE.papilla`: the bundle's road (locator, crop, segmenter) on
/// each photograph at its full size.
fn evaluate_bundle(
    args: &EvaluateArgs,
    dirs: &[PathBuf],
    progress: &dyn Progress,
) -> Result<(ScoreReport, Vec<Sample>, Vec<papilla_shared::LabelMap>), AppError> {
    let engine = load_engine(&args.model, 1)?;
    // The run's held-out eyes first: a run that cannot be read fails before the segmentation.
    let keep = match &args.held_out_of {
        Some(run) => Some((run, held_out_photos(run, dirs, args, progress)?)),
        None => None,
    };
    let framing = Framing::from_disc_centred(args.disc_centred);
    // Segmented on the loading threads, as each photograph is decoded (with --held-out-of only
    // the held-out ones); tiny network inputs, as only names, paths and ground truth are used
    // from the samples.
    let segment = |pair: &data::Pair, photo: &image::RgbImage| {
        let wanted = keep.as_ref().is_none_or(|(_, k)| k.contains(&canonical(&pair.image)));
        wanted.then(|| engine.segment_framed(photo, framing).map(|s| s.mask))
    };
    let split = args.rimone_split.name();
    let tiny = PreprocessConfig::square(16);
    let loaded = load_folders_with(dirs, split, &tiny, args.threads, &segment, progress)?;
    let (mut samples, mut masks) = (Vec::new(), Vec::new());
    for (sample, mask) in loaded {
        if let Some(mask) = mask {
            masks.push(mask.map_err(InferError::from)?);
            samples.push(sample);
        }
    }
    if let Some((run, _)) = keep
        && samples.is_empty()
    {
        let data = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(AppError::NoHeldOutEyes { run: run.clone(), data });
    }
    let report = inference::score_masks(&samples, &masks, args.referral_threshold);
    Ok((report, samples, masks))
}

/// The photographs a training run held out for validation (their paths, made canonical): the
/// names it recorded, looked up in `dirs`, or (runs from before they were recorded) its seeded
/// split drawn again.
fn held_out_photos(
    run: &Path,
    dirs: &[PathBuf],
    args: &EvaluateArgs,
    progress: &dyn Progress,
) -> Result<std::collections::HashSet<PathBuf>, AppError> {
    let run = RunDir::new(run);
    if let Some(names) = run.held_out()? {
        let names: std::collections::HashSet<String> = names.into_iter().collect();
        let mut keep = std::collections::HashSet::new();
        for dir in dirs {
            let held = data::named_pairs(dir, args.rimone_split.name(), &names)?;
            keep.extend(held.iter().map(|p| canonical(&p.image)));
        }
        return Ok(keep);
    }
    let config = run.config()?;
    let tiny = PreprocessConfig::square(16);
    let held_out = held_out_samples(&run, &config, &tiny, args.threads, progress)?;
    Ok(held_out.iter().map(|s| canonical(&s.image_path)).collect())
}

/// What a training run validated on, loaded with `pre`: the eyes it recorded, or (runs from
/// before they were recorded) its `--val` folders or the same seeded split of its training
/// data drawn again.
fn held_out_samples(
    run: &RunDir,
    config: &TrainingConfig,
    pre: &PreprocessConfig,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Vec<Sample>, AppError> {
    let (folders, split) =
        if config.val.is_empty() { (&config.data, "train") } else { (&config.val, "test") };
    let folders: Vec<PathBuf> = folders.iter().map(PathBuf::from).collect();
    if let Some(names) = run.held_out()? {
        // Only the recorded eyes are decoded.
        let names: std::collections::HashSet<String> = names.into_iter().collect();
        let mut held = Vec::new();
        for dir in &folders {
            held.extend(data::load_named(dir, split, &names, pre, threads, progress)?);
        }
        return Ok(held);
    }
    let all = load_folders(&folders, split, pre, threads, progress)?;
    Ok(if config.val.is_empty() {
        data::split_validation(all, config.val_fraction, config.seed).1
    } else {
        all
    })
}

/// A path made absolute with its links resolved, so that two spellings of a file compare
/// equal; as given when it cannot be (the comparison then needs the same spelling).
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// What `papilla evaluate` produced.
#[derive(Debug)]
pub struct Evaluation {
    pub report: ScoreReport,
    /// With `--report`: the page and the worst cases' overlays.
    pub page: Option<PathBuf>,
    pub overlays: Vec<PathBuf>,
}

/// `papilla evaluate`: the report and, with `--report`, the page and overlays written.
pub fn evaluate(args: &EvaluateArgs, progress: &dyn Progress) -> Result<Evaluation, AppError> {
    // A bad --compare file fails before minutes of segmentation, not after.
    let compare = args.compare.as_deref().map(report::read_compare).transpose()?;
    let (report, samples, masks) = if is_bundle(&args.model) {
        if args.data.is_empty() {
            return Err(AppError::NoEvalData);
        }
        if args.shape_fit.is_some() || args.tta.is_some() {
            return Err(AppError::BundleCarriesInference(args.model.clone()));
        }
        evaluate_bundle(args, &args.data, progress)?
    } else {
        evaluate_run(args, progress)?
    };
    let Some(dir) = &args.report else {
        return Ok(Evaluation { report, page: None, overlays: Vec::new() });
    };
    let (cases, overlays) = write_worst(&report, &samples, &masks, dir, args.worst, progress)?;
    let data = if args.data.is_empty() {
        vec!["the run's validation images".to_owned()]
    } else {
        args.data.iter().map(|d| d.display().to_string()).collect()
    };
    let page = report::Page {
        report: &report,
        model: args.model.display().to_string(),
        data,
        cases,
        compare,
    };
    let page = report::write(dir, &page)?;
    Ok(Evaluation { report, page: Some(page), overlays })
}

/// `papilla evaluate --model RUN_DIR`: the run's own road on its validation or `--data`.
fn evaluate_run(
    args: &EvaluateArgs,
    progress: &dyn Progress,
) -> Result<(ScoreReport, Vec<Sample>, Vec<papilla_shared::LabelMap>), AppError> {
    if args.disc_centred.is_some() {
        return Err(AppError::DiscCentredNeedsBundle(args.model.clone()));
    }
    if args.held_out_of.is_some() {
        return Err(AppError::HeldOutNeedsBundle(args.model.clone()));
    }
    let device = device_for(args.backend, args.threads)?.device;
    let mut run = inference::load_run(&args.model, &device)?;
    run.options = InferenceOptions {
        shape_fit: args.shape_fit.map(Into::into).unwrap_or_default(),
        disc_centred_pad: None,
        tta: args.tta.map(Into::into).unwrap_or_default(),
    };
    if run.config.preprocess.roi.is_some() {
        progress.note(
            "note: this run is a second stage; it is scored on crops around the TRUE disc (an \
             upper bound). Score a bundle with its locator for real figures.",
        );
    }
    let (pre, threads) = (&run.config.preprocess, args.threads);
    let samples = if !args.data.is_empty() {
        load_folders(&args.data, args.rimone_split.name(), pre, threads, progress)?
    } else {
        let dir = RunDir::new(&args.model);
        let held_out = held_out_samples(&dir, &run.config, pre, threads, progress)?;
        if held_out.is_empty() {
            return Err(AppError::NoEvalData);
        }
        held_out
    };
    progress.begin(Bar::Main, "segmenting", 0);
    let (report, masks) = inference::evaluate(&run, &samples, args.referral_threshold)?;
    progress.end(Bar::Main, None);
    Ok((report, samples, masks))
}

/// The square around the disc (truth and prediction) with room around it, inside the image;
/// the whole image when neither has a disc.
fn disc_square(a: &papilla_shared::LabelMap, b: &papilla_shared::LabelMap) -> (u32, u32, u32, u32) {
    let (w, h) = a.dimensions();
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for m in [a, b] {
        for y in 0..h {
            for x in 0..w {
                if m.get(x, y).is_disc() {
                    (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                }
            }
        }
    }
    if x0 > x1 {
        return (0, 0, w, h);
    }
    let side = (((x1 - x0).max(y1 - y0) + 1) as f64 * 1.6).ceil() as u32;
    let side = side.max(32).min(w.min(h));
    let centre =
        |lo: u32, hi: u32, size: u32| ((lo + hi) / 2).saturating_sub(side / 2).min(size - side);
    (centre(x0, x1, w), centre(y0, y1, h), side, side)
}

/// The `worst` cases (lowest cup Dice) as overlays cropped around the disc, in `dir`.
fn write_worst(
    report: &ScoreReport,
    samples: &[Sample],
    masks: &[papilla_shared::LabelMap],
    dir: &Path,
    worst: usize,
    progress: &dyn Progress,
) -> Result<(Vec<report::Case>, Vec<PathBuf>), AppError> {
    std::fs::create_dir_all(dir).map_err(|source| AppError::Io {
        path: dir.to_owned(),
        what: "cannot create",
        source,
    })?;
    let mut order: Vec<usize> = (0..report.images.len()).collect();
    order.sort_by(|&a, &b| {
        report.images[a].scores.cup_dice.total_cmp(&report.images[b].scores.cup_dice)
    });
    let n = worst.min(order.len());
    progress.begin(Bar::Main, "worst cases", n as u64);
    let (mut cases, mut written) = (Vec::new(), Vec::new());
    for &i in order.iter().take(n) {
        let s = &samples[i];
        let photo = photo_at_truth_size(s)?;
        let img = papilla_shared::overlay::overlay(&photo, &masks[i], Some(&s.truth), 0);
        let (x, y, w, h) = disc_square(&masks[i], &s.truth);
        let img = image::imageops::crop_imm(&img, x, y, w, h).to_image();
        let sc = &report.images[i].scores;
        let name = format!(
            "{:02}_{}_cup{:.3}_disc{:.3}.png",
            written.len() + 1,
            s.name.replace('/', "_"),
            sc.cup_dice,
            sc.disc_dice
        );
        let path = dir.join(&name);
        img.save(&path).map_err(|source| InferError::Write { path: path.clone(), source })?;
        cases.push(report::Case { file: name, image: i });
        written.push(path);
        progress.advance(Bar::Main, 1);
    }
    progress.end(Bar::Main, None);
    Ok((cases, written))
}

/// `papilla predict`: the BMPs written (and the zip, when asked).
pub fn predict(args: &PredictArgs, progress: &dyn Progress) -> Result<Vec<PathBuf>, AppError> {
    // Either road yields one mask per photograph, in order; writing is shared.
    let photos;
    let run;
    let masks: Box<dyn Iterator<Item = Result<papilla_shared::LabelMap, AppError>>>;
    if is_bundle(&args.model) {
        let engine = load_engine(&args.model, 1)?;
        photos = inference::list_photos(&args.input)?;
        let framing = Framing::from_disc_centred(args.disc_centred);
        progress.begin(Bar::Main, "segmenting", photos.len() as u64);
        let all = segment_all(&engine, &photos, framing, args.threads, |p| {
            let photo = inference::read_photo(p)?;
            progress.advance(Bar::Main, 1);
            Ok(photo)
        })?;
        progress.end(Bar::Main, None);
        masks = Box::new(all.into_iter().map(Ok));
    } else {
        if args.disc_centred.is_some() {
            return Err(AppError::DiscCentredNeedsBundle(args.model.clone()));
        }
        let device = device_for(args.backend, args.threads)?.device;
        run = inference::load_run(&args.model, &device)?;
        if run.config.preprocess.roi.is_some() {
            return Err(AppError::SecondStage { run: args.model.clone() });
        }
        photos = inference::list_photos(&args.input)?;
        let run = &run;
        masks = Box::new(photos.iter().map(move |p| Ok(run.segment(&inference::read_photo(p)?)?)));
    }
    std::fs::create_dir_all(&args.out).map_err(|source| AppError::Io {
        path: args.out.clone(),
        what: "cannot create",
        source,
    })?;
    let mut written = Vec::with_capacity(photos.len());
    // The run road segments as it writes; the bundle's has segmented already.
    progress.begin(Bar::Main, "writing masks", photos.len() as u64);
    for (photo, mask) in photos.iter().zip(masks) {
        let path = args.out.join(format!("{}.bmp", data::stem(photo)));
        inference::write_mask_bmp(&mask?, &path)?;
        progress.advance(Bar::Main, 1);
        written.push(path);
    }
    progress.end(Bar::Main, None);
    if let Some(zip_path) = &args.zip {
        write_zip(zip_path, &written)?;
    }
    Ok(written)
}

fn write_zip(path: &Path, files: &[PathBuf]) -> Result<(), AppError> {
    let zerr = |m: String| AppError::Zip { path: path.to_owned(), message: m };
    let tmp = papilla_shared::files::temp_path(path);
    let file = std::fs::File::create(&tmp).map_err(|source| AppError::Io {
        path: tmp.clone(),
        what: "cannot create",
        source,
    })?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for f in files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = std::fs::read(f).map_err(|source| AppError::Io {
            path: f.clone(),
            what: "cannot read",
            source,
        })?;
        zip.start_file(name, options).map_err(|e| zerr(e.to_string()))?;
        zip.write_all(&bytes).map_err(|e| zerr(e.to_string()))?;
    }
    zip.finish().map_err(|e| zerr(e.to_string()))?;
    papilla_shared::files::commit(&tmp, path, papilla_shared::files::Durability::Atomic)
        .map_err(|source| AppError::Io { path: path.to_owned(), what: "cannot replace", source })
}

/// `papilla synth`: the number of photographs written.
pub fn synth(args: &SynthArgs, progress: &dyn Progress) -> Result<u64, AppError> {
    use papilla_shared::synth::{SynthParams, generate};
    let images = args.out.join(data::GAMMA_IMAGES);
    let masks = args.out.join(data::GAMMA_MASKS[0]);
    for dir in [&images, &masks] {
        std::fs::create_dir_all(dir).map_err(|source| AppError::Io {
            path: dir.clone(),
            what: "cannot create",
            source,
        })?;
    }
    progress.begin(Bar::Main, "synthesising", args.count);
    for i in 0..args.count {
        progress.advance(Bar::Main, 1);
        let mut p = SynthParams::random(args.size, args.size, args.seed + i);
        if let Some(d) = args.disc {
            p.disc_diameter = d * args.size as f32;
        }
        let s = generate(&p);
        let id = format!("S{:04}", args.seed + i);
        let photo = images.join(format!("{id}.jpg"));
        s.image.save(&photo).map_err(|source| InferError::Write { path: photo.clone(), source })?;
        inference::write_mask_bmp(&s.labels, &masks.join(format!("{id}.bmp")))?;
    }
    progress.end(Bar::Main, None);
    Ok(args.count)
}

/// `papilla export`.
pub fn export(args: &ExportArgs, progress: &dyn Progress) -> Result<ExportReport, AppError> {
    let options = ExportOptions {
        checkpoint: args.checkpoint.clone(),
        locator: args.locator.clone(),
        out: args.out.clone(),
        onnx_out: args.onnx_out.clone(),
        int8: args.int8.then_some(match args.int8_form {
            Int8FormArg::Qlinear => Form::QLinear,
            Int8FormArg::Qdq => Form::Qdq,
        }),
        weights: match args.weight_scales {
            WeightScalesArg::PerTensor => WeightScales::PerTensor,
            WeightScalesArg::PerChannel => WeightScales::PerChannel,
        },
        activations: match args.activations {
            ActTypeArg::U8 => ActType::U8,
            ActTypeArg::I8 => ActType::I8,
        },
        method: match args.calib_method {
            CalibMethodArg::Minmax => CalibMethod::MinMax,
            CalibMethodArg::Percentile => CalibMethod::Percentile,
        },
        calibration: args.calibration.clone(),
        calib_images: args.calib_images,
        sign: args.sign.clone(),
        name: args.name.clone(),
        version: args.model_version.clone(),
        roi_context: args.roi_context,
        inference: InferenceOptions {
            shape_fit: args.shape_fit.into(),
            disc_centred_pad: args.disc_centred_pad,
            tta: args.tta.into(),
        },
        selftest_image: args.selftest_image.clone(),
        threads: args.threads,
    };
    Ok(crate::export::export(&options, progress)?)
}

/// `papilla check-backend`: one training step on the chosen backend against flex.
pub fn check_backend(args: &CheckBackendArgs) -> Result<(StepCheck, bool), AppError> {
    let candidate = device_for(args.backend, args.threads)?.device;
    let model = UNetConfig::new()
        .with_depth(args.depth)
        .with_base_channels(args.base_channels)
        .with_encoder(encoder(args.encoder))
        .with_anti_alias(args.anti_alias);
    let multiple = model.size_multiple();
    if !args.size.is_multiple_of(multiple) {
        return Err(TrainError::BadSize { size: args.size, multiple }.into());
    }
    let check = compare_training_step(&Device::flex(), &candidate, &model, args.size, args.batch)?;
    let agrees = check.agrees(args.tolerance);
    Ok((check, agrees))
}
