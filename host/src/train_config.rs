//! A run's configuration, `config.json`: model, data, optimiser, loss and schedule.

use burn::config::Config;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig};
use papilla_shared::preprocess::PreprocessConfig;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::loss::LossKind;
use crate::model::{Encoder, UNetConfig};

/// Optimiser family.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    /// SGD with momentum and L2 weight decay (the seed recipe).
    Momentum,
    /// AdamW with decoupled weight decay.
    AdamW,
}

/// A draw count for one training folder's eyes (`--folder-repeat`,
/// `--folder-large-cup-repeat`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FolderRepeat {
    /// A `--data` folder's name (its last path component, as in sample names).
    pub folder: String,
    /// Draws per epoch (see the field that holds it).
    pub times: usize,
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
    /// Seeds the held-out split and, unless `init_seed` is set, everything else.
    #[config(default = 42)]
    pub seed: u64,
    /// Seed of the initial weights, the batch order and the augmentation draws (`None`: `seed`).
    /// Set apart from `seed` so that two runs hold out the same eyes and differ only by chance,
    /// which measures run-to-run noise.
    #[config(default = "None")]
    pub init_seed: Option<u64>,
    /// Keep a numbered checkpoint every N epochs (0 = only best and last).
    #[config(default = 10)]
    pub checkpoint_every: usize,
    /// Each epoch draws the eyes whose true vCDR is at least `large_cup_vcdr` this many times
    /// (1 = every eye once): screening is for them, and REFUGE has few (31 of 400 at 0.6).
    #[config(default = 1)]
    pub large_cup_repeat: usize,
    #[config(default = 0.6)]
    pub large_cup_vcdr: f64,
    /// Folders whose eyes are drawn more than once an epoch (empty = every folder once): a
    /// small camera's eyes weigh more without repeating the others.
    #[config(default = "Vec::new()")]
    pub folder_repeat: Vec<FolderRepeat>,
    /// Folders whose large cups are drawn this many times instead of `large_cup_repeat` (empty =
    /// every folder the same): a camera whose own eyes hold many glaucomatous cups (RIM-ONE DL,
    /// a third) needs less of the prior that REFUGE's tenth needs.
    #[config(default = "Vec::new()")]
    pub folder_large_cup_repeat: Vec<FolderRepeat>,
    /// ImageNet weights the encoder started from (`--pretrained`), if any.
    #[config(default = "None")]
    pub pretrained: Option<String>,
}

impl TrainingConfig {
    /// The seed of the initial weights, the batch order and the augmentation.
    pub fn run_seed(&self) -> u64 {
        self.init_seed.unwrap_or(self.seed)
    }

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

    /// A fresh optimiser of the configured family.
    pub fn optimizer(&self) -> ModuleOptimizer {
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

    /// Parses a run config; fields added after a run was written read as their defaults (burn's
    /// `Config` derive would refuse them as missing).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let mut value: serde_json::Value = serde_json::from_str(text)?;
        if let Some(fields) = value.as_object_mut() {
            fields.entry("loss").or_insert_with(|| serde_json::json!(LossKind::ClassDice));
            fields.entry("cycle_start").or_insert_with(|| serde_json::json!(0));
            fields.entry("large_cup_repeat").or_insert_with(|| serde_json::json!(1));
            fields.entry("large_cup_vcdr").or_insert_with(|| serde_json::json!(0.6));
            fields.entry("folder_repeat").or_insert_with(|| serde_json::json!([]));
            fields.entry("folder_large_cup_repeat").or_insert_with(|| serde_json::json!([]));
            fields.entry("vcdr_weight").or_insert_with(|| serde_json::json!(0.0));
            fields.entry("pretrained").or_insert(serde_json::Value::Null);
            fields.entry("init_seed").or_insert(serde_json::Value::Null);
            if let Some(model) = fields.get_mut("model").and_then(|m| m.as_object_mut()) {
                model.entry("encoder").or_insert_with(|| serde_json::json!(Encoder::Plain));
                model.entry("anti_alias").or_insert(serde_json::Value::Bool(false));
            }
        }
        serde_json::from_value(value)
    }
}

/// A small configuration for tests.
#[cfg(test)]
pub(crate) fn test_config() -> TrainingConfig {
    TrainingConfig::new(
        UNetConfig::new(),
        PreprocessConfig::square(64),
        AugmentConfig::none(),
        vec![],
        vec![],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_then_cosine_to_zero() {
        let c = test_config().with_epochs(20).with_warmup_epochs(2).with_lr(0.01);
        // 10 steps per epoch: warm-up over 20 steps
        assert!((c.lr_at(0, 0, 10) - 0.0005).abs() < 1e-12);
        assert!((c.lr_at(1, 9, 10) - 0.01).abs() < 1e-12);
        assert!((c.lr_at(2, 0, 10) - 0.01).abs() < 1e-12);
        assert!((c.lr_at(11, 0, 10) - 0.005).abs() < 1e-9, "half-way through the cosine");
        assert!(c.lr_at(19, 9, 10) < 1e-5);
    }

    #[test]
    fn a_warm_restart_runs_its_own_warm_up_and_cosine() {
        let c =
            test_config().with_epochs(20).with_warmup_epochs(1).with_lr(0.01).with_cycle_start(10);
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
        let c =
            test_config().with_epochs(54).with_warmup_epochs(1).with_lr(0.001).with_cycle_start(36);
        assert!((c.lr_at(36, 0, 314) - 0.001 / 314.0).abs() < 1e-12, "first warm-up step");
        assert!((c.lr_at(36, 313, 314) - 0.001).abs() < 1e-12, "peak after one epoch");
        let mid = c.lr_at(45, 157, 314);
        assert!(mid > 0.0004 && mid < 0.0006, "about half-way through the cosine: {mid}");
        assert!(c.lr_at(53, 313, 314) < 1e-7);
    }

    #[test]
    fn an_older_config_without_loss_or_cycle_reads_as_the_first_cycle_of_class_dice() {
        let mut v = serde_json::to_value(test_config().with_loss(LossKind::NestedDice)).unwrap();
        let o = v.as_object_mut().unwrap();
        assert!(o.remove("loss").is_some() && o.remove("cycle_start").is_some());
        // Runs written before the encoder could be chosen: a plain UNet, no pretrained weights.
        let lite0 = UNetConfig::new().with_encoder(Encoder::EfficientNetLite0);
        o.insert("model".into(), serde_json::to_value(lite0).unwrap());
        let model = o["model"].as_object_mut().unwrap();
        assert!(model.remove("encoder").is_some() && model.remove("anti_alias").is_some());
        o.insert("pretrained".into(), serde_json::json!("x.safetensors"));
        assert!(o.remove("pretrained").is_some());
        // Runs written before --init-seed: everything seeded by `seed`, as they were trained.
        assert!(o.remove("init_seed").is_some());
        let back = TrainingConfig::from_json(&v.to_string()).unwrap();
        assert_eq!((back.init_seed, back.run_seed()), (None, back.seed));
        assert_eq!((back.loss, back.cycle_start), (LossKind::ClassDice, 0));
        assert_eq!((back.model.encoder, back.pretrained), (Encoder::Plain, None));
        assert!(!back.model.anti_alias);
    }

    #[test]
    fn the_init_seed_replaces_the_seed_for_everything_but_the_split() {
        let c = test_config().with_seed(42);
        assert_eq!(c.run_seed(), 42);
        let c = c.with_init_seed(Some(7));
        assert_eq!((c.seed, c.run_seed()), (42, 7));
        let back = TrainingConfig::from_json(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!((back.seed, back.init_seed), (42, Some(7)));
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = test_config().with_ce_weight(0.5).with_optimizer(OptimizerKind::AdamW);
        let text = serde_json::to_string(&c).unwrap();
        let back: TrainingConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back.ce_weight, 0.5);
        assert_eq!(back.optimizer, OptimizerKind::AdamW);
        assert_eq!(back.model, c.model);
        assert_eq!(back.preprocess, c.preprocess);
    }
}
