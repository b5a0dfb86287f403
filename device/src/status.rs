//! `papilla-device status` for a person: today's exams, refusals by reason, how many days the
//! storage lasts at today's rate, and the last error with what to do about it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::record::{IndexEntry, Outcome};

const DAY_MS: i64 = 86_400_000;

/// Counts of one set of exams.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub completed: usize,
    pub refused: usize,
    pub failed: usize,
    /// Refusals by reason (the quality gate's words before any figures).
    pub refused_by_reason: BTreeMap<String, usize>,
}

impl Counts {
    fn of<'a>(entries: impl Iterator<Item = &'a IndexEntry>) -> Self {
        let mut c = Counts::default();
        for e in entries {
            match &e.outcome {
                Outcome::Completed => c.completed += 1,
                Outcome::Refused(r) => {
                    c.refused += 1;
                    *c.refused_by_reason.entry(reason_kind(r).to_owned()).or_default() += 1;
                }
                Outcome::Failed(_) => c.failed += 1,
            }
        }
        c
    }

    pub fn total(&self) -> usize {
        self.completed + self.refused + self.failed
    }
}

/// "underexposed: brightness 20 < 40" -> "underexposed".
pub fn reason_kind(reason: &str) -> &str {
    reason.split(':').next().unwrap_or(reason).trim()
}

/// The last failed exam and what a technician can do about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LastError {
    pub id: u64,
    pub time: String,
    pub source: String,
    pub error: String,
    pub advice: &'static str,
}

/// What to do about a failed exam, from its error's words.
pub fn advice(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if e.contains("disk full") || e.contains("no space") || e.contains("not stored") {
        "storage: copy the results off (papilla-device export-results) and free space on the card"
    } else if e.contains("capture") || e.contains("camera") {
        "camera: check its cable or the folder it writes to, then take the photograph again"
    } else if e.contains("model") || e.contains("bundle") || e.contains("engine") {
        "model: run papilla-device selftest; reinstall or roll back the model if it fails"
    } else if e.contains("decode")
        || e.contains("empty file")
        || e.contains("truncated")
        || e.contains("not a")
        || e.contains("too large")
        || e.contains("unsupported")
    {
        "photograph: the file is not a usable colour JPEG or PNG; check the camera's format \
         setting and take it again"
    } else {
        "see the service log (journalctl -u papilla-device) for the full error"
    }
}

/// The exam part of the status.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExamStatus {
    /// Since 00:00 UTC today.
    pub today: Counts,
    pub total: Counts,
    pub last_completed: Option<String>,
    pub last_error: Option<LastError>,
}

/// How long the storage lasts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StorageStatus {
    pub free_mb: u64,
    /// Space the service keeps free (`min_free_mb`): exams stop when only this is left.
    pub reserve_mb: u64,
    /// The mean size of a stored exam (its folder), from the newest ones.
    pub mb_per_exam: Option<f64>,
    /// At today's rate of completed exams; none before the first one today.
    pub days_left: Option<f64>,
}

/// Summarises the index at `now_ms`.
pub fn exams(entries: &[IndexEntry], now_ms: i64) -> ExamStatus {
    let midnight = now_ms - now_ms.rem_euclid(DAY_MS);
    let last_error = entries.iter().rev().find_map(|e| match &e.outcome {
        Outcome::Failed(error) => Some(LastError {
            id: e.id,
            time: crate::exam::iso8601(e.unix_ms),
            source: e.source.clone(),
            error: error.clone(),
            advice: advice(error),
        }),
        _ => None,
    });
    ExamStatus {
        today: Counts::of(entries.iter().filter(|e| e.unix_ms >= midnight)),
        total: Counts::of(entries.iter()),
        last_completed: entries
            .iter()
            .rev()
            .find(|e| e.outcome == Outcome::Completed)
            .map(|e| crate::exam::iso8601(e.unix_ms)),
        last_error,
    }
}

/// Days of storage left: `free - reserve` over today's completed exams times their size.
pub fn storage(
    free_bytes: u64,
    reserve_bytes: u64,
    bytes_per_exam: Option<f64>,
    today: &Counts,
) -> StorageStatus {
    let usable = free_bytes.saturating_sub(reserve_bytes) as f64;
    let days_left = bytes_per_exam
        .filter(|b| *b > 0.0 && today.completed > 0)
        .map(|b| usable / (b * today.completed as f64));
    StorageStatus {
        free_mb: free_bytes >> 20,
        reserve_mb: reserve_bytes >> 20,
        mb_per_exam: bytes_per_exam.map(|b| b / (1u64 << 20) as f64),
        days_left,
    }
}

/// The mean size of the newest `n` completed exams' folders under `exams_dir`.
pub fn bytes_per_exam(exams_dir: &Path, entries: &[IndexEntry], n: usize) -> Option<f64> {
    let sizes: Vec<u64> = entries
        .iter()
        .rev()
        .filter(|e| e.outcome == Outcome::Completed)
        .take(n)
        .filter_map(|e| {
            let dir = exams_dir.join(format!("{:08}", e.id));
            let files = std::fs::read_dir(dir).ok()?;
            Some(files.filter_map(|f| f.ok()?.metadata().ok()).map(|m| m.len()).sum())
        })
        .collect();
    (!sizes.is_empty()).then(|| sizes.iter().sum::<u64>() as f64 / sizes.len() as f64)
}

fn counts_line(c: &Counts) -> String {
    let mut s = format!(
        "{} ({} completed, {} refused, {} failed)",
        c.total(),
        c.completed,
        c.refused,
        c.failed
    );
    if !c.refused_by_reason.is_empty() {
        let reasons: Vec<String> =
            c.refused_by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
        s += &format!("; refused: {}", reasons.join(", "));
    }
    s
}

/// The exam and storage lines of the human summary.
pub fn human(exams: &ExamStatus, storage: Option<&StorageStatus>) -> String {
    let mut out = format!("exams today: {}\n", counts_line(&exams.today));
    out += &format!("exams in all: {}\n", counts_line(&exams.total));
    out += &format!("last exam: {}\n", exams.last_completed.as_deref().unwrap_or("never"));
    match storage {
        Some(s) => {
            let days = match s.days_left {
                Some(d) if d >= 999.0 => "more than 999 days at today's rate".to_owned(),
                Some(d) => format!("about {d:.0} days at today's rate"),
                None => "days left unknown until an exam is stored today".to_owned(),
            };
            let per = s.mb_per_exam.map(|m| format!(", {m:.1} MB an exam")).unwrap_or_default();
            out += &format!(
                "storage: {} MB free ({} MB kept in reserve){per}; {days}\n",
                s.free_mb, s.reserve_mb
            );
        }
        None => out += "storage: free space unknown\n",
    }
    match &exams.last_error {
        Some(e) => {
            out +=
                &format!("last error: exam {} at {} ({}): {}\n", e.id, e.time, e.source, e.error);
            out += &format!("  what to do: {}\n", e.advice);
        }
        None => out += "last error: none\n",
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, unix_ms: i64, outcome: Outcome) -> IndexEntry {
        IndexEntry {
            id,
            unix_ms,
            source: format!("p{id}.jpg"),
            outcome,
            vcdr: 0.4,
            disc_area_px: 1,
            cup_area_px: 1,
            refer: false,
            model: "m 1".into(),
        }
    }

    #[test]
    fn today_refusals_by_reason_days_left_and_the_last_error() {
        let now = 20_000 * DAY_MS + 10 * 3_600_000; // 10:00 UTC
        let yesterday = now - DAY_MS;
        let entries = vec![
            entry(1, yesterday, Outcome::Completed),
            entry(2, yesterday, Outcome::Failed("capture failed: no frame".into())),
            entry(3, now - 3_600_000, Outcome::Completed),
            entry(
                4,
                now - 3_000_000,
                Outcome::Refused("out of focus: sharpness 0.10 < 0.50".into()),
            ),
            entry(
                5,
                now - 2_000_000,
                Outcome::Refused("out of focus: sharpness 0.20 < 0.50".into()),
            ),
            entry(6, now - 1_000_000, Outcome::Refused("no optic disc found".into())),
            entry(7, now - 500_000, Outcome::Completed),
        ];
        let e = exams(&entries, now);
        assert_eq!((e.today.completed, e.today.refused, e.today.failed), (2, 3, 0));
        assert_eq!(e.today.refused_by_reason["out of focus"], 2);
        assert_eq!(e.today.refused_by_reason["no optic disc found"], 1);
        assert_eq!((e.total.total(), e.total.failed), (7, 1));
        let last = e.last_error.clone().unwrap();
        assert_eq!((last.id, last.source.as_str()), (2, "p2.jpg"));
        assert!(last.advice.starts_with("camera"), "{}", last.advice);
        // 1 GB free, 100 MB reserved, 2 MB an exam, 2 today: 924 MB / 4 MB = 231 days.
        let s = storage(1024 << 20, 100 << 20, Some(2.0 * (1u64 << 20) as f64), &e.today);
        assert_eq!((s.free_mb, s.reserve_mb), (1024, 100));
        assert!((s.days_left.unwrap() - 231.0).abs() < 1e-9, "{s:?}");
        let text = human(&e, Some(&s));
        assert!(text.contains("exams today: 5 (2 completed, 3 refused, 0 failed); refused: no optic disc found 1, out of focus 2"), "{text}");
        assert!(text.contains("about 231 days at today's rate"), "{text}");
        assert!(
            text.contains("last error: exam 2 at ") && text.contains("what to do: camera"),
            "{text}"
        );
        // No exam today: no rate to project.
        let quiet = exams(&entries[..2], now);
        assert_eq!(storage(1 << 30, 0, Some(1.0), &quiet.today).days_left, None);
    }

    #[test]
    fn advice_follows_the_error() {
        assert!(advice("not stored: disk full: 10 MB free").starts_with("storage"));
        assert!(advice("b.jpg: empty file").starts_with("photograph"));
        assert!(advice("model self-test failed").starts_with("model"));
        assert!(advice("something new").contains("journalctl"));
        assert_eq!(reason_kind("underexposed: brightness 20 < 40"), "underexposed");
    }
}
