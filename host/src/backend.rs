//! burn's compute backends behind one choice: the device a `--backend` names, what a run
//! records about it, and a check that one training step on a backend agrees with flex
//! (weights' gradients included) before its weights are trusted.
//!
//! Only this module names a backend: everything else takes a [`Device`]. The libtorch backend
//! (`tch`, burn-tch over libtorch's CPU build) is optional because burn deprecated it in 0.22
//! and because it needs libtorch at build time (`scripts/fetch-libtorch.sh`).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::loss::{LossKind, loss, target_batch};
use crate::model::UNetConfig;
use papilla_shared::preprocess::{PreprocessConfig, preprocess};
use papilla_shared::synth::{SynthParams, generate};

#[derive(Debug, Error)]
pub enum BackendError {
    #[error(
        "the wgpu backend needs a build with `--features gpu` (cargo build --release -p papilla-host --features gpu)"
    )]
    NoGpuBuild,
    #[error("no usable GPU adapter for wgpu (Vulkan, Metal or DX12); train with --backend cpu")]
    NoGpuAdapter,
    #[error(
        "the tch backend needs a build with `--features tch` and libtorch: eval \"$(scripts/fetch-libtorch.sh)\" && cargo build --release -p papilla-host --features tch"
    )]
    NoTchBuild,
    #[error("a backend check needs a tensor from the device: {0}")]
    Data(String),
}

/// What a run trained on, recorded in `state.json` and, through it, in a bundle's
/// `TrainingSummary.hardware`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Hardware {
    /// `flex`, `tch` or `wgpu`.
    pub backend: String,
    /// The CPU model (CPU backends) or the GPU adapter.
    pub device: String,
    /// Compute threads the backend was given (0: the backend's own choice).
    pub threads: usize,
}

impl std::fmt::Display for Hardware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, burn {}", self.device, self.backend)?;
        if self.threads > 0 {
            write!(f, ", {} threads", self.threads)?;
        }
        Ok(())
    }
}

/// All the machine's cores: the default of `--threads`.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The CPU model name, or the architecture where `/proc/cpuinfo` has none.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

/// A burn device and what it is, for the run's record.
#[derive(Clone, Debug)]
pub struct Compute {
    pub device: Device,
    pub hardware: Hardware,
}

/// Compute backend of burn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// burn's `flex` CPU backend.
    Cpu,
    /// burn-wgpu on a GPU (needs a build with `--features gpu`).
    Wgpu,
    /// burn-tch on libtorch's CPU build: 3-4x flex's training speed (needs a build with
    /// `--features tch` and libtorch, see scripts/fetch-libtorch.sh).
    Tch,
}

impl BackendArg {
    /// The name a run's `state.json` records for this backend.
    pub fn burn_name(self) -> &'static str {
        match self {
            BackendArg::Cpu => "flex",
            BackendArg::Tch => "tch",
            BackendArg::Wgpu => "wgpu",
        }
    }

    /// The backend a recorded name stands for.
    pub fn from_burn_name(name: &str) -> Option<Self> {
        [BackendArg::Cpu, BackendArg::Tch, BackendArg::Wgpu]
            .into_iter()
            .find(|b| b.burn_name() == name)
    }
}

/// The burn device of a backend choice. `threads` sets libtorch's intra-op threads; flex
/// runs on rayon's pool (all cores) and wgpu on the GPU.
pub fn device_for(backend: BackendArg, threads: usize) -> Result<Compute, BackendError> {
    let cpu = |name: &str, threads| Hardware { backend: name.into(), device: cpu_name(), threads };
    let (device, hardware) = match backend {
        BackendArg::Cpu => (Device::flex(), cpu(backend.burn_name(), all_cores())),
        BackendArg::Tch => (tch_device(threads)?, cpu(backend.burn_name(), threads)),
        BackendArg::Wgpu => {
            let gpu = "default GPU adapter".into();
            (
                wgpu_device()?,
                Hardware { backend: backend.burn_name().into(), device: gpu, threads: 0 },
            )
        }
    };
    Ok(Compute { device, hardware })
}

#[cfg(feature = "tch")]
fn tch_device(threads: usize) -> Result<Device, BackendError> {
    // One process-wide setting of libtorch; at least one thread.
    tch::set_num_threads(i32::try_from(threads.max(1)).unwrap_or(i32::MAX));
    #[allow(deprecated)] // burn-tch is deprecated upstream; it stays an optional feature here
    Ok(Device::libtorch())
}

#[cfg(not(feature = "tch"))]
fn tch_device(_threads: usize) -> Result<Device, BackendError> {
    Err(BackendError::NoTchBuild)
}

#[cfg(feature = "gpu")]
fn wgpu_device() -> Result<Device, BackendError> {
    let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    // burn-wgpu panics on a background thread when no adapter exists; this turns that into an
    // error before any work is queued.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ok = std::panic::catch_unwind(|| {
        Tensor::<1>::zeros([1], &device).into_data().num_elements() == 1
    });
    std::panic::set_hook(hook);
    if ok.unwrap_or(false) { Ok(device) } else { Err(BackendError::NoGpuAdapter) }
}

#[cfg(not(feature = "gpu"))]
fn wgpu_device() -> Result<Device, BackendError> {
    Err(BackendError::NoGpuBuild)
}

/// What one training step gave on the reference backend (flex) and on the candidate.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct StepCheck {
    pub size: usize,
    pub batch: usize,
    pub loss_reference: f32,
    pub loss_candidate: f32,
    /// Largest difference of either copy's starting weights from the common initial ones
    /// (0 unless moving the model to a device changed it).
    pub max_initial_diff: f32,
    /// Parameters that received a gradient (on both backends): every trainable one.
    pub gradients: usize,
    /// Largest `|g_c - g_r| / max(|g_r|, 1e-3 max_p |g_p|)` (L2 norms) over the parameters,
    /// and which one.
    pub worst_gradient_rel: f32,
    pub worst_gradient: String,
    /// Largest absolute weight difference after the SGD step, over all parameters.
    pub max_weight_diff: f32,
    /// Largest absolute weight, for scale.
    pub max_weight: f32,
    /// Largest absolute difference of the stepped models' eval-mode logits, and their range.
    pub max_logit_diff: f32,
    pub logit_range: f32,
    pub parameters: usize,
}

impl StepCheck {
    /// Agreement within `tol` (relative): loss, every parameter's gradient, weights and logits.
    pub fn agrees(&self, tol: f32) -> bool {
        let rel = |a: f32, b: f32, scale: f32| (a - b).abs() <= tol * scale.max(1e-12);
        rel(self.loss_reference, self.loss_candidate, self.loss_reference.abs().max(1.0))
            && self.max_initial_diff == 0.0
            && self.gradients > 0
            && self.worst_gradient_rel <= tol
            && self.max_weight_diff <= tol * self.max_weight.max(1.0)
            && self.max_logit_diff <= tol * self.logit_range.max(1.0)
    }
}

/// Every float parameter of a module, in visiting order, with its path.
struct Collect<'a> {
    path: Vec<String>,
    grads: Option<&'a GradientsParams>,
    out: Vec<(String, Vec<f32>)>,
    error: Option<String>,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = match self.grads {
            Some(g) => g.get::<D>(param.id),
            None => Some(param.val()),
        };
        let values = match tensor {
            Some(t) => t.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}")),
            None => Ok(Vec::new()), // a parameter the loss does not reach has no gradient
        };
        match values {
            Ok(v) => self.out.push((self.path.join("."), v)),
            Err(e) => self.error = Some(e),
        }
    }
}

/// Every float tensor of `m` (parameters and BatchNorm statistics; with `grads`, their
/// gradients), in visiting order, each named by its module path.
pub(crate) fn collect<M: Module>(
    m: &M,
    grads: Option<&GradientsParams>,
) -> Result<Vec<(String, Vec<f32>)>, BackendError> {
    let mut c = Collect { path: Vec::new(), grads, out: Vec::new(), error: None };
    m.visit(&mut c);
    match c.error {
        Some(e) => Err(BackendError::Data(e)),
        None => Ok(c.out),
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// One SGD step (batch `batch` of synthetic photographs at `size` px, class Dice plus
/// cross-entropy, training-mode BatchNorm) from the same initial weights on `reference` and on
/// `candidate`; compares the loss, each parameter's gradient, the stepped weights and the
/// stepped model's eval-mode logits. Run it at the size a real run trains at: some backends
/// agree at 64 px and not at 256 (issue 14's lavapipe finding).
pub fn compare_training_step(
    reference: &Device,
    candidate: &Device,
    model: &UNetConfig,
    size: u32,
    batch: usize,
) -> Result<StepCheck, BackendError> {
    let cfg = PreprocessConfig::square(size);
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    for seed in 0..batch as u64 {
        let s = generate(&SynthParams::random(size, size, 1000 + seed));
        let (t, g) =
            preprocess(&s.image, &cfg, None).map_err(|e| BackendError::Data(e.to_string()))?;
        inputs.extend(t.data);
        targets.push(g.to_network(&s.labels));
    }
    let side = size as usize;
    let reference_ad = reference.clone().autodiff();
    reference_ad.seed(7);
    let init = model.init(&reference_ad);
    // burn initialises parameters lazily, and a clone of an uninitialised parameter draws new
    // weights: reading them all first makes both copies start from the same ones.
    let initial = collect(&init, None)?;
    let record = init.into_record();
    let mut results = Vec::new();
    for device in [reference, candidate] {
        let device = device.clone().autodiff();
        // A fresh module loaded from the snapshot, then `fork`ed: a clone (or `to_device`, or
        // `fork` alone) shares BatchNorm's running statistics with the other copy, and
        // `to_device` drops the parameters' require-grad flag (no gradient at all).
        let m = model.init(&device).load_record(record.clone()).fork(&device);
        let start = all_values(&collect(&m, None)?);
        let x = Tensor::<4>::from_data(
            TensorData::new(inputs.clone(), [batch, 3, side, side]),
            &device,
        );
        let y = target_batch(&targets.iter().collect::<Vec<_>>(), model.num_classes, &device);
        let l = loss(m.forward(x.clone()), y, 1.0, LossKind::ClassDice);
        let loss_value = l.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(l.backward(), &m);
        let grad_values = collect(&m, Some(&grads))?;
        let mut optim = SgdConfig::new().init();
        let m = optim.step(0.05, m, grads);
        let weights = collect(&m, None)?;
        let eval = device.without_autodiff();
        let logits = m
            .valid()
            .forward(x.to_device(&eval))
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| BackendError::Data(format!("{e:?}")))?;
        results.push((loss_value, grad_values, weights, logits, start));
    }
    let (r, c) = (&results[0], &results[1]);
    let initial = all_values(&initial);
    let max_initial_diff = if r.4.len() == initial.len() && c.4.len() == initial.len() {
        max_abs_diff(&initial, &r.4).max(max_abs_diff(&initial, &c.4))
    } else {
        f32::INFINITY
    };
    // Parameters without a gradient (BatchNorm's running statistics) are compared as weights.
    // A gradient's difference is relative to its own norm, floored at 1e-3 of the largest
    // gradient's: a deep BatchNorm shift with a gradient of 6e-5 differs by float32 rounding
    // (1e-7) at 0.3% of itself, while a wrong backend is off by tens of percent everywhere.
    let floor = 1e-3 * r.1.iter().map(|(_, g)| norm(g)).fold(0.0, f64::max);
    let (mut worst, mut worst_name, mut gradients) = (0f64, String::new(), 0);
    for ((name, gr), (_, gc)) in r.1.iter().zip(&c.1) {
        if gr.is_empty() && gc.is_empty() {
            continue;
        }
        gradients += 1;
        let diff: Vec<f32> = gr.iter().zip(gc).map(|(a, b)| a - b).collect();
        let rel = if gr.len() == gc.len() {
            norm(&diff) / norm(gr).max(floor).max(1e-12)
        } else {
            f64::INFINITY
        };
        if rel > worst || worst_name.is_empty() {
            worst = rel;
            worst_name.clone_from(name);
        }
    }
    let (wr, wc) = (all_values(&r.2), all_values(&c.2));
    Ok(StepCheck {
        size: side,
        batch,
        loss_reference: r.0,
        loss_candidate: c.0,
        max_initial_diff,
        gradients,
        worst_gradient_rel: worst as f32,
        worst_gradient: worst_name,
        max_weight_diff: if wr.len() == wc.len() { max_abs_diff(&wr, &wc) } else { f32::INFINITY },
        max_weight: wr.iter().fold(0f32, |m, v| m.max(v.abs())),
        max_logit_diff: max_abs_diff(&r.3, &c.3),
        logit_range: r.3.iter().fold(0f32, |m, v| m.max(v.abs())),
        parameters: r.1.len(),
    })
}

fn all_values(w: &[(String, Vec<f32>)]) -> Vec<f32> {
    w.iter().flat_map(|(_, v)| v.iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::run_dir::RunState;

    #[test]
    fn flex_against_itself_agrees_exactly_and_a_wrong_gradient_is_refused() {
        let model = UNetConfig::new().with_depth(2).with_base_channels(4);
        let check = compare_training_step(&Device::flex(), &Device::flex(), &model, 32, 2).unwrap();
        assert_eq!(check.size, 32);
        // 3 + 2 levels of two convolutions with BatchNorm, 2 transposed convolutions, the head.
        assert_eq!((check.parameters, check.gradients), (56, 36), "{check:?}");
        assert_eq!(check.max_initial_diff, 0.0);
        assert!(check.loss_reference > 0.0 && check.loss_reference.is_finite());
        assert_eq!(check.loss_reference, check.loss_candidate);
        assert_eq!(check.worst_gradient_rel, 0.0, "{check:?}");
        assert_eq!(check.max_weight_diff, 0.0);
        assert!(check.max_weight > 0.0 && check.logit_range > 0.0);
        assert!(check.agrees(1e-6));
        // What lavapipe did at 256 px: the head's gradient at 0.37x its norm.
        let wrong = StepCheck { worst_gradient_rel: 0.63, ..check.clone() };
        assert!(!wrong.agrees(1e-3));
        let wrong_loss = StepCheck { loss_candidate: check.loss_reference * 1.01, ..check.clone() };
        assert!(!wrong_loss.agrees(1e-3));
        // A check that compared no gradient, or started from other weights, proves nothing.
        assert!(!StepCheck { gradients: 0, ..check.clone() }.agrees(1e-3));
        assert!(!StepCheck { max_initial_diff: 1e-6, ..check }.agrees(1e-3));
    }

    #[test]
    fn hardware_is_recorded_and_old_states_still_read() {
        let hw = device_for(BackendArg::Cpu, 3).unwrap().hardware;
        assert_eq!(hw.backend, "flex");
        assert_eq!(hw.threads, all_cores(), "flex runs on all cores whatever --threads says");
        let tch = Hardware { backend: "tch".into(), device: "Xeon".into(), threads: 2 };
        assert_eq!(tch.to_string(), "Xeon, burn tch, 2 threads");
        let old = r#"{"epoch":3,"step":9,"best_score":null,"best_epoch":null,"best":null,"wall_time_s":1.5}"#;
        let state: RunState = serde_json::from_str(old).unwrap();
        assert_eq!(state.epoch, 3);
        assert!(state.hardware.is_empty());
        assert_eq!(
            crate::export::hardware(&RunState { hardware: vec![tch.clone(), tch], ..state }),
            "Xeon, burn tch, 2 threads; then Xeon, burn tch, 2 threads"
        );
    }

    #[cfg(not(feature = "tch"))]
    #[test]
    fn tch_without_the_feature_says_how_to_build_it() {
        let err = device_for(BackendArg::Tch, 2).unwrap_err();
        assert!(err.to_string().contains("--features tch"), "{err}");
        assert!(err.to_string().contains("fetch-libtorch.sh"), "{err}");
    }
}
