use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use image::{DynamicImage, ImageFormat};
use papilla_device::board::mock::PinLog;
use papilla_device::config::QualityConfig;
use papilla_device::photo::DecodeOptions;
use papilla_device::service::ServiceOptions;
use papilla_shared::bundle::{Bundle, SigningKey, Verification};
use papilla_shared::synth::{SynthParams, generate};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shipped model: of the device tests only the named acceptance test of its signature reads
/// it, so retraining it cannot break the loop and storage tests.
pub fn shipped() -> PathBuf {
    repo().join(papilla_device::segment::SHIPPED_MODEL)
}

pub fn shipped_bytes() -> Vec<u8> {
    std::fs::read(shipped()).expect("the shipped model is in the repository")
}

/// The test bundle of the loop, storage, power-cut and soak tests: a small coarse-to-fine pair
/// trained on the synthetic generator's photographs (`scripts/make-test-bundle.sh`), unsigned.
pub fn test_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/synthetic-c2f.papilla")
}

/// The test bundle, read and checked.
pub fn test_bundle() -> Bundle {
    let bytes = std::fs::read(test_model()).expect("the test bundle is in the repository");
    Bundle::from_bytes(&bytes, &Verification::integrity_only()).unwrap().bundle
}

/// The test bundle signed with a test key.
pub fn signed(key: &SigningKey) -> Vec<u8> {
    test_bundle().to_bytes(Some(key)).unwrap()
}

/// The test bundle as model `version`, signed with `key`.
pub fn signed_version(version: &str, key: &SigningKey) -> Vec<u8> {
    let bundle = test_bundle();
    let mut manifest = bundle.manifest().clone();
    manifest.version = version.into();
    let graphs = bundle.stages().map(|(_, g)| g.to_vec()).collect();
    Bundle::new(manifest, graphs).unwrap().to_bytes(Some(key)).unwrap()
}

/// The test bundle without a signature.
pub fn unsigned_bytes() -> Vec<u8> {
    test_bundle().to_bytes(None).unwrap()
}

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn encode(img: DynamicImage, f: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, f).unwrap();
    out.into_inner()
}

/// A synthetic fundus photograph as JPEG bytes.
pub fn synthetic_jpeg(seed: u64, w: u32, h: u32) -> Vec<u8> {
    encode(generate(&SynthParams::random(w, h, seed)).image.into(), ImageFormat::Jpeg)
}

/// A device config for tests (TOML).
pub fn config(root: &Path, camera: &Path, extra: &str) -> String {
    format!(
        "root = {root:?}\nthreads = 1\nrefer_vcdr = 0.6\n\n[trust]\nallow_unsigned = true\n\n[camera]\nsource = \"replay\"\nfolder = {camera:?}\n\n[storage]\nmin_free_mb = 1\n{extra}",
        root = root.display().to_string(),
        camera = camera.display().to_string(),
    )
}

/// The device binary as a command. Cross-tested (`scripts/cross-build.sh test`) the binary is
/// aarch64 code, which this kernel cannot start by itself: PAPILLA_TEST_RUNNER names the
/// emulator (qemu-aarch64 -L SYSROOT) that runs it, as cargo's runner does for the test binaries.
pub fn device_command() -> Command {
    let bin = env!("CARGO_BIN_EXE_papilla-device");
    let runner = std::env::var("PAPILLA_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut cmd = Command::new(emulator);
            cmd.args(words).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

/// A time window stretched by PAPILLA_TEST_SLOWDOWN (default 1): under emulation an exam is
/// tens of times slower, and a kill window must still land among exams, not before the first.
pub fn stretched(window: Duration) -> Duration {
    window * slowdown()
}

/// PAPILLA_TEST_SLOWDOWN: how many times slower than native the binary runs (1 unless
/// emulated).
pub fn slowdown() -> u32 {
    std::env::var("PAPILLA_TEST_SLOWDOWN").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1)
}

/// Writes `bytes` as `dir/name` and gives the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Lit LEDs after each `show`: the pins are set in the order ready, busy, refer, error.
pub fn snapshots(log: &PinLog) -> Vec<String> {
    let log = log.lock().unwrap();
    assert_eq!(log.len() % 4, 0, "every update sets all four lights");
    log.chunks(4)
        .map(|c| {
            let on: Vec<&str> = c.iter().filter(|(_, h)| *h).map(|(n, _)| n.as_str()).collect();
            if on.is_empty() { "-".to_owned() } else { on.join("+") }
        })
        .collect()
}

/// The service options of the replay tests: default quality gate, referral at 0.6, 10 ms polls.
pub fn replay_options(decode: DecodeOptions) -> ServiceOptions {
    ServiceOptions {
        decode,
        quality: QualityConfig::default(),
        refer_vcdr: 0.6,
        poll: Duration::from_millis(10),
    }
}
