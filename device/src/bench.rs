//! `papilla-device bench IMAGE`: where the time of an exam goes on this machine, stage by
//! stage, and the process's peak resident memory. Each run is a whole exam, stored into a
//! scratch store, so the figures are what the service spends.

use std::path::Path;
use std::time::Instant;

use papilla_shared::error::chain;
use papilla_shared::runtime::{Engine, Framing};
use serde::Serialize;

use crate::camera::Frame;
use crate::exam::ExamOptions;
use crate::photo::{DecodeOptions, decode};
use crate::record::Times;
use crate::store::Store;

/// Median and minimum of one stage over the runs.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub stage: &'static str,
    pub median_ms: f64,
    pub min_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub decoded_width: u32,
    pub decoded_height: u32,
    pub runs: usize,
    pub threads: usize,
    pub rows: Vec<Row>,
    /// Decoding the same JPEG at full size, for comparison (not part of the exam).
    pub full_decode_ms: f64,
    /// Peak resident set size of the process over the exams (VmHWM), MiB; `None` off Linux.
    pub peak_rss_mib: Option<f64>,
}

fn stats(stage: &'static str, mut v: Vec<f64>) -> Row {
    v.sort_by(f64::total_cmp);
    Row { stage, median_ms: v[v.len() / 2], min_ms: v[0] }
}

/// Peak resident memory of this process, from /proc/self/status.
pub fn peak_rss_mib() -> Option<f64> {
    proc_status_mib("VmHWM:")
}

/// Resident memory of this process now, MiB.
pub fn rss_mib() -> Option<f64> {
    proc_status_mib("VmRSS:")
}

/// A kB field of /proc/self/status (Linux only), in MiB.
fn proc_status_mib(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs `runs` whole exams of `image` (after one warm-up) into a scratch store under `scratch`,
/// calling `done` after each exam (the warm-up included: `runs + 1` calls).
pub fn run(
    engine: &Engine,
    image: &Path,
    runs: usize,
    threads: usize,
    opts: &DecodeOptions,
    scratch: &Path,
    done: &dyn Fn(),
) -> Result<Report, String> {
    let bytes = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let frame = Frame::File { name: image.to_owned(), bytes: bytes.clone() };
    let mut store = Store::open(scratch, 0).map_err(|e| chain(&e))?;
    let mut all: Vec<Times> = Vec::new();
    let mut dims = ((0, 0), (0, 0));
    let exam = ExamOptions {
        decode: *opts,
        framing: Framing::Fundus,
        refer_vcdr: crate::config::DEFAULT_REFER_VCDR,
        gate: None,
    };
    for i in 0..=runs {
        // The service's exam and store, record included; only the gate is left out, so a
        // photograph it would refuse is still timed.
        let out = crate::exam::run(engine, &frame, &exam).map_err(|e| chain(&e))?;
        let t = Instant::now();
        let mut record = out.record(store.next_id(), crate::exam::now_unix_ms(), "bench");
        let json = record.to_json();
        store.commit(&record.index_entry(), &out.files(&json)).map_err(|e| chain(&e))?;
        record.findings.times.store_ms = t.elapsed().as_secs_f64() * 1e3;
        if i > 0 {
            all.push(record.findings.times);
        }
        let f = &record.findings;
        dims = ((f.width, f.height), (f.decoded_width, f.decoded_height));
        done();
    }
    // Read before the comparison below, whose full-size pixels are no part of an exam.
    let peak_rss_mib = peak_rss_mib();
    let mut full = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        decode(&bytes, image, &DecodeOptions { min_side: 0, ..*opts })
            .map_err(|e| format!("{}: {e}", image.display()))?;
        full.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let col = |f: fn(&Times) -> f64| all.iter().map(f).collect::<Vec<_>>();
    let rows = vec![
        stats("decode", col(|t| t.decode_ms)),
        stats("quality gate", col(|t| t.quality_ms)),
        stats("preprocess", col(|t| t.preprocess_ms)),
        stats("inference", col(|t| t.inference_ms)),
        stats("post-process", col(|t| t.postprocess_ms)),
        stats("encode mask+overlay", col(|t| t.encode_ms)),
        stats("store (fsync)", col(|t| t.store_ms)),
        stats("whole exam", col(Times::total_ms)),
    ];
    Ok(Report {
        image: image.display().to_string(),
        width: dims.0.0,
        height: dims.0.1,
        decoded_width: dims.1.0,
        decoded_height: dims.1.1,
        runs,
        threads,
        rows,
        full_decode_ms: stats("", full).median_ms,
        peak_rss_mib,
    })
}

/// The report as a Markdown table.
pub fn table(r: &Report) -> String {
    let mut s = format!(
        "{} ({}x{}, decoded at {}x{}), {} runs, {} thread(s)\n\n| stage | median ms | min ms |\n|---|---:|---:|\n",
        r.image, r.width, r.height, r.decoded_width, r.decoded_height, r.runs, r.threads
    );
    for row in &r.rows {
        s += &format!("| {} | {:.1} | {:.1} |\n", row.stage, row.median_ms, row.min_ms);
    }
    s += &format!("\nfor comparison, decoding at full size: {:.1} ms\n", r.full_decode_ms);
    match r.peak_rss_mib {
        Some(m) => s += &format!("peak RSS: {m:.1} MiB\n"),
        None => s += "peak RSS: not available on this system\n",
    }
    s
}
