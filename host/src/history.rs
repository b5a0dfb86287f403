//! A run's history, `metrics.csv`: one row per epoch, appended and synced as the epoch ends.

use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One row of `metrics.csv`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub val_disc_dice: f64,
    pub val_cup_dice: f64,
    pub val_vcdr_mae: f64,
    /// Selection score: mean of the two Dice minus the vCDR MAE.
    pub score: f64,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// Appends an epoch's row to `path` (the header first when the file is new) and syncs it.
pub fn append(path: &Path, m: &EpochMetrics) -> io::Result<()> {
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let mut line = String::new();
    if new {
        line += "epoch,lr,train_loss,val_disc_dice,val_cup_dice,val_vcdr_mae,score,seconds,images_per_s\n";
    }
    line += &format!(
        "{},{:.6e},{:.6},{:.6},{:.6},{:.6},{:.6},{:.2},{:.3}\n",
        m.epoch,
        m.lr,
        m.train_loss,
        m.val_disc_dice,
        m.val_cup_dice,
        m.val_vcdr_mae,
        m.score,
        m.seconds,
        m.images_per_s
    );
    f.write_all(line.as_bytes())?;
    f.sync_data()
}

/// Reads `metrics.csv` back (for resume and plotting).
pub fn read(path: &Path) -> Vec<EpochMetrics> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let v: Vec<f64> = l.split(',').map(|x| x.parse().unwrap_or(f64::NAN)).collect();
            (v.len() == 9).then(|| EpochMetrics {
                epoch: v[0] as usize,
                lr: v[1],
                train_loss: v[2],
                val_disc_dice: v[3],
                val_cup_dice: v[4],
                val_vcdr_mae: v[5],
                score: v[6],
                seconds: v[7],
                images_per_s: v[8],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_epochs_read_back_and_a_damaged_row_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        assert!(read(&path).is_empty(), "no file, no history");
        let row = |epoch| EpochMetrics {
            epoch,
            lr: 1.5e-4,
            train_loss: 0.3125,
            val_disc_dice: 0.93,
            val_cup_dice: 0.84,
            val_vcdr_mae: 0.05,
            score: 0.835,
            seconds: 60.25,
            images_per_s: 21.5,
        };
        append(&path, &row(1)).unwrap();
        append(&path, &row(2)).unwrap();
        assert_eq!(read(&path), vec![row(1), row(2)]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("epoch,")).count(), 1, "one header");
        std::fs::write(&path, text + "3,0.1,cut short\n").unwrap();
        assert_eq!(read(&path).len(), 2);
    }
}
