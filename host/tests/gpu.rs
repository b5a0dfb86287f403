//! One training step on burn-wgpu against the same step on flex, at 256 px (software Vulkan
//! agreed at 64 px and got weight gradients wrong at 256). Only meaningful on a real GPU.
//! Run where a GPU is: `cargo test --release -p papilla-host --features gpu -- --ignored wgpu`,
//! or without the test harness: `papilla check-backend --backend wgpu --size 256`.

use burn::tensor::Device;
use papilla_host::backend::{compare_training_step, device_for};
use papilla_host::cli::BackendArg;
use papilla_host::model::UNetConfig;

#[test]
#[ignore = "needs a GPU and --features gpu"]
fn wgpu_training_step_matches_flex() {
    let gpu = device_for(BackendArg::Wgpu, 0).unwrap().device;
    let model = UNetConfig::new().with_base_channels(8);
    let check = compare_training_step(&Device::flex(), &gpu, &model, 256, 2).unwrap();
    eprintln!("{check:?}");
    assert_eq!(check.gradients, 64, "every trainable parameter got a gradient on both");
    assert!(check.agrees(1e-2), "{check:?}");
}
