//! A training run's directory: what it holds (config, state, checkpoints, history, curves,
//! page) and how each file is read and written, in one place. Every file is replaced through a
//! temporary file and a rename, and the state goes last, so a crash leaves the previous
//! consistent checkpoint.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use papilla_shared::files::{self, Durability};
use papilla_shared::metrics::Summary;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::backend::{BackendArg, Hardware};
use crate::history::{self, EpochMetrics};
use crate::model::{UNet, UNetConfig};
use crate::train_config::TrainingConfig;

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
/// The eyes the run validated on and never trained on, one sample name
/// (`<data folder name>/<stem>`) a line: `evaluate --held-out-of` reads them rather than
/// drawing the seeded split again, which changes when a data folder gains or loses a photograph
/// and needs every photograph decoded. Absent in runs written before it was recorded.
pub const HELD_OUT_FILE: &str = "held-out.txt";

#[derive(Debug, Error)]
pub enum RunDirError {
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
}

fn io_err(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> RunDirError {
    let path = path.to_owned();
    move |source| RunDirError::Io { path, what, source }
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

/// A run directory; nothing is read or created until asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of one of the run's files (one of the `*_FILE`, `*_MODEL` names).
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The run's name: its folder's.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }

    pub fn create(&self) -> Result<(), RunDirError> {
        std::fs::create_dir_all(&self.path)
            .map_err(io_err(&self.path, "cannot create the run directory"))
    }

    /// Whether a run was started here: what `--resume` continues.
    pub fn has_config(&self) -> bool {
        self.file(CONFIG_FILE).is_file()
    }

    /// The run's `config.json`; fields added after the run was written read as their
    /// defaults.
    pub fn config(&self) -> Result<TrainingConfig, RunDirError> {
        let path = self.file(CONFIG_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(io_err(&path, "cannot read the run config"))?;
        TrainingConfig::from_json(&text)
            .map_err(|e| RunDirError::Config { path, message: e.to_string() })
    }

    pub fn save_config(&self, config: &TrainingConfig) -> Result<(), RunDirError> {
        self.save_json(CONFIG_FILE, config)
    }

    /// The run's `state.json`; `None` before its first checkpoint.
    pub fn state(&self) -> Result<Option<RunState>, RunDirError> {
        let path = self.file(STATE_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(io_err(&path, "cannot read"))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| RunDirError::Config { path, message: e.to_string() })
    }

    pub fn save_state(&self, state: &RunState) -> Result<(), RunDirError> {
        self.save_json(STATE_FILE, state)
    }

    /// Epochs the run has completed (0 before its first).
    pub fn completed_epochs(&self) -> Result<usize, RunDirError> {
        Ok(self.state()?.map_or(0, |s| s.epoch))
    }

    /// The backend the run last trained on (`None`: no state yet, or a run written before the
    /// backend was recorded).
    pub fn last_backend(&self) -> Result<Option<BackendArg>, RunDirError> {
        let state = self.state()?;
        Ok(state
            .and_then(|s| s.hardware.last().cloned())
            .and_then(|h| BackendArg::from_burn_name(&h.backend)))
    }

    /// The checkpoint inference uses: the best, else the last; `None` without either.
    pub fn checkpoint(&self) -> Option<PathBuf> {
        [BEST_MODEL, LAST_MODEL].iter().map(|f| self.file(f)).find(|p| p.is_file())
    }

    /// The last checkpoint's model and optimiser, to resume from.
    pub fn load_last(
        &self,
        config: &TrainingConfig,
        device: &Device,
    ) -> Result<(UNet, ModuleOptimizer), RunDirError> {
        let model = load_model(&config.model, &self.file(LAST_MODEL), device)?;
        let path = self.file(LAST_OPTIM);
        let optim = config
            .optimizer()
            .load(&path)
            .map_err(|e| RunDirError::Checkpoint { path, message: e.to_string() })?;
        Ok((model, optim))
    }

    /// Saves `model` as the best so far.
    pub fn save_best(&self, model: &UNet) -> Result<(), RunDirError> {
        save_model(model, &self.file(BEST_MODEL))
    }

    /// Copies `name` (one of the `*_FILE`, `*_MODEL` names) from the run `src`, if it has one.
    pub fn copy_from(&self, src: &RunDir, name: &str) -> Result<(), RunDirError> {
        let from = src.file(name);
        if from.is_file() {
            let to = self.file(name);
            std::fs::copy(&from, &to).map_err(io_err(&to, "cannot write"))?;
        }
        Ok(())
    }

    /// Saves `model` as the last checkpoint's model (what `--resume` continues from).
    pub fn save_last_model(&self, model: &UNet) -> Result<(), RunDirError> {
        save_model(model, &self.file(LAST_MODEL))
    }

    /// The numbered checkpoint of `epoch` (`--checkpoint-every`).
    pub fn epoch_checkpoint(&self, epoch: usize) -> PathBuf {
        self.file(&format!("model-epoch-{epoch:04}.bpk"))
    }

    /// Keeps `model` as the numbered checkpoint of `epoch`.
    pub fn save_numbered(&self, model: &UNet, epoch: usize) -> Result<(), RunDirError> {
        save_model(model, &self.epoch_checkpoint(epoch))
    }

    /// Saves model, optimiser and state; the state goes last, so a crash in between leaves
    /// the previous consistent checkpoint (a resumed run repeats at most one epoch).
    pub fn save_checkpoint(
        &self,
        model: &UNet,
        optim: &ModuleOptimizer,
        state: &RunState,
    ) -> Result<(), RunDirError> {
        save_model(model, &self.file(LAST_MODEL))?;
        let path = self.file(LAST_OPTIM);
        let tmp = files::temp_path(&path);
        optim
            .save(&tmp)
            .map_err(|e| RunDirError::Checkpoint { path: tmp.clone(), message: e.to_string() })?;
        files::commit(&tmp, &path, Durability::Atomic).map_err(io_err(&path, "cannot replace"))?;
        self.save_state(state)
    }

    /// The epochs of `metrics.csv` (none when it is missing).
    pub fn history(&self) -> Vec<EpochMetrics> {
        history::read(&self.file(METRICS_FILE))
    }

    /// Starts the history afresh (a run started again from epoch 0).
    pub fn clear_history(&self) -> Result<(), RunDirError> {
        let path = self.file(METRICS_FILE);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err(&path, "cannot remove")(e))
            }
            _ => Ok(()),
        }
    }

    pub fn append_history(&self, m: &EpochMetrics) -> Result<(), RunDirError> {
        let path = self.file(METRICS_FILE);
        history::append(&path, m).map_err(io_err(&path, "cannot append"))
    }

    /// Replaces the run's page.
    pub fn write_page(&self, html: &str) -> Result<(), RunDirError> {
        let path = self.file(RUN_PAGE);
        files::write_atomic(&path, html.as_bytes(), Durability::Atomic)
            .map_err(io_err(&path, "cannot write"))
    }

    /// The run's held-out eye names ([`HELD_OUT_FILE`]); `None` when it has none recorded.
    pub fn held_out(&self) -> Result<Option<Vec<String>>, RunDirError> {
        let path = self.file(HELD_OUT_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .map_err(io_err(&path, "cannot read the held-out eyes"))?;
        Ok(Some(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()))
    }

    pub fn save_held_out(&self, names: &[String]) -> Result<(), RunDirError> {
        let path = self.file(HELD_OUT_FILE);
        let text: String = names.iter().map(|n| format!("{n}\n")).collect();
        files::write_atomic(&path, text.as_bytes(), Durability::Atomic)
            .map_err(io_err(&path, "cannot write"))
    }

    fn save_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), RunDirError> {
        let path = self.file(name);
        let text = serde_json::to_string_pretty(value).expect("plain data serialises");
        files::write_atomic(&path, text.as_bytes(), Durability::Atomic)
            .map_err(io_err(&path, "cannot write"))
    }
}

fn save_model(model: &UNet, path: &Path) -> Result<(), RunDirError> {
    let tmp = files::temp_path(path);
    model
        .clone()
        .save_file(&tmp)
        .map_err(|e| RunDirError::Checkpoint { path: tmp.clone(), message: e.to_string() })?;
    files::commit(&tmp, path, Durability::Atomic).map_err(io_err(path, "cannot replace"))
}

/// Loads a checkpoint into a freshly built model.
pub fn load_model(config: &UNetConfig, path: &Path, device: &Device) -> Result<UNet, RunDirError> {
    config
        .init(device)
        .try_load_file(path)
        .map_err(|e| RunDirError::Checkpoint { path: path.to_owned(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_keeps_the_backend_it_last_trained_on() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RunDir::new(dir.path()).last_backend().unwrap(), None, "no state yet");
        let hw = |b: &str| Hardware { backend: b.into(), device: "cpu".into(), threads: 2 };
        let mut state = RunState { epoch: 3, ..RunState::default() };
        RunDir::new(dir.path()).save_state(&state).unwrap();
        assert_eq!(
            RunDir::new(dir.path()).last_backend().unwrap(),
            None,
            "written before it was recorded"
        );
        state.hardware = vec![hw("flex"), hw("tch")];
        RunDir::new(dir.path()).save_state(&state).unwrap();
        assert_eq!(RunDir::new(dir.path()).last_backend().unwrap(), Some(BackendArg::Tch));
        std::fs::write(dir.path().join(STATE_FILE), "{").unwrap();
        assert!(
            RunDir::new(dir.path()).last_backend().is_err(),
            "a damaged state is an error, not flex"
        );
    }

    #[test]
    fn an_empty_folder_is_a_run_not_yet_started() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("seg"));
        assert!(!run.has_config());
        assert_eq!(run.state().unwrap(), None);
        assert_eq!(run.completed_epochs().unwrap(), 0);
        assert_eq!(run.checkpoint(), None);
        assert!(run.history().is_empty());
        run.clear_history().unwrap();
        assert!(run.config().is_err(), "no config to read");
        run.create().unwrap();
        run.save_state(&RunState { epoch: 7, ..RunState::default() }).unwrap();
        assert_eq!(run.completed_epochs().unwrap(), 7);
        std::fs::write(run.file(LAST_MODEL), b"").unwrap();
        assert_eq!(run.checkpoint(), Some(run.file(LAST_MODEL)));
        std::fs::write(run.file(BEST_MODEL), b"").unwrap();
        assert_eq!(run.checkpoint(), Some(run.file(BEST_MODEL)), "the best wins");
        assert_eq!(run.name(), "seg");
    }
}
