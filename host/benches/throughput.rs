//! Training and inference throughput of the UNet on burn's CPU backends, printed as a table:
//! flex always, libtorch (burn-tch) too when built with `--features tch`, measured alternately
//! in one run so the ratio is fair on a shared machine. Run with
//! `cargo bench -p papilla-host --bench throughput [--features tch]`; set
//! `PAPILLA_BENCH_QUICK=1` for 256 px only. Figures are medians of repeated steps; compare
//! columns of one run, since other load on the machine moves all of them.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use papilla_host::loss::{LossKind, loss, target_batch};
use papilla_host::model::UNetConfig;
use papilla_shared::labels::{Class, LabelMap};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    train_ips: f64,
    infer_ms: f64,
}

fn bench(
    device: &Device,
    size: usize,
    base: usize,
    batch: usize,
    train_steps: usize,
    infer_runs: usize,
) -> Row {
    let model_cfg = UNetConfig::new().with_base_channels(base);
    let device = device.clone();
    let train_device = device.clone().autodiff();
    let mut model = model_cfg.init(&train_device);
    let mut optim = {
        use burn::optim::SgdConfig;
        SgdConfig::new().init()
    };
    let mut target = LabelMap::filled(size as u32, size as u32, Class::Background);
    for y in size / 3..size / 2 {
        for x in size / 3..size / 2 {
            target.set(x as u32, y as u32, Class::Rim);
        }
    }
    let targets: Vec<&LabelMap> = (0..batch).map(|_| &target).collect();
    let mut step_times = Vec::new();
    for step in 0..=train_steps {
        let x = Tensor::<4>::random(
            [batch, 3, size, size],
            Distribution::Normal(0.0, 1.0),
            &train_device,
        );
        let y = target_batch(&targets, 3, &train_device);
        let t = Instant::now();
        let l = loss(model.forward(x), y, 0.0, LossKind::ClassDice);
        let grads = GradientsParams::from_grads(l.backward(), &model);
        model = optim.step(1e-3, model, grads);
        train_device.sync().expect("the device finishes its work"); // time all of the step
        if step > 0 {
            step_times.push(t.elapsed().as_secs_f64());
        }
    }
    let valid = model.valid();
    let infer_device = device.without_autodiff();
    let mut infer = Vec::new();
    for run in 0..=infer_runs {
        let x =
            Tensor::<4>::random([1, 3, size, size], Distribution::Normal(0.0, 1.0), &infer_device);
        let t = Instant::now();
        let out = valid.forward(x).into_data();
        std::hint::black_box(out);
        if run > 0 {
            infer.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Row { train_ips: batch as f64 / median(step_times), infer_ms: median(infer) }
}

/// The backends this build has, flex first.
fn backends() -> Vec<(&'static str, Device)> {
    #[allow(unused_mut)] // only a tch build adds a second backend
    let mut v = vec![("flex", Device::flex())];
    #[cfg(feature = "tch")]
    {
        let threads = papilla_host::backend::all_cores();
        let device = papilla_host::backend::device_for(papilla_host::cli::BackendArg::Tch, threads)
            .expect("a tch build has libtorch")
            .device;
        v.push(("tch", device));
    }
    v
}

fn main() {
    let quick = std::env::var_os("PAPILLA_BENCH_QUICK").is_some();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let backends = backends();
    let names: Vec<&str> = backends.iter().map(|(n, _)| *n).collect();
    println!(
        "UNet depth 4 on burn {} (CPU), {threads} threads; batch 4 for training (SGD, class Dice), 1 for inference",
        names.join(" and ")
    );
    print!("{:>6} {:>5} {:>10}", "size", "base", "GFLOP/img");
    for n in &names {
        print!(" {:>14} {:>12}", format!("{n} train img/s"), format!("{n} infer ms"));
    }
    if names.len() > 1 {
        print!(" {:>12}", format!("train {}/{}", names[1], names[0]));
    }
    println!();
    let mut configs = vec![(256, 8), (256, 16)];
    if !quick {
        configs.extend([(512, 8), (512, 16)]);
    }
    for (size, base) in configs {
        let steps = if size >= 512 { 2 } else { 3 };
        // Two alternating rounds per backend; the better round of each counts (least loaded).
        let mut rows: Vec<Option<Row>> = backends.iter().map(|_| None).collect();
        for _round in 0..2 {
            for (i, (_, device)) in backends.iter().enumerate() {
                let r = bench(device, size, base, 4, steps, 5);
                let better = rows[i].as_ref().is_none_or(|b| r.train_ips > b.train_ips);
                if better {
                    rows[i] = Some(r);
                }
            }
        }
        let gflop = UNetConfig::new().with_base_channels(base).flops(size) / 1e9;
        print!("{size:>6} {base:>5} {gflop:>10.2}");
        for r in rows.iter().flatten() {
            print!(" {:>14.2} {:>12.1}", r.train_ips, r.infer_ms);
        }
        if let [Some(a), Some(b), ..] = rows.as_slice() {
            print!(" {:>12.2}", b.train_ips / a.train_ips);
        }
        println!();
    }
}
