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
use crate::labels::LabelMap;
use crate::metrics::{Measurements, measure};
use crate::postprocess::{InferenceOptions, Placed, clean, postprocess, postprocess_placed};
use crate::preprocess::{Geometry, Rect, Tensor4, mirror_index, preprocess, rescale};

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
    #[error("{0}")]
    Framing(String),
}

/// A bundle file that cannot be opened: which file, and why (the cause in `source()`).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{}: cannot read the model bundle", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot load the model bundle", path.display())]
    Load {
        path: std::path::PathBuf,
        #[source]
        source: RuntimeError,
    },
}

/// The paddings a disc-centred crop may have, in multiples of its longer side.
pub const DISC_CENTRED_PADS: std::ops::RangeInclusive<f32> = 1.0..=8.0;

/// What a photograph shows, which decides how the runtime frames the disc.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Framing {
    /// A whole fundus photograph: the locator (if the bundle has one) finds the disc.
    Fundus,
    /// A crop already centred on the disc that fills most of it (RIM-ONE DL, Drishti-GS
    /// crops): the locator is skipped and the crop is padded to `pad` times its longer side
    /// (see [`Engine::segment_framed`]); `None` takes the bundle's own padding.
    DiscCentred { pad: Option<f32> },
}

impl Framing {
    /// The framing a `--disc-centred [PAD]` option asks for (`None`: the option is absent).
    pub fn from_disc_centred(option: Option<Option<f32>>) -> Self {
        match option {
            Some(pad) => Framing::DiscCentred { pad },
            None => Framing::Fundus,
        }
    }
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
    /// Parses and optimises an ONNX graph for `input_shape` (NCHW, f32), fed at its first
    /// input; every graph output is kept.
    pub fn load(onnx: &[u8], input_shape: [usize; 4], stage: &str) -> Result<Self, RuntimeError> {
        Self::load_ports(onnx, input_shape, stage, None, None)
    }

    /// The graph of a bundle's stage: fed at the input and read at the output its manifest
    /// names ([`Stage::input_name`], [`Stage::output_name`]), whatever their order in the
    /// graph; a graph without them is refused here, not at the first exam.
    pub fn for_stage(
        onnx: &[u8],
        input_shape: [usize; 4],
        stage: &Stage,
    ) -> Result<Self, RuntimeError> {
        let output = [stage.output_name.as_str()];
        Self::load_ports(onnx, input_shape, &stage.name, Some(&stage.input_name), Some(&output))
    }

    /// The graph fed at its first input and read at the tensors named `outputs`, in that
    /// order (intermediate tensors too: calibration reads the activations by name).
    pub fn with_outputs(
        onnx: &[u8],
        input_shape: [usize; 4],
        stage: &str,
        outputs: &[&str],
    ) -> Result<Self, RuntimeError> {
        Self::load_ports(onnx, input_shape, stage, None, Some(outputs))
    }

    fn load_ports(
        onnx: &[u8],
        input_shape: [usize; 4],
        stage: &str,
        input: Option<&str>,
        outputs: Option<&[&str]>,
    ) -> Result<Self, RuntimeError> {
        let load_error = |message: String| RuntimeError::Load { stage: stage.to_owned(), message };
        let err = |e: TractError| load_error(format!("{e:#}"));
        let framework = tract_onnx::onnx();
        let mut proto =
            framework.proto_model_for_read(&mut std::io::Cursor::new(onnx)).map_err(err)?;
        if let Some(graph) = proto.graph.as_mut() {
            fold_constant_dequantization(&framework, graph).map_err(err)?;
        }
        let mut model = framework.model_for_proto_model(&proto).map_err(err)?;
        // The f32 weights now live in the model: the protobuf's copy goes before optimising.
        drop(proto);
        if let Some(input) = input {
            let is_input = |id: usize| model.inputs.iter().any(|o| o.node == id);
            if !model.node_id_by_name(input).is_ok_and(is_input) {
                return Err(load_error(format!("the graph has no input named {input:?}")));
            }
            model.set_input_names([input]).map_err(err)?;
        }
        if let Some(outputs) = outputs {
            // An ONNX tensor is an outlet label in tract (a node's name also selects it).
            let known =
                |n: &str| model.find_outlet_label(n).is_some() || model.node_by_name(n).is_ok();
            if let Some(name) = outputs.iter().find(|n| !known(n)) {
                return Err(load_error(format!("the graph has no output named {name:?}")));
            }
            model.select_outputs_by_name(outputs.iter()).map_err(err)?;
        }
        let plan = model
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

/// Replaces each DequantizeLinear whose inputs are all constants (an int8 bundle's weights) by
/// its f32 result. tract folds them itself while loading, through generic broadcasting
/// arithmetic over dynamic-rank arrays: for 0.8.0's weights that was half the loading (about
/// 0.4 s on the x86 development host, 1.9 G instructions counted for a Pi). The arithmetic is
/// tract's, `(x - zero_point) * scale` in f32 per channel along `axis`, so the graph computes
/// the same values; initializers no node reads any more are dropped.
fn fold_constant_dequantization(
    framework: &tract_onnx::Onnx,
    graph: &mut tract_onnx::pb::GraphProto,
) -> TractResult<()> {
    use tract_onnx::pb::{TensorProto, tensor_proto::DataType};
    let index: std::collections::HashMap<&str, &TensorProto> =
        graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let load = |name: &str| -> TractResult<Tensor> {
        tract_onnx::tensor::load_tensor(&*framework.provider, index[name], None)
    };
    let mut folded = Vec::new();
    for (i, node) in graph.node.iter().enumerate() {
        let constant = node.op_type == "DequantizeLinear"
            && (2..=3).contains(&node.input.len())
            && node.output.len() == 1
            && node.input.iter().all(|n| index.contains_key(n.as_str()));
        if !constant {
            continue;
        }
        let x = load(&node.input[0])?;
        let scale = load(&node.input[1])?;
        let zero = match node.input.get(2) {
            Some(n) => load(n)?,
            None => tensor0(0f32),
        };
        let axis = node.attribute.iter().find(|a| a.name == "axis").map_or(1, |a| a.i);
        let values = dequantize(&x, &scale, &zero, axis)?;
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dims = x.shape().iter().map(|&d| d as i64).collect();
        let name = node.output[0].clone();
        let tensor = TensorProto {
            name,
            dims,
            data_type: DataType::Float as i32,
            raw_data,
            ..TensorProto::default()
        };
        folded.push((i, tensor));
    }
    if folded.is_empty() {
        return Ok(());
    }
    // The folded nodes' inputs, dropped below unless something else still reads them.
    let inputs: std::collections::HashSet<String> =
        folded.iter().flat_map(|(i, _)| graph.node[*i].input.iter().cloned()).collect();
    let mut next = folded.iter().map(|(i, _)| *i).peekable();
    let mut i = 0;
    graph.node.retain(|_| {
        let fold = next.next_if_eq(&i).is_some();
        i += 1;
        !fold
    });
    graph.initializer.extend(folded.into_iter().map(|(_, t)| t));
    let read: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.input.iter().chain(&graph.output).map(|v| v.name.as_str()))
        .collect();
    let unread: std::collections::HashSet<String> =
        inputs.into_iter().filter(|n| !read.contains(n.as_str())).collect();
    graph.initializer.retain(|t| !unread.contains(&t.name));
    Ok(())
}

/// `(x - zero) * scale` in f32, `scale` and `zero` either one value or one per index of `x`'s
/// `axis`, as ONNX's DequantizeLinear.
fn dequantize(x: &Tensor, scale: &Tensor, zero: &Tensor, axis: i64) -> TractResult<Vec<f32>> {
    let f32s = |t: &Tensor| -> TractResult<Vec<f32>> {
        Ok(t.cast_to::<f32>()?.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
    };
    let shape = x.shape().to_vec();
    let (x, scale, zero) = (f32s(x)?, f32s(scale)?, f32s(zero)?);
    let (mut channels, mut inner) = (1, 1);
    if scale.len() > 1 || zero.len() > 1 {
        let rank = shape.len() as i64;
        let a = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&a) {
            let message = format!("quantization axis {axis} out of range for rank {rank}");
            return Err(TractError::msg(message));
        }
        channels = shape[a as usize];
        inner = shape[a as usize + 1..].iter().product();
    }
    for (what, v) in [("scale", &scale), ("zero point", &zero)] {
        if v.len() != 1 && v.len() != channels {
            let message = format!("{} values of the {what} for {channels} channels", v.len());
            return Err(TractError::msg(message));
        }
    }
    let at = |v: &[f32], c: usize| if v.len() == 1 { v[0] } else { v[c] };
    Ok(x.iter()
        .enumerate()
        .map(|(i, &q)| {
            let c = (i / inner) % channels;
            (q - at(&zero, c)) * at(&scale, c)
        })
        .collect())
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
    /// The crop the segmenter saw, when the model has a locator, in the pixels of the image
    /// given (a scaled-down decode's, for [`Engine::segment_framed_at`]).
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

/// Where the locator found the disc in a whole photograph ([`Engine::locate`]), independent of
/// the decode's size.
#[derive(Clone, Debug)]
pub struct Located {
    /// The locator's classes on a small map of the photograph; `None` without a locator.
    map: Option<LabelMap>,
    times: StageTimes,
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
    /// Reads the bundle file at `path`, verifies it as `verification` says and loads it: the
    /// one loader of host and device.
    pub fn open(
        path: &std::path::Path,
        verification: &Verification,
        threads: usize,
    ) -> Result<Self, OpenError> {
        let bytes = std::fs::read(path)
            .map_err(|source| OpenError::Read { path: path.to_owned(), source })?;
        Self::from_bytes(&bytes, verification, threads)
            .map_err(|source| OpenError::Load { path: path.to_owned(), source })
    }

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
            let loaded =
                LoadedStage { stage: stage.clone(), graph: Graph::for_stage(bytes, shape, stage)? };
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

    /// Segments one whole fundus photograph through every stage.
    pub fn segment(&self, image: &RgbImage) -> Result<Segmentation, RuntimeError> {
        self.segment_framed(image, Framing::Fundus)
    }

    /// Segments a photograph framed as `framing` says.
    pub fn segment_framed(
        &self,
        image: &RgbImage,
        framing: Framing,
    ) -> Result<Segmentation, RuntimeError> {
        self.segment_framed_at(image, framing, image.dimensions())
    }

    /// Segments `image`, a scaled-down decode of a photograph of `size` pixels, and returns the
    /// mask (and its measurements) at `size`: the network sees the decoded pixels, and the
    /// scores are interpolated straight onto the full-size photograph. With `size` equal to
    /// the image's it is [`Engine::segment_framed`].
    pub fn segment_framed_at(
        &self,
        image: &RgbImage,
        framing: Framing,
        size: (u32, u32),
    ) -> Result<Segmentation, RuntimeError> {
        if size.0 == 0 || size.1 == 0 {
            return Err(RuntimeError::Framing("the photograph is empty".into()));
        }
        match framing {
            Framing::Fundus => self.segment_fundus(image, size),
            Framing::DiscCentred { pad } => self.segment_disc_centred(image, pad, size),
        }
    }

    /// The segmenter alone on a canvas `pad` times the crop's longer side, the crop in its
    /// middle and the rest mirrored outwards from the crop's edges, so the disc sits in as
    /// much surrounding retina as the segmenter was trained with; the mask is cut back.
    fn segment_disc_centred(
        &self,
        image: &RgbImage,
        pad: Option<f32>,
        size: (u32, u32),
    ) -> Result<Segmentation, RuntimeError> {
        let Some(pad) = pad.or(self.manifest.inference.disc_centred_pad) else {
            return Err(RuntimeError::Framing(
                "this bundle does not say how to pad disc-centred crops; give the padding".into(),
            ));
        };
        if !DISC_CENTRED_PADS.contains(&pad) {
            return Err(RuntimeError::Framing(format!(
                "the padding of a disc-centred crop must be between {} and {}, not {pad}",
                DISC_CENTRED_PADS.start(),
                DISC_CENTRED_PADS.end()
            )));
        }
        let (w, h) = image.dimensions();
        if w == 0 || h == 0 {
            return Err(RuntimeError::Framing("the photograph is empty".into()));
        }
        let side = (w.max(h) as f32 * pad).round() as u32;
        let (ox, oy) = ((side - w) / 2, (side - h) / 2);
        let canvas = RgbImage::from_fn(side, side, |x, y| {
            *image.get_pixel(
                mirror_index(x as i64 - ox as i64, w),
                mirror_index(y as i64 - oy as i64, h),
            )
        });
        let mut times = StageTimes::default();
        let roi = Some(Rect::full(side, side));
        // The canvas at the full photograph's scale: the photograph's own pixels land at
        // (fx, fy), `size` of them, and the mask is cut back from there.
        let at = rescale;
        let (fx, fy) = (at(ox, size.0, w), at(oy, size.1, h));
        let canvas_size =
            (at(side, size.0, w).max(fx + size.0), at(side, size.1, h).max(fy + size.1));
        let mask = self.run_stage(&self.segmenter, &canvas, roi, canvas_size, &mut times)?;
        let cut = mask.cut(Rect { x: fx, y: fy, width: size.0, height: size.1 });
        let fitted = self.fit(Placed::whole(clean(&cut)), &mut times);
        Ok(finish(fitted, None, times))
    }

    /// The bundle's shape fit, if any.
    fn fit(&self, mask: Placed, times: &mut StageTimes) -> Placed {
        let t = Instant::now();
        let fitted = self.manifest.inference.fit_placed(mask);
        times.postprocess += t.elapsed();
        fitted
    }

    fn segment_fundus(
        &self,
        image: &RgbImage,
        size: (u32, u32),
    ) -> Result<Segmentation, RuntimeError> {
        let located = self.locate(image)?;
        self.segment_located(image, &located, size)
    }

    /// The locator's answer for a whole photograph (nothing to do for a bundle without one),
    /// to be cropped from this decode or from a finer one ([`Engine::crop_in`],
    /// [`Engine::segment_located`]). The locator's scores are post-processed on a map of the
    /// photograph no larger than four times the locator's input (all of it for REFUGE's 512 px
    /// images): only the disc's box is needed, and a full-size map of a 12-megapixel frame
    /// would cost more than the model.
    pub fn locate(&self, image: &RgbImage) -> Result<Located, RuntimeError> {
        let mut times = StageTimes::default();
        let Some(loc) = &self.locator else { return Ok(Located { map: None, times }) };
        let (out, geometry) = self.infer(loc, image, None, &mut times)?;
        let t = Instant::now();
        let (w, h) = image.dimensions();
        let limit = 4 * geometry.network.0.max(geometry.network.1);
        let scale = (limit as f64 / w.max(h) as f64).min(1.0);
        let small = |n: u32| ((n as f64 * scale).round() as u32).max(1);
        let (sw, sh) = (small(w), small(h));
        let map_geometry = Geometry { original: (sw, sh), crop: Rect::full(sw, sh), ..geometry };
        let map = postprocess(&out.data, &out.shape, &loc.stage.output, &map_geometry)?;
        times.postprocess += t.elapsed();
        Ok(Located { map: Some(map), times })
    }

    /// The segmenter's crop around the located disc in a `width`x`height` decode of the
    /// photograph; `None` without a locator or without a disc.
    pub fn crop_in(&self, located: &Located, (width, height): (u32, u32)) -> Option<Rect> {
        let map = located.map.as_ref()?;
        // A bundle with a locator has a crop policy (checked in `new`).
        let policy = self.segmenter.stage.preprocess.roi?;
        policy.crop_for_scaled(map, width, height)
    }

    /// The segmenter's input, width and height in pixels: a crop smaller than this is enlarged.
    pub fn segmenter_input(&self) -> (u32, u32) {
        let pre = &self.segmenter.stage.preprocess;
        (pre.width, pre.height)
    }

    /// The segmenter on the crop `located` gives in `image` (any decode of the photograph,
    /// not necessarily the one located on), the mask at `size` as in
    /// [`Engine::segment_framed_at`].
    pub fn segment_located(
        &self,
        image: &RgbImage,
        located: &Located,
        size: (u32, u32),
    ) -> Result<Segmentation, RuntimeError> {
        if size.0 == 0 || size.1 == 0 || image.width() == 0 || image.height() == 0 {
            return Err(RuntimeError::Framing("the photograph is empty".into()));
        }
        let mut times = located.times;
        let roi = match &located.map {
            None => None,
            Some(_) => match self.crop_in(located, image.dimensions()) {
                Some(r) => Some(r),
                None => return Ok(finish(Placed::empty(size), None, times)),
            },
        };
        let mask = self.run_stage(&self.segmenter, image, roi, size, &mut times)?;
        let fitted = self.fit(mask, &mut times);
        Ok(finish(fitted, roi, times))
    }

    /// The segmenter's mask on the photograph, at `size` (the photograph's full size, of
    /// which `image` may be a scaled-down decode), with the bundle's test-time augmentation;
    /// placed: the crop's pixels only.
    fn run_stage(
        &self,
        s: &LoadedStage,
        image: &RgbImage,
        roi: Option<Rect>,
        size: (u32, u32),
        times: &mut StageTimes,
    ) -> Result<Placed, RuntimeError> {
        let (out, geometry) = self.infer_tta(s, image, roi, times, self.manifest.inference)?;
        let t = Instant::now();
        let geometry = geometry.at_size(size);
        let mask = postprocess_placed(&out.data, &out.shape, &s.stage.output, &geometry)?;
        times.postprocess += t.elapsed();
        Ok(mask)
    }

    /// One stage's raw output and the geometry of its input.
    fn infer(
        &self,
        s: &LoadedStage,
        image: &RgbImage,
        roi: Option<Rect>,
        times: &mut StageTimes,
    ) -> Result<(Output, Geometry), RuntimeError> {
        self.infer_tta(s, image, roi, times, InferenceOptions::default())
    }

    /// [`Engine::infer`] with the test-time augmentation of `options`
    /// ([`InferenceOptions::scores`]).
    fn infer_tta(
        &self,
        s: &LoadedStage,
        image: &RgbImage,
        roi: Option<Rect>,
        times: &mut StageTimes,
        options: InferenceOptions,
    ) -> Result<(Output, Geometry), RuntimeError> {
        let t = Instant::now();
        let (mut input, geometry) = preprocess(image, &s.stage.preprocess, roi)?;
        times.preprocess += t.elapsed();
        let t = Instant::now();
        let width = input.shape[3];
        let mut shape = Vec::new();
        let data = options.scores(&mut input, |x| {
            let out = run_first(s, x, &self.executor)?;
            // The mirrored pass is flipped back along the input's width.
            if output_shape(&out, &s.stage.name)?[3] != width {
                return Err(RuntimeError::Run {
                    stage: s.stage.name.clone(),
                    message: format!("output shape {:?} is not {width} wide", out.shape),
                });
            }
            shape.clone_from(&out.shape);
            Ok(out.data)
        })?;
        times.inference += t.elapsed();
        Ok((Output { data, shape }, geometry))
    }
}

/// An output's shape as `[N, C, H, W]`, or an error naming the stage.
fn output_shape(out: &Output, stage: &str) -> Result<[usize; 4], RuntimeError> {
    <[usize; 4]>::try_from(out.shape.as_slice()).map_err(|_| RuntimeError::Run {
        stage: stage.to_owned(),
        message: format!("expected a 4-d output, got shape {:?}", out.shape),
    })
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

/// The segmentation of a final mask, measured on its placed part (the measurements do not
/// depend on where it lies) and then pasted into the photograph once; a disc is found when
/// any pixel is not background.
fn finish(mask: Placed, roi: Option<Rect>, mut times: StageTimes) -> Segmentation {
    let t = Instant::now();
    let measurements = measure(&mask.map);
    let disc_found = measurements.disc_area > 0;
    let mask = mask.paste();
    times.postprocess += t.elapsed();
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

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use tract_onnx::pb;

    /// `Y = X + DequantizeLinear(W, scale, zero)` with int8 `W` of shape [1, 3, 2, 2]: ONNX
    /// bytes, the values of `W` and the attribute `axis` when given.
    fn dequantize_graph(scale: &[f32], zero: &[i8], axis: Option<i64>) -> (Vec<u8>, Vec<i8>) {
        use pb::tensor_proto::DataType;
        let w: Vec<i8> = vec![-128, -3, -1, 0, 1, 2, 5, 17, 64, 100, 126, 127];
        let per = |n: usize| if n == 1 { vec![] } else { vec![n as i64] };
        let init = |name: &str, dims: Vec<i64>, dt: DataType, raw: Vec<u8>| pb::TensorProto {
            name: name.into(),
            dims,
            data_type: dt as i32,
            raw_data: raw,
            ..Default::default()
        };
        let i8s = |v: &[i8]| v.iter().map(|&x| x as u8).collect::<Vec<u8>>();
        let initializer = vec![
            init("w", vec![1, 3, 2, 2], DataType::Int8, i8s(&w)),
            init(
                "s",
                per(scale.len()),
                DataType::Float,
                scale.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            init("z", per(zero.len()), DataType::Int8, i8s(zero)),
        ];
        let attribute = axis
            .map(|a| pb::AttributeProto {
                name: "axis".into(),
                r#type: pb::attribute_proto::AttributeType::Int as i32,
                i: a,
                ..Default::default()
            })
            .into_iter()
            .collect();
        let node = |op: &str, input: &[&str], output: &str, attribute| pb::NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: input.iter().map(|s| (*s).into()).collect(),
            output: vec![output.into()],
            attribute,
            ..Default::default()
        };
        let value = |name: &str| {
            use pb::tensor_shape_proto::{Dimension, dimension::Value};
            let d = |v| Dimension { value: Some(Value::DimValue(v)), ..Default::default() };
            pb::ValueInfoProto {
                name: name.into(),
                r#type: Some(pb::TypeProto {
                    value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                        elem_type: DataType::Float as i32,
                        shape: Some(pb::TensorShapeProto { dim: vec![d(1), d(3), d(2), d(2)] }),
                    })),
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        let graph = pb::GraphProto {
            node: vec![
                node("DequantizeLinear", &["w", "s", "z"], "wf", attribute),
                node("Add", &["x", "wf"], "y", vec![]),
            ],
            initializer,
            input: vec![value("x")],
            output: vec![value("y")],
            ..Default::default()
        };
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 13 }],
            graph: Some(graph),
            ..Default::default()
        };
        (model.encode_to_vec(), w)
    }

    #[test]
    fn constant_dequantization_is_folded_to_exactly_what_tract_computes() {
        let x = Tensor4 { shape: [1, 3, 2, 2], data: (0..12).map(|i| i as f32 * 0.1).collect() };
        for (scale, zero, axis) in [
            (&[0.5f32, 0.013, 2.0][..], &[1i8, -2, 0][..], Some(1)),
            (&[0.5, 0.013, 2.0], &[1, -2, 0], Some(-3)),
            (&[0.037], &[3], None),
        ] {
            let (onnx, w) = dequantize_graph(scale, zero, axis);
            let folded = Graph::load(&onnx, [1, 3, 2, 2], "t").unwrap();
            let folded = &folded.run(&x, &Executor::SingleThread, "t").unwrap()[0].data;
            // tract on the graph as written, folding the weights itself.
            let plain = tract_onnx::onnx()
                .model_for_read(&mut std::io::Cursor::new(&onnx))
                .unwrap()
                .with_input_fact(0, f32::fact([1, 3, 2, 2]).into())
                .unwrap()
                .into_optimized()
                .unwrap()
                .into_runnable()
                .unwrap();
            let input = Tensor::from_shape(&x.shape, &x.data).unwrap();
            let out = plain.run(tvec!(input.into_tvalue())).unwrap();
            let plain: Vec<f32> =
                out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect();
            assert_eq!(folded, &plain, "{scale:?} {zero:?} {axis:?}");
            // And by hand: channel c of the 4 values per channel.
            let at = |v: &[f32], c: usize| if v.len() == 1 { v[0] } else { v[c] };
            let zf: Vec<f32> = zero.iter().map(|&z| f32::from(z)).collect();
            for (i, (&q, &y)) in w.iter().zip(folded).enumerate() {
                let wf = (f32::from(q) - at(&zf, i / 4)) * at(scale, i / 4);
                assert_eq!(y, x.data[i] + wf, "value {i}");
            }
            // The folded graph holds the weights as f32 and no DequantizeLinear.
            let framework = tract_onnx::onnx();
            let mut proto =
                framework.proto_model_for_read(&mut std::io::Cursor::new(&onnx)).unwrap();
            let graph = proto.graph.as_mut().unwrap();
            fold_constant_dequantization(&framework, graph).unwrap();
            let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
            assert_eq!(ops, ["Add"]);
            let inits: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(inits, ["wf"], "the int8 weights, scale and zero point are dropped");
        }
        // A folded node's input that something else still reads stays: the scale read by
        // another node, the zero point as a graph input's default value.
        let (onnx, _) = dequantize_graph(&[0.037], &[3], None);
        let framework = tract_onnx::onnx();
        let mut proto = framework.proto_model_for_read(&mut std::io::Cursor::new(&onnx)).unwrap();
        let graph = proto.graph.as_mut().unwrap();
        let reader = pb::NodeProto {
            op_type: "Identity".into(),
            input: vec!["s".into()],
            output: vec!["s2".into()],
            ..Default::default()
        };
        graph.node.push(reader);
        graph.input.push(pb::ValueInfoProto { name: "z".into(), ..Default::default() });
        fold_constant_dequantization(&framework, graph).unwrap();
        let inits: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(inits, ["s", "z", "wf"], "only the int8 weights, read by nothing else, go");
        // A per-channel scale that does not match the axis is an error, not a guess.
        let (onnx, _) = dequantize_graph(&[0.5, 0.25], &[0, 0], Some(1));
        let err = Graph::load(&onnx, [1, 3, 2, 2], "t").unwrap_err().to_string();
        assert!(err.contains("2 values of the scale for 3 channels"), "{err}");
    }
}
