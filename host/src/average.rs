//! Weight averaging of a run's last epochs (`papilla average`): the float tensors of several
//! checkpoints of one training trajectory averaged into a new run, which `papilla train
//! --resume --restart-lr 0` then gives BatchNorm statistics of its own (at learning rate 0
//! only the running means and variances move). Model 0.8.1 is lite0h's epochs 9-12 averaged
//! that way; checkpoints of different runs do not average (MODEL_CARD.md).

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};
use thiserror::Error;

use crate::model::UNet;
use crate::run_dir::{
    CONFIG_FILE, HELD_OUT_FILE, LAST_OPTIM, METRICS_FILE, RunDir, RunDirError, STATE_FILE,
    load_model,
};

#[derive(Debug, Error)]
pub enum AverageError {
    #[error(transparent)]
    Run(#[from] RunDirError),
    #[error("{}: no completed epoch to average", .0.display())]
    NoEpochs(PathBuf),
    #[error("{}: --last {last}, but the run has {epochs} completed epochs; average 1 to {epochs} of them", run.display())]
    Count { run: PathBuf, last: usize, epochs: usize },
    #[error(
        "{}: no checkpoint of epoch {epoch} (train with --checkpoint-every 1 to keep every epoch's)",
        path.display()
    )]
    Missing { path: PathBuf, epoch: usize },
    #[error("{}: already holds a run; averaging writes a new one", .0.display())]
    OutExists(PathBuf),
    #[error("{}: {message}", path.display())]
    Mismatch { path: PathBuf, message: String },
}

/// What [`average_last`] wrote.
#[derive(Debug)]
pub struct Averaged {
    pub epochs: Vec<usize>,
    pub tensors: usize,
    pub values: usize,
}

/// Averages the last `last` epoch checkpoints of `run` (its `model-epoch-NNNN.bpk`) into a new
/// run `out`: the average as `model-last.bpk` and `model-best.bpk`, with `run`'s config, state,
/// metrics, held-out list and optimiser state, so `train --resume` continues from it.
pub fn average_last(
    run: &Path,
    last: usize,
    out: &Path,
    device: &Device,
) -> Result<Averaged, AverageError> {
    let src = RunDir::new(run);
    let config = src.config()?;
    let epochs = src.completed_epochs()?;
    if epochs == 0 {
        return Err(AverageError::NoEpochs(run.to_owned()));
    }
    if last == 0 || last > epochs {
        return Err(AverageError::Count { run: run.to_owned(), last, epochs });
    }
    let dst = RunDir::new(out);
    if dst.has_config() {
        return Err(AverageError::OutExists(out.to_owned()));
    }
    let chosen: Vec<usize> = (epochs + 1 - last..=epochs).collect();
    let paths: Vec<PathBuf> = chosen.iter().map(|e| src.epoch_checkpoint(*e)).collect();
    for (path, epoch) in paths.iter().zip(&chosen) {
        if !path.is_file() {
            return Err(AverageError::Missing { path: path.clone(), epoch: *epoch });
        }
    }
    let mut sum: Vec<(String, Vec<f64>)> = Vec::new();
    let mut first = None;
    for path in &paths {
        let model = load_model(&config.model, path, device)?;
        let tensors = floats(&model)
            .map_err(|message| AverageError::Mismatch { path: path.clone(), message })?;
        if sum.is_empty() {
            sum = tensors
                .into_iter()
                .map(|(n, v)| (n, v.into_iter().map(f64::from).collect()))
                .collect();
            first = Some(model);
            continue;
        }
        if tensors.len() != sum.len() {
            return Err(AverageError::Mismatch {
                path: path.clone(),
                message: format!(
                    "{} float tensors, the first checkpoint {}",
                    tensors.len(),
                    sum.len()
                ),
            });
        }
        for ((name, acc), (n, v)) in sum.iter_mut().zip(tensors) {
            if *name != n || acc.len() != v.len() {
                return Err(AverageError::Mismatch {
                    path: path.clone(),
                    message: format!(
                        "tensor {n} ({} values) against {name} ({})",
                        v.len(),
                        acc.len()
                    ),
                });
            }
            acc.iter_mut().zip(v).for_each(|(a, x)| *a += f64::from(x));
        }
    }
    let n = paths.len() as f64;
    let means: Vec<Vec<f32>> =
        sum.into_iter().map(|(_, v)| v.into_iter().map(|x| (x / n) as f32).collect()).collect();
    let values = means.iter().map(Vec::len).sum();
    let tensors = means.len();
    let model = first.expect("at least one checkpoint").map(&mut Replace { means, next: 0 });

    dst.create()?;
    for name in [CONFIG_FILE, STATE_FILE, METRICS_FILE, HELD_OUT_FILE, LAST_OPTIM] {
        dst.copy_from(&src, name)?;
    }
    dst.save_last_model(&model)?;
    dst.save_best(&model)?;
    Ok(Averaged { epochs: chosen, tensors, values })
}

/// Named float tensors, in visiting order.
type Floats = Vec<(String, Vec<f32>)>;

/// Every float tensor of a model (parameters and BatchNorm statistics), in visiting order.
fn floats(model: &UNet) -> Result<Floats, String> {
    crate::backend::collect(model, None).map_err(|e| e.to_string())
}

/// Puts the averages back, in the same visiting order.
struct Replace {
    means: Vec<Vec<f32>>,
    next: usize,
}

impl ModuleMapper for Replace {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let values = std::mem::take(&mut self.means[self.next]);
        self.next += 1;
        param.map(|t| {
            let data = TensorData::new(values, t.shape());
            Tensor::from_data(data, &t.device())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UNetConfig;
    use crate::run_dir::RunState;
    use crate::train_config::test_config;

    /// A run of two epochs whose checkpoints are two differently initialised small UNets.
    fn run_with_two_epochs(dir: &Path) -> (Floats, Floats) {
        let device = Device::flex();
        let mut config = test_config();
        config.model = UNetConfig::new().with_base_channels(4).with_depth(2);
        let run = RunDir::new(dir);
        run.create().unwrap();
        run.save_config(&config).unwrap();
        run.save_state(&RunState { epoch: 2, ..RunState::default() }).unwrap();
        let a = config.model.init(&device);
        let b = config.model.init(&device);
        run.save_numbered(&a, 1).unwrap();
        run.save_numbered(&b, 2).unwrap();
        (floats(&a).unwrap(), floats(&b).unwrap())
    }

    #[test]
    fn the_average_of_two_epochs_is_their_mean_tensor_by_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = run_with_two_epochs(&dir.path().join("run"));
        let out = dir.path().join("avg");
        let done = average_last(&dir.path().join("run"), 2, &out, &Device::flex()).unwrap();
        assert_eq!(done.epochs, vec![1, 2]);
        assert_eq!(done.tensors, a.len());
        let config = RunDir::new(&out).config().unwrap();
        let avg = floats(
            &load_model(&config.model, &out.join("model-best.bpk"), &Device::flex()).unwrap(),
        )
        .unwrap();
        let mut differing = 0;
        for (((name, x), (_, y)), (_, m)) in a.iter().zip(&b).zip(&avg) {
            for ((x, y), m) in x.iter().zip(y).zip(m) {
                assert!(
                    (m - (x + y) / 2.0).abs() <= 1e-6,
                    "{name}: {m} is not the mean of {x} and {y}"
                );
                differing += usize::from(x != y);
            }
        }
        assert!(differing > 100, "the two checkpoints must differ for the test to mean anything");
        assert!(out.join("model-last.bpk").is_file() && out.join("state.json").is_file());
        assert_eq!(RunDir::new(&out).completed_epochs().unwrap(), 2, "resumes where the run ended");
        // A second average into the same folder is refused: nothing is overwritten.
        let again = average_last(&dir.path().join("run"), 1, &out, &Device::flex()).unwrap_err();
        assert!(matches!(again, AverageError::OutExists(_)), "{again}");
    }

    #[test]
    fn a_missing_epoch_or_too_many_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        run_with_two_epochs(&run);
        let e = average_last(&run, 3, &dir.path().join("o1"), &Device::flex()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: --last 3, but the run has 2 completed epochs; average 1 to 2 of them",
                run.display()
            )
        );
        std::fs::remove_file(run.join("model-epoch-0001.bpk")).unwrap();
        let e = average_last(&run, 2, &dir.path().join("o2"), &Device::flex()).unwrap_err();
        assert!(e.to_string().contains("model-epoch-0001.bpk: no checkpoint of epoch 1"), "{e}");
        assert!(!dir.path().join("o2").exists(), "nothing written on a refusal");
    }
}
