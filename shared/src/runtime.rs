//! The one engine that runs every exported model, on the host and on the Pi: load a bundle
//! (hashes and signature checked), run its stages with tract (locator on the whole photograph,
//! then the segmenter on the crop around the disc it found), and apply the shared pre- and
//! post-processing. Nothing else in Papilla runs an exported graph.

use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;
use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::*;

use crate::bundle::{Bundle, Manifest, Stage, StageRole, Verification};
use crate::error::{BundleError, PostprocessError, PreprocessError};
use crate::labels::{Class, LabelMap};
use crate::metrics::{Measurements, measure};
use crate::postprocess::postprocess;
use crate::preprocess::{Rect, Tensor4, preprocess};

/// Why the runtime could not load or run a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("stage {stage}: tract cannot load the ONNX graph: {message}")]
    Load { stage: String, message: String },
    #[error("stage {stage}: inference failed: {message}")]
    Run { stage: String, message: String },
    #[error("the bundle's stages are not a model the runtime can run: {0}")]
    Layout(String),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error(transparent)]
    Postprocess(#[from] PostprocessError),
}

/// A raw output of a graph: values and NCHW shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
}

/// One ONNX graph optimised by tract for a fixed input shape.
#[derive(Debug, Clone)]
pub struct Graph {
    plan: Arc<TypedRunnableModel>,
    input_shape: [usize; 4],
}

/// How many threads tract's matrix products use (1: tract's default, single-threaded).
pub fn executor(threads: usize) -> Executor {
    if threads <= 1 { Executor::SingleThread } else { Executor::multithread(threads) }
}

impl Graph {
    /// Parses and optimises an ONNX graph for `input_shape` (NCHW, f32). Every graph output is
    /// kept, so calibration can read intermediate tensors.
    pub fn load(onnx: &[u8], input_shape: [usize; 4], stage: &str) -> Result<Self, RuntimeError> {
        let err = |e: TractError| RuntimeError::Load {
            stage: stage.to_owned(),
            message: format!("{e:#}"),
        };
        let plan = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(onnx))
            .map_err(err)?
            .with_input_fact(0, f32::fact(input_shape).into())
            .map_err(err)?
            .into_optimized()
            .map_err(err)?
            .into_runnable()
            .map_err(err)?;
        Ok(Self { plan, input_shape })
    }

    pub fn input_shape(&self) -> [usize; 4] {
        self.input_shape
    }

    /// Runs the graph on `input` with `executor`; returns every output in graph order.
    pub fn run(
        &self,
        input: &Tensor4,
        executor: &Executor,
        stage: &str,
    ) -> Result<Vec<Output>, RuntimeError> {
        let err = |e: TractError| RuntimeError::Run {
            stage: stage.to_owned(),
            message: format!("{e:#}"),
        };
        if input.shape != self.input_shape {
            return Err(RuntimeError::Run {
                stage: stage.to_owned(),
                message: format!(
                    "input shape {:?}, the graph was loaded for {:?}",
                    input.shape, self.input_shape
                ),
            });
        }
        let tensor = Tensor::from_shape(&input.shape, &input.data).map_err(err)?;
        let outputs = multithread_tract_scope(executor.clone(), || {
            self.plan.run(tvec!(tensor.into_tvalue()))
        })
        .map_err(err)?;
        outputs
            .iter()
            .map(|t| {
                let view = t.to_plain_array_view::<f32>().map_err(err)?;
                Ok(Output { data: view.iter().copied().collect(), shape: t.shape().to_vec() })
            })
            .collect()
    }
}

/// Where the time of one exam went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageTimes {
    pub preprocess: Duration,
    pub inference: Duration,
    pub postprocess: Duration,
}

/// The result of segmenting one photograph.
#[derive(Clone, Debug, PartialEq)]
pub struct Segmentation {
    /// Cleaned mask at the photograph's size.
    pub mask: LabelMap,
    pub measurements: Measurements,
    /// The crop the segmenter saw, when the model has a locator.
    pub roi: Option<Rect>,
    /// False when the model found no optic disc (the mask is then all background).
    pub disc_found: bool,
    pub times: StageTimes,
}

struct LoadedStage {
    stage: Stage,
    graph: Graph,
}

impl std::fmt::Debug for LoadedStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedStage").field("stage", &self.stage.name).finish()
    }
}

/// A verified bundle ready to segment photographs.
#[derive(Debug)]
pub struct Engine {
    manifest: Manifest,
    locator: Option<LoadedStage>,
    segmenter: LoadedStage,
    executor: Executor,
}

impl Engine {
    /// Reads, verifies and loads a bundle; `threads` for tract's matrix products.
    pub fn from_bytes(
        bytes: &[u8],
        verification: &Verification,
        threads: usize,
    ) -> Result<Self, RuntimeError> {
        let loaded = Bundle::from_bytes(bytes, verification)?;
        Self::new(&loaded.bundle, threads)
    }

    /// Loads the stages of an already verified bundle.
    pub fn new(bundle: &Bundle, threads: usize) -> Result<Self, RuntimeError> {
        let mut locator = None;
        let mut segmenter = None;
        for (stage, bytes) in bundle.stages() {
            let pre = &stage.preprocess;
            pre.validate()?;
            let shape = [1, 3, pre.height as usize, pre.width as usize];
            let loaded = LoadedStage {
                stage: stage.clone(),
                graph: Graph::load(bytes, shape, &stage.name)?,
            };
            let slot = match stage.role {
                StageRole::Locator => &mut locator,
                StageRole::Segmenter => &mut segmenter,
            };
            if slot.replace(loaded).is_some() {
                return Err(RuntimeError::Layout(format!("two {:?} stages", stage.role)));
            }
        }
        let segmenter =
            segmenter.ok_or_else(|| RuntimeError::Layout("no segmenter stage".into()))?;
        if locator.is_some() != segmenter.stage.preprocess.roi.is_some() {
            return Err(RuntimeError::Layout(
                "a locator needs a segmenter with a crop policy, and a crop policy a locator"
                    .into(),
            ));
        }
        Ok(Self {
            manifest: bundle.manifest().clone(),
            locator,
            segmenter,
            executor: executor(threads),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Raw logits of one stage (0 = the first in running order) for a preprocessed input; for
    /// tests that compare runtimes.
    pub fn stage_logits(&self, locator: bool, input: &Tensor4) -> Result<Output, RuntimeError> {
        let s = if locator {
            self.locator.as_ref().ok_or_else(|| RuntimeError::Layout("no locator".into()))?
        } else {
            &self.segmenter
        };
        run_first(s, input, &self.executor)
    }

    /// Segments one photograph through every stage.
    pub fn segment(&self, image: &RgbImage) -> Result<Segmentation, RuntimeError> {
        let mut times = StageTimes::default();
        let mut roi = None;
        if let Some(loc) = &self.locator {
            let coarse = self.run_stage(loc, image, None, &mut times)?;
            let policy = self.segmenter.stage.preprocess.roi.expect("checked in new");
            match policy.crop_for(&coarse) {
                Some(r) => roi = Some(r),
                None => return Ok(finish(coarse, None, false, times)),
            }
        }
        let mask = self.run_stage(&self.segmenter, image, roi, &mut times)?;
        let found = mask.count(Class::Background) < mask.classes().len();
        Ok(finish(mask, roi, found, times))
    }

    fn run_stage(
        &self,
        s: &LoadedStage,
        image: &RgbImage,
        roi: Option<Rect>,
        times: &mut StageTimes,
    ) -> Result<LabelMap, RuntimeError> {
        let t = Instant::now();
        let (input, geometry) = preprocess(image, &s.stage.preprocess, roi)?;
        times.preprocess += t.elapsed();
        let t = Instant::now();
        let out = run_first(s, &input, &self.executor)?;
        times.inference += t.elapsed();
        let t = Instant::now();
        let mask = postprocess(&out.data, &out.shape, &s.stage.output, &geometry)?;
        times.postprocess += t.elapsed();
        Ok(mask)
    }
}

fn run_first(
    s: &LoadedStage,
    input: &Tensor4,
    executor: &Executor,
) -> Result<Output, RuntimeError> {
    s.graph.run(input, executor, &s.stage.name)?.into_iter().next().ok_or_else(|| {
        RuntimeError::Run { stage: s.stage.name.clone(), message: "the graph has no output".into() }
    })
}

fn finish(mask: LabelMap, roi: Option<Rect>, disc_found: bool, times: StageTimes) -> Segmentation {
    let measurements = measure(&mask);
    Segmentation { mask, measurements, roi, disc_found, times }
}

/// The outcome of a bundle's self-test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfTestResult {
    /// Fraction of pixels whose class matches the expected mask.
    pub agreement: f64,
    pub required: f64,
}

impl SelfTestResult {
    pub fn passed(&self) -> bool {
        self.agreement >= self.required
    }
}

impl Engine {
    /// Runs the bundle's golden input and compares with its expected mask; `None` when the
    /// bundle carries no self-test.
    pub fn self_test(&self) -> Result<Option<SelfTestResult>, RuntimeError> {
        let Some(t) = &self.manifest.selftest else { return Ok(None) };
        let bad = |m: String| RuntimeError::Layout(format!("self-test: {m}"));
        let image =
            image::load_from_memory(&t.image_png).map_err(|e| bad(e.to_string()))?.to_rgb8();
        let expected = crate::labels::decode_mask_bytes(
            &t.expected_mask_png,
            "selftest.png",
            crate::labels::MaskRole::Prediction,
        )
        .map_err(|e| bad(e.to_string()))?
        .labels;
        let got = self.segment(&image)?.mask;
        if got.dimensions() != expected.dimensions() {
            return Err(bad(format!(
                "mask is {:?}, expected {:?}",
                got.dimensions(),
                expected.dimensions()
            )));
        }
        let same = got.classes().iter().zip(expected.classes()).filter(|(a, b)| a == b).count();
        Ok(Some(SelfTestResult {
            agreement: same as f64 / got.classes().len().max(1) as f64,
            required: t.min_agreement,
        }))
    }
}
