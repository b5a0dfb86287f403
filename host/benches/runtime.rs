//! Inference speed of exported UNets, side by side: tract f32 and every int8 form Papilla
//! writes, then onnxruntime on the very same ONNX files, at 1 and 2 threads (ms per image,
//! median). Run with `cargo bench -p papilla-host --bench runtime`; onnxruntime columns need
//! `pip install -r scripts/requirements-test.txt`, else they read n/a. Weights are random
//! (speed does not depend on them); calibration uses synthetic photographs.
//! `PAPILLA_BENCH_QUICK=1` benches 128 px only.

use std::process::Command;
use std::time::{Duration, Instant};

use burn::tensor::Device;
use papilla_host::export::{CalibMethod, calibrate};
use papilla_host::model::UNetConfig;
use papilla_host::onnx::{self, ActType, Form, GraphOptions, WeightScales};
use papilla_shared::preprocess::{PreprocessConfig, Tensor4, preprocess};
use papilla_shared::runtime::{Graph, executor};
use papilla_shared::synth::{SynthParams, generate};

/// Median ms of `f`, at least 3 runs and about `budget` of time after 1 warm-up run.
fn median_ms(mut f: impl FnMut(), budget: Duration) -> f64 {
    f();
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (start.elapsed() < budget && times.len() < 25) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn ort_ms(path: &std::path::Path, threads: usize, size: usize) -> String {
    let python = std::env::var("PAPILLA_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/ort_bench.py");
    let s = size.to_string();
    match Command::new(python)
        .arg(script)
        .arg(path)
        .args([&threads.to_string(), "10", "1", "3", &s, &s])
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => "n/a".into(),
    }
}

fn main() {
    let quick = std::env::var_os("PAPILLA_BENCH_QUICK").is_some();
    let sizes: &[usize] = if quick { &[128] } else { &[128, 192, 256] };
    let dir = std::env::temp_dir().join(format!("papilla-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let forms = [
        ("f32", Form::F32, WeightScales::PerTensor, ActType::I8),
        ("int8 QLinearConv, per-tensor", Form::QLinear, WeightScales::PerTensor, ActType::I8),
        ("int8 QLinearConv, per-channel", Form::QLinear, WeightScales::PerChannel, ActType::I8),
        ("int8 QLinearConv u8, per-tensor", Form::QLinear, WeightScales::PerTensor, ActType::U8),
        ("int8 QDQ, per-channel", Form::Qdq, WeightScales::PerChannel, ActType::I8),
    ];
    println!("| size | base | GFLOP | form | tract 1 thr | tract 2 thr | ort 1 thr | ort 2 thr |");
    println!("|---|---|---|---|---|---|---|---|");
    for &size in sizes {
        let config = UNetConfig::new().with_base_channels(8);
        let layers = config.init(&Device::flex()).layers();
        let pre = PreprocessConfig::square(size as u32);
        let inputs: Vec<Tensor4> = (0..8)
            .map(|seed| {
                let s = generate(&SynthParams::random(512, 512, seed));
                preprocess(&s.image, &pre, None).expect("preprocess").0
            })
            .collect();
        let options = |form, weights, activations| GraphOptions {
            height: size,
            width: size,
            form,
            weights,
            activations,
            metadata: Vec::new(),
        };
        let graph_f32 = onnx::to_bytes(
            &onnx::build(&layers, &options(Form::F32, WeightScales::PerTensor, ActType::I8), None)
                .expect("graph"),
        );
        let ranges = calibrate(
            &layers,
            &graph_f32,
            &inputs,
            CalibMethod::MinMax,
            2,
            &papilla_host::progress::Silent,
        )
        .expect("calibration");
        for (label, form, weights, acts) in forms {
            let bytes = onnx::to_bytes(
                &onnx::build(&layers, &options(form, weights, acts), Some(&ranges)).expect("graph"),
            );
            let path = dir.join(format!("{size}-{}.onnx", label.replace([' ', ','], "_")));
            std::fs::write(&path, &bytes).expect("write onnx");
            let graph = Graph::load(&bytes, [1, 3, size, size], label).expect("tract loads");
            let mut cells = Vec::new();
            for threads in [1, 2] {
                let exec = executor(threads);
                let ms = median_ms(
                    || {
                        graph.run(&inputs[0], &exec, label).expect("runs");
                    },
                    Duration::from_secs(3),
                );
                cells.push(format!("{ms:.1}"));
            }
            for threads in [1, 2] {
                cells.push(ort_ms(&path, threads, size));
            }
            println!(
                "| {size} | 8 | {:.2} | {label} | {} |",
                config.flops(size) / 1e9,
                cells.join(" | ")
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
