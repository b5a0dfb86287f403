//! burn-tch (libtorch's CPU build) against flex: one training step from the same weights, and a
//! tiny run trained, resumed and exported on tch that tract then runs. Needs a build with
//! `--features tch` (LIBTORCH from scripts/fetch-libtorch.sh); CI runs it.

use burn::tensor::{Device, Tensor, TensorData};
use papilla_host::backend::{compare_training_step, device_for};
use papilla_host::cli::BackendArg;
use papilla_host::model::{Encoder, UNetConfig};
use papilla_shared::bundle::Verification;
use papilla_shared::preprocess::{PreprocessConfig, preprocess};
use papilla_shared::runtime::Engine;
use serde_json::Value;

use crate::common::{TINY_RUN, gamma_folder, ok, papilla};

#[test]
fn a_training_step_on_tch_matches_flex_at_256_px() {
    // 256 px: the size at which software Vulkan's gradients went wrong while 64 px agreed.
    let compute = device_for(BackendArg::Tch, 2).unwrap();
    assert_eq!((compute.hardware.backend.as_str(), compute.hardware.threads), ("tch", 2));
    let tch = compute.device;
    let model = UNetConfig::new().with_base_channels(8);
    let check = compare_training_step(&Device::flex(), &tch, &model, 256, 2).unwrap();
    eprintln!("{check:?}");
    // 100 parameters, of which BatchNorm's 36 running statistics have no gradient.
    assert_eq!((check.parameters, check.gradients), (100, 64), "{check:?}");
    assert_eq!(check.max_initial_diff, 0.0, "both start from the same weights");
    assert!(
        (check.loss_reference - check.loss_candidate).abs() < 1e-5,
        "loss flex {} tch {}",
        check.loss_reference,
        check.loss_candidate
    );
    // Measured: 2e-3 at worst (a bottleneck convolution), float32 summation order.
    assert!(
        check.worst_gradient_rel < 1e-2,
        "gradient of {} differs by {}",
        check.worst_gradient,
        check.worst_gradient_rel
    );
    // Measured: 1.2e-7 and 1.0e-7.
    assert!(check.max_weight_diff < 1e-5 * check.max_weight.max(1.0), "{check:?}");
    assert!(check.max_logit_diff < 1e-5 * check.logit_range.max(1.0), "{check:?}");
    assert!(check.agrees(1e-2));
}

#[test]
fn a_training_step_of_the_efficientnet_lite0_network_on_tch_matches_flex() {
    // Depthwise (grouped) and strided convolutions and ReLU6, which the plain UNet lacks.
    let tch = device_for(BackendArg::Tch, 2).unwrap().device;
    let lite0 = UNetConfig::new().with_encoder(Encoder::EfficientNetLite0);
    for model in [lite0.clone(), lite0.with_anti_alias(true)] {
        let check = compare_training_step(&Device::flex(), &tch, &model, 64, 2).unwrap();
        eprintln!("{check:?}");
        assert_eq!(check.max_initial_diff, 0.0, "both start from the same weights");
        assert!((check.loss_reference - check.loss_candidate).abs() < 1e-5, "{check:?}");
        // Measured: 8e-3 at worst (block 11's projection), float32 summation order.
        assert!(check.worst_gradient_rel < 2e-2, "{check:?}");
        assert!(check.max_logit_diff < 1e-5 * check.logit_range.max(1.0), "{check:?}");
    }
}

#[test]
fn a_run_trained_on_tch_resumes_exports_and_runs_in_tract() {
    let root = tempfile::tempdir().unwrap();
    let train = gamma_folder(root.path(), "train", 16, 0);
    let run = root.path().join("run");
    let (train_s, run_s) = (train.to_str().unwrap(), run.to_str().unwrap());
    let tch = ["--backend", "tch", "--threads", "2", "--val-fraction", "0.25"];
    let common = [&TINY_RUN[..], &tch].concat();
    let first =
        [&["train", "--data", train_s, "--out", run_s, "--epochs", "3"][..], &common].concat();
    ok(&papilla(&first));
    // Resumed without --backend: the run keeps training on tch (it used to drop to flex).
    let no_backend = [&TINY_RUN[..], &tch[2..]].concat();
    let resumed = [
        &["train", "--data", train_s, "--out", run_s, "--epochs", "6", "--resume"][..],
        &no_backend,
    ]
    .concat();
    ok(&papilla(&resumed));
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let loss: Vec<f64> =
        csv.lines().skip(1).map(|l| l.split(',').nth(2).unwrap().parse().unwrap()).collect();
    assert_eq!(loss.len(), 6, "{csv}");
    assert!(loss[5] < loss[0], "the training loss fell on tch: {csv}");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    let hw = state["hardware"].as_array().unwrap();
    assert_eq!(hw.len(), 1, "the resume kept its backend and added no stretch: {state}");
    assert_eq!(hw[0]["backend"], "tch");
    assert_eq!(hw[0]["threads"], 2);

    let bundle = root.path().join("m.papilla");
    ok(&papilla(&["export", "--checkpoint", run_s, "--out", bundle.to_str().unwrap()]));
    let bytes = std::fs::read(&bundle).unwrap();
    let engine = Engine::from_bytes(&bytes, &Verification::integrity_only(), 1).unwrap();
    let training = engine.manifest().training.as_ref().unwrap();
    assert!(training.hardware.contains("burn tch, 2 threads"), "{}", training.hardware);
    let photo = image::open(train.join("fundus color images/0003.jpg")).unwrap().to_rgb8();
    let seg = engine.segment(&photo).unwrap();
    assert_eq!((seg.mask.width(), seg.mask.height()), (96, 96));

    // The weights trained on tch travel faithfully: tract's logits are libtorch's, and flex's.
    let (input, _) = preprocess(&photo, &PreprocessConfig::square(64), None).unwrap();
    let tract = engine.stage_logits(false, &input).unwrap().data;
    let range = tract.iter().fold(f32::MIN, |m, v| m.max(*v))
        - tract.iter().fold(f32::MAX, |m, v| m.min(*v));
    assert!(range > 0.1, "a trained net has spread logits: {range}");
    for backend in [BackendArg::Tch, BackendArg::Cpu] {
        let device = device_for(backend, 2).unwrap().device;
        let run = papilla_host::inference::load_run(&run, &device).unwrap();
        let x =
            Tensor::<4>::from_data(TensorData::new(input.data.clone(), input.shape), &run.device);
        let burn = run.model.forward(x).into_data().try_to_vec::<f32>().unwrap();
        let diff = burn.iter().zip(&tract).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-4 * range, "{backend:?} vs tract: max |diff| {diff}, range {range}");
    }
}
