//! The GPU kit (scripts/gpu) as far as a CPU can test it: the probe's road decision, the pack
//! and its size check, and the training script end to end on the CPU backend with 1 and 3 epochs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::gamma_folder;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn bash(script: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("bash");
    c.arg(repo().join(script)).args(args).current_dir(repo());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("runs bash")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn route(probe: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("probe.txt");
    std::fs::write(&f, probe).unwrap();
    let lib = repo().join("scripts/gpu/lib.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(". '{}' && decide_route '{}'", lib.display(), f.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_probe_picks_vulkan_only_with_nvidias_vulkan_driver() {
    let nvidia = "nvidia_smi: yes\ngpu: NVIDIA H200, 143771 MiB\ndriver_version: 570.1\n";
    let icd = "vulkan_icds: nvidia_icd.json lvp_icd.x86_64.json\nnvidia_vulkan_library: yes\n";
    assert!(route(&format!("{nvidia}{icd}torch: no\n")).starts_with("vulkan "));
    // Software Vulkan (lavapipe) alone is no GPU road: its gradients were wrong at 256 px.
    let lavapipe = "vulkan_icds: lvp_icd.x86_64.json\nnvidia_vulkan_library: no\n";
    assert!(route(&format!("{nvidia}{lavapipe}torch: no\n")).starts_with("none "));
    let torch = route(&format!("{nvidia}{lavapipe}torch: 2.9.0+cu128 cuda\n"));
    assert!(torch.starts_with("torch ") && torch.contains("write up"), "{torch}");
    // An ICD file without the driver library behind it is not enough.
    let icd_only = "vulkan_icds: nvidia_icd.json\nnvidia_vulkan_library: no\n";
    assert!(route(&format!("{nvidia}{icd_only}torch: no\n")).starts_with("none "));
    assert!(
        route("nvidia_smi: no\nvulkan_icds: nvidia_icd.json\n").starts_with("none (no nvidia-smi")
    );

    // This machine: every key present, and a route line last.
    let out = bash("scripts/gpu/probe.sh", &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let probe = String::from_utf8_lossy(&out.stdout).into_owned();
    for key in
        ["cpu_cores", "disk_free_mib", "nvidia_smi", "vulkan_icds", "libcuda", "nvrtc", "torch"]
    {
        assert!(probe.lines().any(|l| l.starts_with(&format!("{key}: "))), "{key}: {probe}");
    }
    assert!(probe.lines().last().unwrap().starts_with("route: "), "{probe}");
}

#[test]
fn the_kit_packs_checks_and_trains_the_default_recipe_on_the_cpu() {
    let root = tempfile::tempdir().unwrap();
    let refuge = root.path().join("refuge512");
    let train = gamma_folder(&refuge, "train", 12, 0);
    let test = gamma_folder(&refuge, "test", 2, 100);
    let pack = root.path().join("pack");
    let bin = env!("CARGO_BIN_EXE_papilla");
    // No ImageNet weights travel in a test (they are downloaded): the encoder starts fresh.
    let env = [("PAPILLA_BIN", bin), ("LIBVULKAN", "none"), ("LITE0_WEIGHTS", "none")];
    let pack_s = pack.to_str().unwrap();

    // Test splits never travel; a pack that does not fit beside the tree is refused whole.
    let out = bash("scripts/gpu/pack.sh", &["--out", pack_s, test.to_str().unwrap()], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("test splits"), "{}", text(&out));
    let tight = [env[0], env[1], env[2], ("BUDGET_MIB", "1")];
    let out = bash("scripts/gpu/pack.sh", &["--out", pack_s, train.to_str().unwrap()], &tight);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("too large"), "{}", text(&out));
    assert!(!pack.exists() && !root.path().join("pack.partial").exists());

    let out = bash("scripts/gpu/pack.sh", &["--out", pack_s, train.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", text(&out));
    let packed = pack.join("data/refuge512/train");
    for id in ["0000", "0011"] {
        let orig = image::open(train.join(format!("Disc_Cup_Masks/{id}.bmp"))).unwrap().to_luma8();
        let png = image::open(packed.join(format!("Disc_Cup_Masks/{id}.png"))).unwrap().to_luma8();
        assert_eq!(orig, png, "masks travel exactly");
        assert!(packed.join(format!("fundus color images/{id}.jpg")).is_file());
    }
    assert_eq!(std::fs::read_dir(packed.join("Disc_Cup_Masks")).unwrap().count(), 12);
    let manifest = std::fs::read_to_string(pack.join("MANIFEST")).unwrap();
    assert!(manifest.contains("pack_bytes: ") && manifest.contains("tree_bytes: "), "{manifest}");
    assert!(pack.join("papilla.gz").is_file());

    // Without a GPU, the Vulkan road is refused before anything trains.
    let gpu_out = root.path().join("gpu-out");
    let out = bash(
        "scripts/gpu/train-default.sh",
        &[pack_s],
        &[("OUT", gpu_out.to_str().unwrap()), ("BACKEND", "wgpu")],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!gpu_out.join("runs").exists());

    // The CPU backend runs the kit end to end: step checks, both stages, what comes back.
    let cpu_out = root.path().join("cpu-out");
    let out = bash(
        "scripts/gpu/train-default.sh",
        &[pack_s],
        &[("OUT", cpu_out.to_str().unwrap()), ("BACKEND", "cpu"), ("SMOKE", "1")],
    );
    let log = std::fs::read_to_string(cpu_out.join("train.log")).unwrap_or_default();
    assert!(out.status.success(), "{}\n{log}", text(&out));
    for size in ["128", "224"] {
        let check: Value = serde_json::from_str(
            &std::fs::read_to_string(cpu_out.join(format!("check-{size}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(check["size"].to_string(), size);
        assert_eq!(check["worst_gradient_rel"], 0.0, "flex against flex: {check}");
    }
    for f in [
        "loc128/model-last.bpk",
        "lite0/model-best.bpk",
        "lite0/curves.png",
        "lite0-avg/model-best.bpk",
    ] {
        assert!(cpu_out.join("runs").join(f).is_file(), "{f}");
    }
    assert!(!cpu_out.join("runs/lite0/optim-last.bpk").exists(), "optimiser state stays");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(cpu_out.join("runs/lite0/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["epoch"], 3, "the recipe's segmenter cycle (SMOKE: 3 epochs): {state}");
    assert_eq!(state["hardware"][0]["backend"], "flex");
    // The shipped segmenter: the cycle's last epochs averaged, then one epoch at lr 0.
    let avg: Value = serde_json::from_str(
        &std::fs::read_to_string(cpu_out.join("runs/lite0-avg/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(avg["epoch"], 4, "SMOKE: 3 epochs, then BatchNorm re-estimated: {avg}");
    let summary = std::fs::read_to_string(cpu_out.join("summary.txt")).unwrap();
    assert!(summary.contains("lite0: 3 epochs"), "{summary}");
    assert!(summary.contains("no ImageNet weights in the pack"), "{summary}");
    assert!(summary.contains("s/epoch"), "{summary}");
}
