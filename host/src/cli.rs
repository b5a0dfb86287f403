//! Command-line interface of `papilla`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use papilla_shared::postprocess::{ShapeFit, TestTimeAugmentation};

use crate::train_config::FolderRepeat;

pub use crate::backend::BackendArg;

/// Optic disc and cup segmentation of colour fundus photographs: the training-host tool.
#[derive(Debug, Parser)]
#[command(name = "papilla", version, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score a GAMMA/REFUGE submission folder against its ground truth (REFUGE metrics).
    ///
    /// Each ground-truth mask (.bmp or .png, 0 cup / 128 rim / 255 background) needs a
    /// prediction of the same name in --pred. Example:
    /// `papilla score --pred results/ --truth refuge512/test/Disc_Cup_Masks --json`
    Score(ScoreArgs),
    /// Train a UNet on GAMMA/REFUGE or RIM-ONE DL folders (burn; CPU by default).
    ///
    /// Example: `papilla train --data ../data/refuge512/train --out runs/r1 --size 256 --epochs 20`
    Train(Box<TrainArgs>),
    /// Score a trained run on a data folder (Dice disc, Dice cup, vCDR MAE).
    ///
    /// Example: `papilla evaluate --model runs/r1 --data ../data/refuge512/test`
    Evaluate(EvaluateArgs),
    /// Segment every photograph of a folder: a GAMMA submission of 0/128/255 BMPs.
    ///
    /// Example: `papilla predict --model runs/r1 --input photos/ --out results/ --zip results.zip`
    Predict(PredictArgs),
    /// Write a GAMMA-layout folder of synthetic fundus photographs with exact masks, for
    /// trying the tools and convergence checks (never for training a real model).
    ///
    /// Example: `papilla synth --out /tmp/synth --count 40 --size 256`
    Synth(SynthArgs),
    /// Export trained runs as a model bundle (ONNX graphs, preprocessing, scores, self-test),
    /// f32 or int8, optionally signed; what `papilla-device` runs.
    ///
    /// Example: `papilla export --checkpoint runs/seg --locator runs/loc --out m.papilla --int8
    /// --calibration ../data/refuge512/train --sign keys/papilla`
    Export(Box<ExportArgs>),
    /// Average the weights of a run's last epochs into a new run (a "model soup" along one
    /// trajectory); then `papilla train --out OUT --resume --epochs E+1 --restart-lr 0`
    /// re-estimates its BatchNorm statistics. Needs `--checkpoint-every 1` checkpoints.
    ///
    /// Example: `papilla average --run runs/lite0 --last 4 --out runs/lite0-avg`
    Average(AverageArgs),
    /// Make an ed25519 key pair for `papilla export --sign` (KEY secret, KEY.pub public).
    Keygen(KeygenArgs),
    /// Check one training step on a backend against the same step on flex (loss, every
    /// weight's gradient, the stepped weights and logits); exits 1 if they differ. Run it at the
    /// size you train at before trusting a new backend or GPU.
    ///
    /// Example: `papilla check-backend --backend wgpu --size 256 --base-channels 16`
    CheckBackend(CheckBackendArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckBackendArgs {
    /// The backend to check against flex.
    #[arg(long, value_enum)]
    pub backend: BackendArg,
    /// Input side in pixels (a multiple of 2^depth; of 32 with the EfficientNet-Lite0 encoder).
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
    #[arg(long, default_value_t = 16)]
    pub base_channels: usize,
    /// The network's encoder, as `train --encoder`.
    #[arg(long, value_enum, default_value_t = EncoderArg::Plain)]
    pub encoder: EncoderArg,
    /// As `train --anti-alias`.
    #[arg(long)]
    pub anti_alias: bool,
    /// Largest relative difference accepted (loss, each gradient's L2 norm, weights, logits).
    /// float32 rounding gives about 1e-3 on deep gradients; a wrong backend, tens of percent.
    #[arg(long, default_value_t = 1e-2)]
    pub tolerance: f32,
    /// libtorch's compute threads with --backend tch (default: all cores).
    #[arg(long, default_value_t = crate::backend::all_cores())]
    pub threads: usize,
    /// Print the comparison as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Output folder (gets `fundus color images/` and `Disc_Cup_Masks/`).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 20)]
    pub count: u64,
    /// Side of the square photographs in pixels.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Vertical disc diameter as a fraction of the side (default: random 0.11-0.17).
    #[arg(long)]
    pub disc: Option<f32>,
    /// Seed of the first image; image i uses seed + i.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// SGD with momentum 0.9 and L2 weight decay (the seed recipe).
    Momentum,
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    /// Soft Dice of each class (cup, rim, background) over the batch (the seed recipe).
    Dice,
    /// Soft Dice of the disc and of the cup per image, as the REFUGE metrics score them.
    Nested,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncoderArg {
    /// The UNet's own (--depth, --base-channels), from scratch.
    Plain,
    /// EfficientNet-Lite0 (depthwise convolutions, ReLU6) with a UNet decoder; ImageNet
    /// weights with --pretrained. Input sides must be multiples of 32.
    EfficientnetLite0,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpsamplingArg {
    /// 2x2 transposed convolutions.
    Transpose,
    /// Nearest 2x resize then a 1x1 convolution.
    Nearest,
}

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// Folder of predicted masks (BMP, named like the ground truth).
    #[arg(long, value_name = "DIR")]
    pub pred: PathBuf,
    /// Folder of ground-truth masks.
    #[arg(long, value_name = "DIR")]
    pub truth: PathBuf,
    /// Print one JSON object (n, disc_dice, cup_dice, vcdr_mae, ..., referral, vcdr_bins,
    /// glaucoma_auc where diagnoses exist, images) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write per-image scores to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// The vCDR at and above which an eye is referred, for the referral table.
    #[arg(long, value_name = "VCDR", default_value_t = crate::score::DEFAULT_REFERRAL_VCDR)]
    pub referral_threshold: f64,
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Training data folder (GAMMA/REFUGE layout, or RIM-ONE DL's root: its `train` split).
    /// Repeat to mix data sets.
    #[arg(long, value_name = "DIR", required = true)]
    pub data: Vec<PathBuf>,
    /// Run directory: checkpoints, config.json, metrics.csv, curves.png.
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// Epochs (the seed recipe: 150). With --resume, extends the run to this many.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Network input side in pixels (a multiple of 2^depth).
    #[arg(long, default_value_t = 512)]
    pub size: u32,
    /// Batch size.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// The burn backend (default: cpu; with --resume, the backend the run last trained on, so
    /// a resumed libtorch run does not drop to flex's speed and its own numerics).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Continue the run in --out from its last checkpoint. Its config.json wins (its --data
    /// too), except for --epochs, --restart-lr and, when given, --loss, --large-cup-repeat,
    /// --large-cup-vcdr, --folder-repeat, --folder-large-cup-repeat, --vcdr-weight,
    /// --roi-context, --resize, --vflip and --anti-alias.
    #[arg(long)]
    pub resume: bool,
    /// With --resume: begin a new cosine cycle (warm-up, then cosine to zero at --epochs) at
    /// the last completed epoch, peaking at this learning rate (a warm restart). 0 moves only
    /// BatchNorm's running statistics (after `papilla average`), so it runs the forward only.
    #[arg(long, value_name = "LR", requires = "resume")]
    pub restart_lr: Option<f64>,
    /// With --resume: go on at this network input side (progressive resizing: every weight of
    /// the fully convolutional UNet carries over; the crops keep their context in disc
    /// diameters and are resized to the new side). Best with --restart-lr.
    #[arg(long, value_name = "SIZE", requires = "resume")]
    pub resize: Option<u32>,
    /// Explicit validation folder (repeatable); otherwise --val-fraction of the training data.
    #[arg(long, value_name = "DIR")]
    pub val: Vec<PathBuf>,
    /// Share of the training data held out for validation (seeded).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Linear warm-up epochs before the cosine decay.
    #[arg(long, default_value_t = 10)]
    pub warmup_epochs: usize,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Momentum)]
    pub optimizer: OptimizerArg,
    /// L2 penalty (momentum) or decoupled weight decay (AdamW).
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Weight of a cross-entropy term added to the Dice loss.
    #[arg(long, default_value_t = 0.0)]
    pub ce_weight: f64,
    /// What the Dice loss measures (default: dice, the seed's).
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    /// UNet downsamplings.
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
    /// UNet channels at full resolution.
    #[arg(long, default_value_t = 16)]
    pub base_channels: usize,
    /// Leave BatchNorm out.
    #[arg(long)]
    pub no_batch_norm: bool,
    #[arg(long, value_enum, default_value_t = UpsamplingArg::Transpose)]
    pub upsampling: UpsamplingArg,
    /// The network's encoder (--depth and --base-channels shape the plain one only).
    #[arg(long, value_enum, default_value_t = EncoderArg::Plain)]
    pub encoder: EncoderArg,
    /// Start the EfficientNet-Lite0 encoder from these ImageNet weights (a safetensors file:
    /// `python3 scripts/fetch-efficientnet-lite0.py` prints its path). Recorded in the run's
    /// config; a resumed run keeps its own weights.
    #[arg(long, value_name = "FILE.safetensors")]
    pub pretrained: Option<PathBuf>,
    /// EfficientNet-Lite0: blur before subsampling (its stride-2 layers at stride 1, then a
    /// fixed 3x3 binomial blur at stride 2), so the vCDR does not move with the pixel grid.
    /// Given with --resume, it switches a run's encoder over (the weights keep their shapes).
    #[arg(long)]
    pub anti_alias: bool,
    /// Turn augmentation off.
    #[arg(long)]
    pub no_augment: bool,
    /// Random rotation range in degrees (off by default).
    #[arg(long, default_value_t = 0.0)]
    pub rotate: f32,
    /// Random scale range, e.g. 0.1 for 0.9-1.1 (off by default).
    #[arg(long, default_value_t = 0.0)]
    pub scale: f32,
    /// Random shift range as a fraction of the side, e.g. 0.1 (off by default).
    #[arg(long, default_value_t = 0.0)]
    pub translate: f32,
    /// Probability of a vertical flip (default 0.5, the seed recipe's; with --resume, replaces
    /// the run's). A fundus photograph has an up and a down (the superior and inferior rims
    /// differ, the vessels leave the disc up and down): 0 keeps them where the camera puts them.
    #[arg(long, value_name = "P", value_parser = probability, conflicts_with = "no_augment")]
    pub vflip: Option<f32>,
    /// Camera robustness: gamma, per-channel gain, sharpness, noise and JPEG re-encoding, each
    /// at p = 0.3, on top of the seed's colour jitter (off by default).
    #[arg(long)]
    pub camera_augment: bool,
    /// Fourier style mixing: with this probability a training crop takes the low-frequency
    /// amplitude (illumination, colour cast) of another training photograph, its anatomy kept;
    /// across mixed cameras, one camera's crop in another's look (off by default; off with
    /// --no-augment).
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = probability)]
    pub style_mix: f32,
    /// Train a coarse-to-fine second stage: each sample is a square crop around its true disc,
    /// this many disc diameters wide (e.g. 3). Off: the whole photograph.
    #[arg(long, value_name = "DIAMETERS")]
    pub roi_context: Option<f32>,
    /// Smallest crop side of --roi-context, as a fraction of the photograph's shorter side.
    #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
    pub roi_min_side: f32,
    /// Weight of a loss term on the vertical cup-to-disc ratio (soft column counts, as the
    /// metric measures it; default 0; with --resume, replaces the run's).
    #[arg(long, value_name = "W")]
    pub vcdr_weight: Option<f64>,
    /// Draw eyes whose true vCDR is at least --large-cup-vcdr this many times per epoch
    /// (default 1; with --resume, replaces the run's).
    #[arg(long, value_name = "N")]
    pub large_cup_repeat: Option<usize>,
    /// What counts as a large cup for --large-cup-repeat (default 0.6).
    #[arg(long, value_name = "VCDR")]
    pub large_cup_vcdr: Option<f64>,
    /// Draw every eye of the --data folder named FOLDER (its last path component) N times an
    /// epoch, times its large-cup repeat; repeat the flag for several folders (with --resume,
    /// replaces the run's list).
    #[arg(long, value_name = "FOLDER=N", value_parser = folder_repeat)]
    pub folder_repeat: Vec<FolderRepeat>,
    /// Draw the large cups of the --data folder named FOLDER N times an epoch instead of
    /// --large-cup-repeat (times its --folder-repeat); repeat the flag for several folders (with
    /// --resume, replaces the run's list).
    #[arg(long, value_name = "FOLDER=N", value_parser = folder_repeat)]
    pub folder_large_cup_repeat: Vec<FolderRepeat>,
    /// Keep a numbered checkpoint every N epochs (0: only best and last).
    #[arg(long, default_value_t = 10)]
    pub checkpoint_every: usize,
    /// Seed of the held-out split (and, without --init-seed, of everything else).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Seed of the initial weights, the batch order and the augmentation (default: --seed).
    /// Two runs with the same --seed and different --init-seed hold out the same eyes and
    /// differ only by chance: how much their scores differ is the recipe's run-to-run noise.
    /// A resumed run keeps its own.
    #[arg(long, value_name = "N")]
    pub init_seed: Option<u64>,
    /// Threads that decode and resize the data, and libtorch's compute threads with
    /// --backend tch (default: all cores).
    #[arg(long, default_value_t = crate::backend::all_cores())]
    pub threads: usize,
}

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Run directory written by `papilla train`, or a bundle written by `papilla export`.
    #[arg(long, value_name = "RUN_DIR|FILE.papilla")]
    pub model: PathBuf,
    /// Data folder with ground truth (RIM-ONE DL's root means its --rimone-split). Default: the
    /// run's own validation: its --val folders, or the share of its training data it held out.
    #[arg(long, value_name = "DIR")]
    pub data: Vec<PathBuf>,
    /// Print one JSON object (n, disc_dice, cup_dice, vcdr_mae, ..., referral, vcdr_bins,
    /// glaucoma_auc where diagnoses exist, images).
    #[arg(long)]
    pub json: bool,
    /// Also write per-image scores to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// The vCDR at and above which an eye is referred, for the referral table.
    #[arg(long, value_name = "VCDR", default_value_t = crate::score::DEFAULT_REFERRAL_VCDR)]
    pub referral_threshold: f64,
    /// Write a report to look at into this folder: `index.html` (self-contained: summary with
    /// medians, referral and AUC, error by true vCDR, plots of the vCDR against the truth,
    /// Bland-Altman and Dice histograms, the --worst cases as overlays), report.json and
    /// images.csv.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Put a second model's figures beside these in the report: its `evaluate --json` output
    /// or a report's report.json (needs --report).
    #[arg(long, value_name = "OTHER.json", requires = "report")]
    pub compare: Option<PathBuf>,
    /// Which official split a RIM-ONE DL root in --data means.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    pub rimone_split: SplitArg,
    /// How many worst cases --report writes.
    #[arg(long, default_value_t = 10)]
    pub worst: usize,
    /// Shape fit of a run directory's masks, as `export --shape-fit` would carry it (a bundle
    /// applies its own), so a run is scored as its bundle will be.
    #[arg(long, value_enum)]
    pub shape_fit: Option<ShapeFitArg>,
    /// Test-time augmentation of a run directory, as `export --tta` would carry it (a bundle
    /// applies its own).
    #[arg(long, value_enum)]
    pub tta: Option<TtaArg>,
    /// The photographs are disc-centred crops (RIM-ONE DL, Drishti-GS crops), not whole fundus
    /// photographs: skip the locator and pad each crop to PAD times its longer side (bundles
    /// only; without PAD, the padding the bundle was exported with).
    #[arg(long, value_name = "PAD", num_args = 0..=1)]
    pub disc_centred: Option<Option<f32>>,
    /// Score only the eyes of --data that this training run held out for validation (its
    /// seeded share of its --data, or its --val folders): run-time settings are then chosen on
    /// eyes no weight was fitted to, and never on a test split (bundles only).
    #[arg(long, value_name = "RUN_DIR", requires = "data")]
    pub held_out_of: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    pub backend: BackendArg,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Run directory written by `papilla train`, or a bundle written by `papilla export`.
    #[arg(long, value_name = "RUN_DIR|FILE.papilla")]
    pub model: PathBuf,
    /// Folder of photographs (.jpg/.png; or a GAMMA folder with `fundus color images/`).
    #[arg(long, value_name = "DIR")]
    pub input: PathBuf,
    /// Output folder: one `<name>.bmp` per photograph, at its original size.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Also pack the BMPs into this zip file (a challenge submission).
    #[arg(long, value_name = "FILE")]
    pub zip: Option<PathBuf>,
    /// The photographs are disc-centred crops (RIM-ONE DL, Drishti-GS crops), not whole fundus
    /// photographs: skip the locator and pad each crop to PAD times its longer side (bundles
    /// only; without PAD, the padding the bundle was exported with).
    #[arg(long, value_name = "PAD", num_args = 0..=1)]
    pub disc_centred: Option<Option<f32>>,
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    pub backend: BackendArg,
    /// Photographs segmented in parallel (bundles only).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// Test-time augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TtaArg {
    None,
    /// The crop and its left-right mirror image, scores averaged.
    Hflip,
}

/// int8 graph form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Int8FormArg {
    /// QLinearConv: integer kernels in tract.
    Qlinear,
    /// QuantizeLinear/DequantizeLinear around float Conv: the form onnxruntime fuses.
    Qdq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WeightScalesArg {
    PerTensor,
    PerChannel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActTypeArg {
    U8,
    I8,
}

/// An official split of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    Train,
    Test,
}

impl SplitArg {
    pub fn name(self) -> &'static str {
        match self {
            SplitArg::Train => "train",
            SplitArg::Test => "test",
        }
    }
}

/// Shape fitted to the final disc and cup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShapeFitArg {
    /// The cleaned mask as the network drew it.
    None,
    /// Disc and cup replaced by ellipses of the same centroid, area and moments.
    Ellipse,
}

/// `--folder-repeat FOLDER=N`: a folder name (no path) and a count of at least 1.
fn folder_repeat(s: &str) -> Result<FolderRepeat, String> {
    let (folder, n) = s.rsplit_once('=').ok_or_else(|| format!("{s:?} is not FOLDER=N"))?;
    let times: usize = n.parse().map_err(|e| format!("{n:?} is not a count: {e}"))?;
    if folder.is_empty() || folder.contains('/') {
        return Err(format!("{folder:?} is not a folder name (the last part of a --data path)"));
    }
    if times == 0 {
        return Err("N must be at least 1".into());
    }
    Ok(FolderRepeat { folder: folder.to_owned(), times })
}

/// A probability from the command line: a number in [0, 1].
fn probability(s: &str) -> Result<f32, String> {
    let p: f32 = s.parse().map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if (0.0..=1.0).contains(&p) { Ok(p) } else { Err(format!("{p} is not in [0, 1]")) }
}

impl From<ShapeFitArg> for ShapeFit {
    fn from(a: ShapeFitArg) -> Self {
        match a {
            ShapeFitArg::None => ShapeFit::None,
            ShapeFitArg::Ellipse => ShapeFit::Ellipse,
        }
    }
}

impl From<TtaArg> for TestTimeAugmentation {
    fn from(a: TtaArg) -> Self {
        match a {
            TtaArg::None => TestTimeAugmentation::None,
            TtaArg::Hflip => TestTimeAugmentation::HorizontalFlip,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CalibMethodArg {
    Minmax,
    Percentile,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Run directory of the segmenter (its best checkpoint is exported).
    #[arg(long, value_name = "RUN_DIR")]
    pub checkpoint: PathBuf,
    /// Run directory of a whole-photograph locator, for a segmenter trained with --roi-context.
    #[arg(long, value_name = "RUN_DIR")]
    pub locator: Option<PathBuf>,
    /// The bundle to write.
    #[arg(long, value_name = "FILE.papilla")]
    pub out: PathBuf,
    /// Also write the segmenter's plain ONNX graph here (a locator's goes beside it as
    /// `FILE.locator.onnx`).
    #[arg(long, value_name = "FILE.onnx")]
    pub onnx_out: Option<PathBuf>,
    /// Quantize to int8 (static, calibrated on --calibration photographs).
    #[arg(long, requires = "calibration")]
    pub int8: bool,
    #[arg(long, value_enum, default_value_t = Int8FormArg::Qlinear)]
    pub int8_form: Int8FormArg,
    #[arg(long, value_enum, default_value_t = WeightScalesArg::PerChannel)]
    pub weight_scales: WeightScalesArg,
    /// 8-bit activation type of the int8 graph.
    #[arg(long, value_enum, default_value_t = ActTypeArg::I8)]
    pub activations: ActTypeArg,
    /// Folder(s) of photographs for calibration (a GAMMA folder or plain .jpg/.png).
    #[arg(long, value_name = "DIR")]
    pub calibration: Vec<PathBuf>,
    /// Photographs used for calibration, spread evenly over the folder.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub calib_images: usize,
    #[arg(long, value_enum, default_value_t = CalibMethodArg::Minmax)]
    pub calib_method: CalibMethodArg,
    /// Sign with this secret key (from `papilla keygen`).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// Model name in the manifest.
    #[arg(long, default_value = "papilla-unet")]
    pub name: String,
    /// Model version in the manifest (semver).
    #[arg(long, default_value = "0.1.0")]
    pub model_version: String,
    /// Photograph for the bundle's self-test (default: a synthetic one). Shrunk to 640 px.
    #[arg(long, value_name = "FILE")]
    pub selftest_image: Option<PathBuf>,
    /// Run-time crop side, in disc diameters found by the locator (default: the segmenter's
    /// training value). The locator's discs can be a few per cent larger than the truth, so
    /// a smaller value matches the crops the segmenter learnt on. Choose it on a training or
    /// validation split, never on a test split.
    #[arg(long, value_name = "DIAMETERS")]
    pub roi_context: Option<f32>,
    /// Shape fitted to the final disc and cup, carried in the bundle (both sides apply it).
    /// Choose it on a training or validation split.
    #[arg(long, value_enum, default_value_t = ShapeFitArg::None)]
    pub shape_fit: ShapeFitArg,
    /// Padding of disc-centred crops (`--disc-centred`), in multiples of the crop's longer
    /// side, carried in the bundle. Choose it on a training split of such crops.
    #[arg(long, value_name = "PAD")]
    pub disc_centred_pad: Option<f32>,
    /// Test-time augmentation of the segmenter, carried in the bundle (host and device apply
    /// it): `hflip` also runs the mirrored crop and averages the scores (twice the
    /// segmenter's cost). Choose it on a training split.
    #[arg(long, value_enum, default_value_t = TtaArg::None)]
    pub tta: TtaArg,
    /// Threads for tract during calibration and checks.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

#[derive(Debug, clap::Args)]
pub struct AverageArgs {
    /// The trained run whose numbered epoch checkpoints (model-epoch-NNNN.bpk) are averaged.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// How many of its last epochs (4: epochs 9-12 of a 12-epoch run).
    #[arg(long, value_name = "N")]
    pub last: usize,
    /// The new run to write (must not hold a run yet).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Secret key file to create (owner-only); the public key goes to KEY.pub.
    #[arg(long, value_name = "KEY")]
    pub out: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn style_mix_takes_a_probability() {
        let parse =
            |p: &str| Cli::try_parse_from(["papilla", "train", "--data", "d", "--out", "o", p]);
        let Command::Train(t) = parse("--style-mix=0.5").unwrap().command else { panic!("train") };
        assert_eq!(t.style_mix, 0.5);
        for bad in ["1.5", "-0.1", "half"] {
            let bad = &format!("--style-mix={bad}");
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("--style-mix"), "{bad}: {err}");
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["papilla", "score", "--pred", "p", "--truth", "t", "--json"])
                .unwrap();
        let Command::Score(args) = cli.command else { panic!("score") };
        assert!(args.json);
        assert_eq!(args.truth, PathBuf::from("t"));
        let cli = Cli::try_parse_from([
            "papilla",
            "train",
            "--data",
            "a",
            "--data",
            "b",
            "--out",
            "r",
            "--epochs",
            "3",
            "--size",
            "256",
            "--batch",
            "2",
            "--backend",
            "cpu",
            "--resume",
        ])
        .unwrap();
        let Command::Train(t) = cli.command else { panic!("train") };
        assert_eq!(t.data.len(), 2);
        assert_eq!((t.epochs, t.size, t.batch, t.resume), (Some(3), 256, 2, true));
    }

    #[test]
    fn a_warm_restart_needs_resume_and_the_loss_is_unset_unless_given() {
        let train = |extra: &[&str]| {
            let args = ["papilla", "train", "--data", "d", "--out", "r"];
            let cli = Cli::try_parse_from(args.iter().chain(extra))?;
            let Command::Train(t) = cli.command else { panic!("train") };
            Ok::<_, clap::Error>((t.restart_lr, t.loss))
        };
        assert_eq!(train(&[]).unwrap(), (None, None));
        assert!(train(&["--restart-lr", "0.001"]).is_err(), "--restart-lr without --resume");
        assert_eq!(
            train(&["--resume", "--restart-lr", "0.001", "--loss", "nested"]).unwrap(),
            (Some(0.001), Some(LossArg::Nested))
        );
        let resize = |extra: &[&str]| {
            let args = ["papilla", "train", "--data", "d", "--out", "r"];
            let cli = Cli::try_parse_from(args.iter().chain(extra))?;
            let Command::Train(t) = cli.command else { panic!("train") };
            Ok::<_, clap::Error>(t.resize)
        };
        assert!(resize(&["--resize", "224"]).is_err(), "--resize without --resume");
        assert_eq!(resize(&["--resume", "--resize", "224"]).unwrap(), Some(224));
        assert_eq!(resize(&["--resume"]).unwrap(), None);
    }

    #[test]
    fn vertical_flips_are_the_seed_recipes_unless_told() {
        let vflip = |extra: &[&str]| {
            let args = ["papilla", "train", "--data", "d", "--out", "r"];
            let cli = Cli::try_parse_from(args.iter().chain(extra))?;
            let Command::Train(t) = cli.command else { panic!("train") };
            Ok::<_, clap::Error>((t.vflip, crate::app::training_config(&t).augment.vflip))
        };
        assert_eq!(vflip(&[]).unwrap(), (None, 0.5));
        assert_eq!(vflip(&["--vflip", "0"]).unwrap(), (Some(0.0), 0.0));
        assert_eq!(vflip(&["--vflip", "0.2"]).unwrap(), (Some(0.2), 0.2));
        assert!(vflip(&["--vflip", "1.5"]).is_err(), "not a probability");
        assert!(vflip(&["--no-augment", "--vflip", "0.5"]).is_err(), "flips without augmentation");
    }

    #[test]
    fn backends_screening_and_large_cup_options_parse() {
        let cli = Cli::try_parse_from(["papilla", "train", "--data", "d", "--out", "r"]).unwrap();
        let Command::Train(t) = cli.command else { panic!("train") };
        assert_eq!((t.backend, t.threads), (None, crate::backend::all_cores()));
        assert_eq!((t.large_cup_repeat, t.large_cup_vcdr), (None, None));
        let args = ["papilla", "train", "--data", "d", "--out", "r", "--backend", "tch"];
        let extra = ["--threads", "3", "--large-cup-repeat", "4", "--large-cup-vcdr", "0.65"];
        let cli = Cli::try_parse_from(args.iter().chain(&extra)).unwrap();
        let Command::Train(t) = cli.command else { panic!("train") };
        assert_eq!((t.backend, t.threads, t.large_cup_repeat), (Some(BackendArg::Tch), 3, Some(4)));
        assert_eq!(t.large_cup_vcdr, Some(0.65));
        assert!(t.folder_repeat.is_empty());
        let args = ["papilla", "train", "--data", "d/rimone-dl", "--out", "r"];
        let extra = ["--folder-repeat", "rimone-dl=2", "--folder-repeat", "zeiss=3"];
        let cli = Cli::try_parse_from(args.iter().chain(&extra)).unwrap();
        let Command::Train(t) = cli.command else { panic!("train") };
        let pairs: Vec<_> = t.folder_repeat.iter().map(|r| (r.folder.as_str(), r.times)).collect();
        assert_eq!(pairs, [("rimone-dl", 2), ("zeiss", 3)]);
        assert!(t.folder_large_cup_repeat.is_empty());
        let cli =
            Cli::try_parse_from(args.iter().chain(&["--folder-large-cup-repeat", "rimone-dl=1"]));
        let Command::Train(t) = cli.unwrap().command else { panic!("train") };
        assert_eq!(t.folder_large_cup_repeat[0].folder, "rimone-dl");
        assert_eq!(t.folder_large_cup_repeat[0].times, 1);
        for bad in ["rimone-dl", "rimone-dl=0", "rimone-dl=two", "=2", "d/rimone-dl=2"] {
            for flag in ["--folder-repeat", "--folder-large-cup-repeat"] {
                let cli = Cli::try_parse_from(args.iter().chain(&[flag, bad]));
                assert!(cli.is_err(), "{flag} {bad} accepted");
            }
        }
        let cli = Cli::try_parse_from(["papilla", "check-backend", "--backend", "wgpu"]).unwrap();
        let Command::CheckBackend(c) = cli.command else { panic!("check-backend") };
        assert_eq!((c.size, c.batch, c.base_channels, c.tolerance), (256, 2, 16, 1e-2));
        assert!(Cli::try_parse_from(["papilla", "check-backend"]).is_err(), "--backend needed");
        let cli = Cli::try_parse_from(["papilla", "score", "--pred", "p", "--truth", "t"]).unwrap();
        let Command::Score(sc) = cli.command else { panic!("score") };
        assert_eq!(sc.referral_threshold, 0.6);
        let eval = ["papilla", "evaluate", "--model", "m", "--referral-threshold", "0.7"];
        let Command::Evaluate(e) = Cli::try_parse_from(eval).unwrap().command else {
            panic!("evaluate")
        };
        assert_eq!(e.referral_threshold, 0.7);
    }

    #[test]
    fn disc_centred_takes_an_optional_padding_and_the_split_defaults_to_test() {
        let eval = |extra: &[&str]| {
            let args = ["papilla", "evaluate", "--model", "m.papilla", "--data", "d"];
            let cli = Cli::try_parse_from(args.iter().chain(extra)).unwrap();
            let Command::Evaluate(e) = cli.command else { panic!("evaluate") };
            (e.disc_centred, e.rimone_split)
        };
        assert_eq!(eval(&[]), (None, SplitArg::Test));
        assert_eq!(eval(&["--disc-centred"]), (Some(None), SplitArg::Test));
        assert_eq!(
            eval(&["--disc-centred", "1.8", "--rimone-split", "train"]),
            (Some(Some(1.8)), SplitArg::Train)
        );
        let cli = Cli::try_parse_from([
            "papilla",
            "export",
            "--checkpoint",
            "r",
            "--out",
            "m.papilla",
            "--shape-fit",
            "ellipse",
            "--disc-centred-pad",
            "1.8",
        ])
        .unwrap();
        let Command::Export(x) = cli.command else { panic!("export") };
        assert_eq!((x.shape_fit, x.disc_centred_pad), (ShapeFitArg::Ellipse, Some(1.8)));
    }
}
