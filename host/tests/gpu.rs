//! One training step on burn-wgpu against the same step on flex. Only meaningful on a real
//! GPU: Mesa's software Vulkan (lavapipe) once computed training-mode BatchNorm wrongly for
//! channels of more than 65,536 values, so passing there proves nothing. Run where a GPU is:
//! `cargo test --release -p papilla-host --features gpu -- --ignored wgpu`

use burn::module::Module;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use papilla_host::model::UNetConfig;
use papilla_host::training::{LossKind, loss, target_batch};
use papilla_shared::preprocess::{PreprocessConfig, preprocess};
use papilla_shared::synth::{SynthParams, generate};

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
#[ignore = "needs a GPU and --features gpu"]
fn wgpu_training_step_matches_flex() {
    // Batch 2 at 256x256: 131,072 values per BatchNorm channel at full resolution.
    let size = 256;
    let cfg = PreprocessConfig::square(size);
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    for seed in 0..2 {
        let s = generate(&SynthParams::random(size, size, seed));
        let (t, g) = preprocess(&s.image, &cfg, None).unwrap();
        inputs.extend(t.data);
        targets.push(g.to_network(&s.labels));
    }
    let model_cfg = UNetConfig::new().with_base_channels(4).with_depth(3);
    let flex = Device::flex().autodiff();
    let gpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice).autodiff();
    let model = model_cfg.init(&flex);

    let mut results = Vec::new();
    for device in [&flex, &gpu] {
        let m = model.clone().to_device(device);
        let x = Tensor::<4>::from_data(
            TensorData::new(inputs.clone(), [2, 3, size as usize, size as usize]),
            device,
        );
        let y = target_batch(&targets.iter().collect::<Vec<_>>(), 3, device);
        let l = loss(m.forward(x.clone()), y, 1.0, LossKind::ClassDice);
        let loss_value = l.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(l.backward(), &m);
        let mut optim = SgdConfig::new().init();
        let m = optim.step(0.05, m, grads);
        let inference = m.valid();
        let x = x.to_device(&device.clone().without_autodiff());
        let out = inference.forward(x).into_data().try_to_vec::<f32>().unwrap();
        results.push((loss_value, out));
    }
    let (flex_loss, flex_out) = &results[0];
    let (gpu_loss, gpu_out) = &results[1];
    let range = flex_out.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!(
        "loss flex {flex_loss} wgpu {gpu_loss}; output range {range}, max diff {}",
        max_abs_diff(flex_out, gpu_out)
    );
    assert!(
        (flex_loss - gpu_loss).abs() < 1e-3 * flex_loss.abs().max(1.0),
        "{flex_loss} vs {gpu_loss}"
    );
    assert!(
        max_abs_diff(flex_out, gpu_out) < 1e-2 * range.max(1.0),
        "outputs after one step differ"
    );
}
