//! `papilla-device bench IMAGE --soak N`: N exams of one photograph through the real service
//! loop (replay source, no lights) into a scratch store, sampling the process's resident
//! memory, open file descriptors, the index's size and the exam time as it goes, so that leaks
//! and slow-downs over a clinic's months show in minutes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use papilla_shared::runtime::Engine;
use serde::Serialize;

use crate::board::{Button, Leds, NoPin};
use crate::camera::ReplaySource;
use crate::clock::SystemClock;
use crate::config::QualityConfig;
use crate::photo::DecodeOptions;
use crate::service::{Service, ServiceOptions};
use crate::store::Store;

/// The process after `exams` exams.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Sample {
    pub exams: usize,
    pub completed: usize,
    /// Resident set size, MiB (VmRSS); `None` off Linux.
    pub rss_mib: Option<f64>,
    /// Open file descriptors; `None` off Linux.
    pub open_fds: Option<usize>,
    /// Bytes of `exams/index.bin`.
    pub index_bytes: u64,
    /// The last exam's time, ms.
    pub exam_ms: f64,
}

/// File descriptors this process holds open now.
pub fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// Runs `exams` exams of `image` into a store under `scratch`, calling `on_sample` after the
/// first exam and then every `every` exams (and after the last).
pub fn run(
    engine: &Engine,
    image: &Path,
    exams: usize,
    every: usize,
    decode: DecodeOptions,
    scratch: &Path,
    mut on_sample: impl FnMut(&Sample),
) -> Result<Vec<Sample>, String> {
    if !image.is_file() {
        return Err(format!("{}: not a readable file", image.display()));
    }
    let mut store = Store::open(scratch, 0).map_err(|e| papilla_shared::error::chain(&e))?;
    let index = scratch.join("exams").join("index.bin");
    let mut source = ReplaySource::new(vec![PathBuf::from(image); exams]);
    let options = ServiceOptions {
        decode,
        quality: QualityConfig::default(),
        refer_vcdr: crate::config::DEFAULT_REFER_VCDR,
        poll: Duration::from_millis(10),
    };
    let mut service = Service {
        engine,
        store: &mut store,
        source: &mut source,
        button: None::<Button<NoPin>>,
        leds: Leds::new([NoPin; 4], false),
        clock: SystemClock::default(),
        stop: Arc::new(AtomicBool::new(false)),
        options,
        media: None,
    };
    let (mut done, mut completed, mut samples) = (0, 0, Vec::new());
    let every = every.max(1);
    service.run(|event| {
        done += 1;
        completed += usize::from(event.outcome == crate::record::Outcome::Completed);
        if done == 1 || done % every == 0 || done == exams {
            let sample = Sample {
                exams: done,
                completed,
                rss_mib: crate::bench::rss_mib(),
                open_fds: open_fds(),
                index_bytes: std::fs::metadata(&index).map(|m| m.len()).unwrap_or(0),
                exam_ms: event.total_ms,
            };
            on_sample(&sample);
            samples.push(sample);
        }
    });
    Ok(samples)
}
