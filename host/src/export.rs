//! `papilla export` and `papilla keygen`: from trained runs to a model bundle (ONNX graphs,
//! preprocessing, class map, validation scores, self-test), optionally int8 and signed.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use image::RgbImage;
use papilla_shared::bundle::{
    Bundle, Manifest, Precision, SelfTest, SigningKey, Stage, StageRole, TestScores,
    TrainingSummary, Verification, VerifyingKey,
};
use papilla_shared::files::{self, Durability};
use papilla_shared::postprocess::{InferenceOptions, OutputSpec};
use papilla_shared::preprocess::{Tensor4, preprocess};
use papilla_shared::runtime::{self, Engine, Graph, RuntimeError};
use thiserror::Error;

use crate::inference::{self, InferError};
use crate::model::UNetLayers;
use crate::onnx::{self, ActType, Form, GraphOptions, Ranges, WeightScales};
use crate::progress::{Bar, Progress};
use crate::run_dir::{RunDir, RunDirError, RunState};
use crate::train_config::TrainingConfig;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error(transparent)]
    Run(#[from] RunDirError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Bundle(#[from] papilla_shared::BundleError),
    #[error(transparent)]
    Preprocess(#[from] papilla_shared::PreprocessError),
    #[error("cannot write the ONNX graph: {0}")]
    Graph(String),
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a key written by `papilla keygen`: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("--int8 needs --calibration DIR with photographs")]
    NoCalibration,
    #[error(
        "{}: a second-stage run (trained with --roi-context) needs --locator RUN_DIR", run.display()
    )]
    NeedsLocator { run: PathBuf },
    #[error("{}: the locator must be a whole-photograph run (no --roi-context)", run.display())]
    LocatorIsSecondStage { run: PathBuf },
    #[error("--roi-context {0} must be at least 1 disc diameter")]
    RoiContext(f32),
    #[error(
        "--disc-centred-pad {0} must be between {lo} and {hi} (times the crop's longer side)",
        lo = runtime::DISC_CENTRED_PADS.start(),
        hi = runtime::DISC_CENTRED_PADS.end()
    )]
    DiscCentredPad(f32),
    #[error("--locator and --roi-context need a segmenter trained with --roi-context")]
    LocatorWithoutCrop,
    #[error("the exported model fails its own self-test: {agreement:.4} of pixels agree")]
    SelfTestFailed { agreement: f64 },
}

/// How activations are calibrated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CalibMethod {
    /// Smallest and largest value seen.
    MinMax,
    /// Mean over images of the 0.01% and 99.99% quantiles (clips rare outliers).
    Percentile,
}

/// What `papilla export` was asked for.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub checkpoint: PathBuf,
    pub locator: Option<PathBuf>,
    pub out: PathBuf,
    pub onnx_out: Option<PathBuf>,
    /// `None`: f32.
    pub int8: Option<Form>,
    pub weights: WeightScales,
    pub activations: ActType,
    pub method: CalibMethod,
    pub calibration: Vec<PathBuf>,
    pub calib_images: usize,
    pub sign: Option<PathBuf>,
    pub name: String,
    pub version: String,
    /// Photograph for the self-test (default: a synthetic one).
    pub selftest_image: Option<PathBuf>,
    /// Run-time crop side in locator disc diameters, replacing the segmenter's training value.
    pub roi_context: Option<f32>,
    /// Shape fit, padding of disc-centred crops and test-time augmentation, carried in the
    /// manifest.
    pub inference: InferenceOptions,
    pub threads: usize,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct ExportReport {
    pub bundle: PathBuf,
    pub bytes: usize,
    pub onnx: Vec<PathBuf>,
    pub precision: Precision,
    pub calibration_images: usize,
    pub selftest_agreement: f64,
    pub signer: Option<String>,
}

struct Source {
    config: TrainingConfig,
    layers: UNetLayers,
    role: StageRole,
}

fn load_source(run: &Path, role: StageRole) -> Result<Source, ExportError> {
    let loaded = inference::load_run(run, &Device::flex())?;
    Ok(Source { layers: loaded.model.layers(), config: loaded.config, role })
}

fn metadata(s: &Source, precision: Precision) -> Vec<(String, String)> {
    vec![
        ("papilla_version".into(), env!("CARGO_PKG_VERSION").into()),
        ("stage".into(), format!("{:?}", s.role)),
        ("precision".into(), format!("{precision:?}")),
        ("preprocess".into(), serde_json::to_string(&s.config.preprocess).unwrap_or_default()),
        ("classes".into(), "0=cup,1=rim,2=background".into()),
    ]
}

fn graph_bytes(
    s: &Source,
    form: Form,
    (weights, activations): (WeightScales, ActType),
    ranges: Option<&Ranges>,
) -> Result<Vec<u8>, ExportError> {
    let precision = precision_of(Some(form));
    let options = GraphOptions {
        height: s.config.preprocess.height as usize,
        width: s.config.preprocess.width as usize,
        form,
        weights,
        activations,
        metadata: metadata(s, precision),
    };
    let model = onnx::build(&s.layers, &options, ranges).map_err(ExportError::Graph)?;
    Ok(onnx::to_bytes(&model))
}

fn precision_of(form: Option<Form>) -> Precision {
    match form {
        None | Some(Form::F32) => Precision::F32,
        Some(Form::QLinear) => Precision::Int8QLinear,
        Some(Form::Qdq) => Precision::Int8Qdq,
    }
}

fn stage_of(s: &Source, precision: Precision) -> Stage {
    Stage {
        name: match s.role {
            StageRole::Locator => "locator".into(),
            StageRole::Segmenter => "segmenter".into(),
        },
        role: s.role,
        preprocess: s.config.preprocess.clone(),
        output: OutputSpec::seed(),
        input_name: onnx::INPUT.into(),
        output_name: onnx::OUTPUT.into(),
        precision,
        graph_len: 0,
        graph_sha256: [0; 32],
    }
}

/// Calibration ranges of every quantized tensor of `layers`, measured by running their f32
/// graph in tract on `inputs` and reading each activation by its name.
pub fn calibrate(
    layers: &UNetLayers,
    graph_f32: &[u8],
    inputs: &[Tensor4],
    method: CalibMethod,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Ranges, ExportError> {
    let names = onnx::calibration_tensors(layers);
    // The first is the input itself, read directly; the graph gives the others, in order.
    let read: Vec<&str> = names[1..].iter().map(String::as_str).collect();
    let mut per_image: Vec<Vec<(f32, f32)>> = vec![Vec::new(); names.len()];
    let exec = runtime::executor(threads);
    let mut graph: Option<Graph> = None;
    for input in inputs {
        if graph.as_ref().is_none_or(|g| g.input_shape() != input.shape) {
            graph = Some(Graph::with_outputs(graph_f32, input.shape, "calibration", &read)?);
        }
        let outs = graph.as_ref().expect("loaded above").run(input, &exec, "calibration")?;
        progress.advance(Bar::Main, 1);
        for i in 0..names.len() {
            let data: &[f32] = if i == 0 { &input.data } else { &outs[i - 1].data };
            per_image[i].push(match method {
                CalibMethod::MinMax => {
                    data.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)))
                }
                CalibMethod::Percentile => quantiles(data, 1e-4),
            });
        }
    }
    Ok(names
        .into_iter()
        .zip(per_image)
        .map(|(name, r)| {
            let n = r.len().max(1) as f32;
            let range = match method {
                CalibMethod::MinMax => {
                    r.iter().fold((f32::MAX, f32::MIN), |(a, b), &(lo, hi)| (a.min(lo), b.max(hi)))
                }
                CalibMethod::Percentile => {
                    (r.iter().map(|x| x.0).sum::<f32>() / n, r.iter().map(|x| x.1).sum::<f32>() / n)
                }
            };
            (name, range)
        })
        .collect())
}

/// The `q` and `1 - q` quantiles of `data`.
fn quantiles(data: &[f32], q: f64) -> (f32, f32) {
    let mut v = data.to_vec();
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let k = ((v.len() - 1) as f64 * q).round() as usize;
    let lo = *v.select_nth_unstable_by(k, f32::total_cmp).1;
    let hi_k = v.len() - 1 - k;
    let hi = *v.select_nth_unstable_by(hi_k, f32::total_cmp).1;
    (lo, hi)
}

/// Reads up to `n` photographs from the calibration folders (sorted, evenly spread).
fn calibration_photos(dirs: &[PathBuf], n: usize) -> Result<Vec<RgbImage>, ExportError> {
    let mut all = Vec::new();
    for d in dirs {
        all.extend(inference::list_photos(d)?);
    }
    if all.is_empty() {
        return Err(ExportError::NoCalibration);
    }
    let n = n.clamp(1, all.len());
    let step = all.len() as f64 / n as f64;
    (0..n)
        .map(|i| inference::read_photo(&all[(i as f64 * step) as usize]).map_err(Into::into))
        .collect()
}

/// An engine over f32 graphs of the sources (to find the crops calibration must see).
fn engine_of(
    sources: &[Source],
    graphs: Vec<Vec<u8>>,
    precision: Precision,
    inference: InferenceOptions,
    threads: usize,
) -> Result<(Bundle, Engine), ExportError> {
    let manifest = Manifest {
        name: String::new(),
        version: String::new(),
        created_unix_s: 0,
        papilla_version: env!("CARGO_PKG_VERSION").into(),
        stages: sources.iter().map(|s| stage_of(s, precision)).collect(),
        training: None,
        scores: Vec::new(),
        selftest: None,
        inference: InferenceOptions { disc_centred_pad: None, ..inference },
    };
    let bundle = Bundle::new(manifest, graphs)?;
    let engine = Engine::new(&bundle, threads)?;
    Ok((bundle, engine))
}

/// A checked export (ripgrep's `HiArgs` pattern): every option validated and the runs loaded
/// before anything is computed, so [`export`] is a sequence of small steps.
struct ExportPlan<'a> {
    options: &'a ExportOptions,
    /// The locator (when there is one), then the segmenter: the bundle's running order.
    sources: Vec<Source>,
    /// The segmenter run's state: epochs, validation scores, hardware.
    state: RunState,
    precision: Precision,
}

impl<'a> TryFrom<&'a ExportOptions> for ExportPlan<'a> {
    type Error = ExportError;

    fn try_from(o: &'a ExportOptions) -> Result<Self, ExportError> {
        if let Some(p) =
            o.inference.disc_centred_pad.filter(|p| !runtime::DISC_CENTRED_PADS.contains(p))
        {
            return Err(ExportError::DiscCentredPad(p));
        }
        if matches!(o.int8, Some(Form::QLinear | Form::Qdq)) && o.calibration.is_empty() {
            return Err(ExportError::NoCalibration);
        }
        let mut seg = load_source(&o.checkpoint, StageRole::Segmenter)?;
        if let Some(c) = o.roi_context {
            match seg.config.preprocess.roi.as_mut() {
                Some(roi) if c.is_finite() && c >= 1.0 => roi.context = c,
                Some(_) => return Err(ExportError::RoiContext(c)),
                None => return Err(ExportError::LocatorWithoutCrop),
            }
        }
        let loc = match &o.locator {
            Some(run) => {
                let l = load_source(run, StageRole::Locator)?;
                if l.config.preprocess.roi.is_some() {
                    return Err(ExportError::LocatorIsSecondStage { run: run.clone() });
                }
                if seg.config.preprocess.roi.is_none() {
                    return Err(ExportError::LocatorWithoutCrop);
                }
                Some(l)
            }
            None if seg.config.preprocess.roi.is_some() => {
                return Err(ExportError::NeedsLocator { run: o.checkpoint.clone() });
            }
            None => None,
        };
        let state = RunDir::new(&o.checkpoint).state()?.unwrap_or_default();
        let sources = loc.into_iter().chain([seg]).collect();
        Ok(Self { options: o, sources, state, precision: precision_of(o.int8) })
    }
}

impl ExportPlan<'_> {
    fn segmenter(&self) -> &Source {
        self.sources.last().expect("a plan always has its segmenter")
    }

    fn quantization(&self) -> (WeightScales, ActType) {
        (self.options.weights, self.options.activations)
    }

    fn f32_graphs(&self) -> Result<Vec<Vec<u8>>, ExportError> {
        let q = self.quantization();
        self.sources.iter().map(|s| graph_bytes(s, Form::F32, q, None)).collect()
    }

    /// The graphs in `form`, each calibrated on the inputs its stage sees: whole photographs
    /// for the locator, the crops an f32 bundle finds for the segmenter. Also returns how many
    /// photographs were read.
    fn quantized_graphs(
        &self,
        form: Form,
        progress: &dyn Progress,
    ) -> Result<(Vec<Vec<u8>>, usize), ExportError> {
        let o = self.options;
        let photos = calibration_photos(&o.calibration, o.calib_images)?;
        let f32_graphs = self.f32_graphs()?;
        let (_, f32_engine) =
            engine_of(&self.sources, f32_graphs.clone(), Precision::F32, o.inference, o.threads)?;
        let mut graphs = Vec::new();
        for (s, f32_graph) in self.sources.iter().zip(&f32_graphs) {
            // Finding the crops, then running the f32 graph on them: two steps a photograph.
            let label = format!("calibrating {:?}", s.role).to_lowercase();
            progress.begin(Bar::Main, &label, 2 * photos.len() as u64);
            let mut inputs = Vec::with_capacity(photos.len());
            for p in &photos {
                progress.advance(Bar::Main, 1);
                let roi = match s.role {
                    StageRole::Locator => None,
                    StageRole::Segmenter => f32_engine.segment(p)?.roi,
                };
                if s.config.preprocess.roi.is_some() && roi.is_none() {
                    continue; // no disc found: this photograph teaches the crop nothing
                }
                inputs.push(preprocess(p, &s.config.preprocess, roi)?.0);
            }
            let ranges = calibrate(&s.layers, f32_graph, &inputs, o.method, o.threads, progress)?;
            progress.end(Bar::Main, None);
            graphs.push(graph_bytes(s, form, self.quantization(), Some(&ranges))?);
        }
        Ok((graphs, photos.len()))
    }

    /// The self-test: a golden photograph and the mask the bundle of `graphs` gives it.
    fn self_test(&self, graphs: &[Vec<u8>]) -> Result<SelfTest, ExportError> {
        let o = self.options;
        let (_, engine) =
            engine_of(&self.sources, graphs.to_vec(), self.precision, o.inference, o.threads)?;
        let photo = match &o.selftest_image {
            Some(p) => shrink(inference::read_photo(p)?, 640),
            None => {
                let p = papilla_shared::synth::SynthParams::random(512, 512, 7);
                papilla_shared::synth::generate(&p).image
            }
        };
        let expected = engine.segment(&photo)?.mask;
        Ok(SelfTest {
            image_png: png(&image::DynamicImage::ImageRgb8(photo)),
            expected_mask_png: png(&image::DynamicImage::ImageLuma8(expected.to_grey())),
            min_agreement: 0.99,
        })
    }

    fn manifest(&self, selftest: SelfTest) -> Manifest {
        let (o, seg, state) = (self.options, self.segmenter(), &self.state);
        let scores = state
            .best
            .map(|summary| TestScores {
                test_set: format!("validation ({})", seg.config.data.join(", ")),
                precision: Precision::F32,
                summary,
            })
            .into_iter()
            .collect();
        Manifest {
            name: o.name.clone(),
            version: o.version.clone(),
            created_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            papilla_version: env!("CARGO_PKG_VERSION").into(),
            stages: self.sources.iter().map(|s| stage_of(s, self.precision)).collect(),
            training: Some(TrainingSummary {
                data: seg.config.data.clone(),
                epochs: state.epoch as u32,
                train_images: state.train_images as u64,
                val_images: state.best.map(|b| b.n as u64).unwrap_or(0),
                wall_time_s: state.wall_time_s,
                hardware: hardware(state),
                config_json: serde_json::to_string(&seg.config)
                    .expect("a training config serialises"),
            }),
            scores,
            selftest: Some(selftest),
            inference: o.inference,
        }
    }

    /// Writes each stage's graph beside the bundle when `--onnx-out` asks: the segmenter at
    /// the path given, a locator at `PATH.locator.onnx`.
    fn write_onnx(&self, bundle: &Bundle) -> Result<Vec<PathBuf>, ExportError> {
        let Some(path) = &self.options.onnx_out else { return Ok(Vec::new()) };
        let mut written = Vec::new();
        let n = self.sources.len();
        for (i, (s, g)) in self.sources.iter().zip(bundle.stages().map(|(_, g)| g)).enumerate() {
            let p = if i + 1 == n {
                path.clone()
            } else {
                path.with_extension(format!("{}.onnx", stage_of(s, self.precision).name))
            };
            write_file(&p, g, "cannot write the ONNX graph")?;
            written.push(p);
        }
        Ok(written)
    }
}

/// Writes `bytes` through a temporary file and a rename, so a crash never leaves half a file.
fn write_file(path: &Path, bytes: &[u8], what: &'static str) -> Result<(), ExportError> {
    files::write_atomic(path, bytes, Durability::Atomic).map_err(|source| ExportError::Io {
        path: path.to_owned(),
        what,
        source,
    })
}

/// `papilla export`.
pub fn export(o: &ExportOptions, progress: &dyn Progress) -> Result<ExportReport, ExportError> {
    let plan = ExportPlan::try_from(o)?;
    let (graphs, calibration_images) = match o.int8 {
        None | Some(Form::F32) => (plan.f32_graphs()?, 0),
        Some(form) => plan.quantized_graphs(form, progress)?,
    };
    let selftest = plan.self_test(&graphs)?;
    let bundle = Bundle::new(plan.manifest(selftest), graphs)?;
    let key = o.sign.as_deref().map(read_signing_key).transpose()?;
    let bytes = bundle.to_bytes(key.as_ref())?;
    // Read back exactly what will be written, through the runtime, before replacing anything.
    let check = Engine::from_bytes(&bytes, &Verification::integrity_only(), o.threads)?;
    let result = check.self_test()?.expect("written above");
    if !result.passed() {
        return Err(ExportError::SelfTestFailed { agreement: result.agreement });
    }
    write_file(&o.out, &bytes, "cannot write the bundle")?;
    let onnx = plan.write_onnx(&bundle)?;
    Ok(ExportReport {
        bundle: o.out.clone(),
        bytes: bytes.len(),
        onnx,
        precision: plan.precision,
        calibration_images,
        selftest_agreement: result.agreement,
        signer: key.map(|k| papilla_shared::bundle::hex(k.verifying_key().as_bytes())),
    })
}

fn shrink(img: RgbImage, longest: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if w.max(h) <= longest {
        return img;
    }
    let k = longest as f64 / w.max(h) as f64;
    let (nw, nh) = (((w as f64 * k).round() as u32).max(1), ((h as f64 * k).round() as u32).max(1));
    image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
}

fn png(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("PNG encoding to memory");
    out.into_inner()
}

/// `papilla keygen`: writes the secret key (hex, owner-only) to `out` and the public key to
/// `out.pub`. Refuses to overwrite either.
pub fn keygen(out: &Path) -> Result<(PathBuf, String), ExportError> {
    let public = pub_path(out);
    for p in [out, public.as_path()] {
        if p.exists() {
            return Err(ExportError::Io {
                path: p.to_owned(),
                what: "already exists; refusing to overwrite a key",
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
    }
    let mut seed = [0u8; 32];
    let random = Path::new("/dev/urandom");
    std::fs::File::open(random)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .map_err(|source| ExportError::Io {
            path: random.to_owned(),
            what: "cannot read",
            source,
        })?;
    let key = SigningKey::from_bytes(&seed);
    let hex_pub = papilla_shared::bundle::hex(key.verifying_key().as_bytes());
    write_secret(out, &format!("{}\n", papilla_shared::bundle::hex(&seed)))?;
    std::fs::write(&public, format!("{hex_pub}\n")).map_err(|source| ExportError::Io {
        path: public.clone(),
        what: "cannot write",
        source,
    })?;
    Ok((public, hex_pub))
}

fn write_secret(path: &Path, text: &str) -> Result<(), ExportError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let io = |source| ExportError::Io { path: path.to_owned(), what: "cannot write", source };
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

/// `KEY.pub` beside `KEY`.
pub fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn parse_hex32(path: &Path) -> Result<[u8; 32], ExportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ExportError::Io {
        path: path.to_owned(),
        what: "cannot read the key",
        source,
    })?;
    let t = text.trim();
    let bad = |reason: &str| ExportError::Key { path: path.to_owned(), reason: reason.into() };
    papilla_shared::bundle::from_hex::<32>(t).ok_or_else(|| bad("expected 64 hexadecimal digits"))
}

/// A secret key written by [`keygen`].
pub fn read_signing_key(path: &Path) -> Result<SigningKey, ExportError> {
    Ok(SigningKey::from_bytes(&parse_hex32(path)?))
}

/// A public key written by [`keygen`] (`KEY.pub`).
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, ExportError> {
    VerifyingKey::from_bytes(&parse_hex32(path)?)
        .map_err(|e| ExportError::Key { path: path.to_owned(), reason: e.to_string() })
}

/// What a run trained on, from its `state.json`: each stretch's backend, device and threads.
pub fn hardware(state: &RunState) -> String {
    if state.hardware.is_empty() {
        return "not recorded (run written before papilla recorded its hardware)".into();
    }
    state.hardware.iter().map(ToString::to_string).collect::<Vec<_>>().join("; then ")
}
