//! The model bundle: one file that carries every ONNX graph of a model, the preprocessing and
//! class map of each stage, how it was trained and what it scored, optionally signed.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 8 | magic `PAPILLA\0` |
//! | 8 | 2 | format major version (readers refuse other majors) |
//! | 10 | 2 | format minor version (additions a reader of the same major can skip) |
//! | 12 | 4 | manifest length `m` |
//! | 16 | m | [`Manifest`], postcard |
//! | 16+m | sum of `graph_len` | the stages' ONNX graphs, in stage order |
//! | then | 1 | trailer tag: `0` unsigned, `1` ed25519 |
//! | then | 32 + 64 | (tag 1) signer's public key, then the signature of every byte before the tag |
//!
//! postcard is not self-describing, so the magic and the version come first and a golden-bytes
//! test pins this layout.

use ed25519_dalek::{Signature, Signer, Verifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::error::BundleError;
use crate::metrics::Summary;
use crate::postprocess::{InferenceOptions, OutputSpec, ShapeFit, TestTimeAugmentation};
use crate::preprocess::PreprocessConfig;

/// First bytes of every bundle.
pub const MAGIC: [u8; 8] = *b"PAPILLA\0";
/// Format major version written and read by this build.
pub const FORMAT_MAJOR: u16 = 1;
/// Format minor version written by this build.
pub const FORMAT_MINOR: u16 = 2;
/// Conventional file extension.
pub const EXTENSION: &str = "papilla";

const TAG_UNSIGNED: u8 = 0;
const TAG_ED25519: u8 = 1;
const HEADER_LEN: usize = 16;

/// What a stage does in a coarse-to-fine model.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageRole {
    /// Finds the disc on the downscaled photograph; the next stage crops around it.
    Locator,
    /// Segments disc and cup (on the whole photograph, or on the locator's crop).
    Segmenter,
}

/// Numeric form of a stage's graph.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// int8 as QuantizeLinear/DequantizeLinear pairs around float operators.
    Int8Qdq,
    /// int8 as QLinearConv and friends (integer kernels).
    Int8QLinear,
}

/// One network of the model and everything needed to feed it and read it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Stage {
    pub name: String,
    pub role: StageRole,
    pub preprocess: PreprocessConfig,
    pub output: OutputSpec,
    /// Name of the graph's image input.
    pub input_name: String,
    /// Name of the graph's class-score output.
    pub output_name: String,
    pub precision: Precision,
    /// Length of the ONNX graph in bytes; filled in by [`Bundle::new`].
    pub graph_len: u64,
    /// SHA-256 of the ONNX graph; filled in by [`Bundle::new`].
    pub graph_sha256: [u8; 32],
}

/// How the model was trained, for the model card and for the technician's `status`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TrainingSummary {
    /// Data sets and splits used, e.g. `refuge512/train`.
    pub data: Vec<String>,
    pub epochs: u32,
    pub train_images: u64,
    pub val_images: u64,
    pub wall_time_s: f64,
    pub hardware: String,
    /// The training config as JSON, verbatim.
    pub config_json: String,
}

/// Scores on one named test set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TestScores {
    /// e.g. `refuge512/test`.
    pub test_set: String,
    pub precision: Precision,
    pub summary: Summary,
}

/// A golden input with its expected mask, run before a bundle is trusted on a device.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SelfTest {
    /// PNG of the input photograph.
    pub image_png: Vec<u8>,
    /// PNG of the expected 0/128/255 mask.
    pub expected_mask_png: Vec<u8>,
    /// Least fraction of pixels whose class must match.
    pub min_agreement: f64,
}

/// Everything about a bundle except the graphs themselves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Manifest {
    pub name: String,
    /// The model's own version (semver).
    pub version: String,
    /// Seconds since the Unix epoch.
    pub created_unix_s: i64,
    /// Papilla version that wrote the bundle.
    pub papilla_version: String,
    /// Stages in the order they run.
    pub stages: Vec<Stage>,
    pub training: Option<TrainingSummary>,
    pub scores: Vec<TestScores>,
    pub selftest: Option<SelfTest>,
    /// How the scores become the stored mask (shape fit, disc-centred padding, test-time
    /// augmentation). Its fields are the manifest's last bytes: format minor 1 added the first
    /// two, minor 2 the third, so an older reader stops before the ones it does not know
    /// (postcard leaves trailing bytes unread), and an older bundle is completed with the
    /// defaults by [`Bundle::from_bytes`] (one row per minor).
    pub inference: InferenceOptions,
}

/// A model bundle in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    manifest: Manifest,
    graphs: Vec<Vec<u8>>,
}

/// Which signatures a reader accepts.
#[derive(Clone, Debug, Default)]
pub struct Verification {
    /// Signers accepted; empty accepts any key whose signature is valid.
    pub trusted: Vec<VerifyingKey>,
    /// Accept bundles without a signature.
    pub allow_unsigned: bool,
}

impl Verification {
    /// Accepts unsigned bundles and any valid signature: integrity only (host tools).
    pub fn integrity_only() -> Self {
        Self { trusted: Vec::new(), allow_unsigned: true }
    }

    /// Accepts only bundles signed by one of `keys` (devices in the field).
    pub fn signed_by(keys: Vec<VerifyingKey>) -> Self {
        Self { trusted: keys, allow_unsigned: false }
    }
}

/// A bundle read back, with the key that signed it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub bundle: Bundle,
    pub signer: Option<VerifyingKey>,
}

impl Bundle {
    /// Pairs a manifest with one graph per stage, filling in each stage's length and hash.
    pub fn new(mut manifest: Manifest, graphs: Vec<Vec<u8>>) -> Result<Self, BundleError> {
        if manifest.stages.is_empty() {
            return Err(BundleError::Inconsistent("a bundle needs at least one stage".into()));
        }
        if manifest.stages.len() != graphs.len() {
            return Err(BundleError::Inconsistent(format!(
                "{} stages but {} graphs",
                manifest.stages.len(),
                graphs.len()
            )));
        }
        for (stage, graph) in manifest.stages.iter_mut().zip(&graphs) {
            stage.graph_len = graph.len() as u64;
            stage.graph_sha256 = Sha256::digest(graph).into();
        }
        Ok(Self { manifest, graphs })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The ONNX graph of stage `i`, in stage order.
    pub fn graph(&self, i: usize) -> Option<&[u8]> {
        self.graphs.get(i).map(Vec::as_slice)
    }

    /// Stages with their graphs, in running order.
    pub fn stages(&self) -> impl Iterator<Item = (&Stage, &[u8])> {
        self.manifest.stages.iter().zip(self.graphs.iter().map(Vec::as_slice))
    }

    /// Serialises the bundle, signed when a key is given.
    pub fn to_bytes(&self, signer: Option<&SigningKey>) -> Result<Vec<u8>, BundleError> {
        let manifest = postcard::to_stdvec(&self.manifest).map_err(BundleError::Encode)?;
        let manifest_len = u32::try_from(manifest.len())
            .map_err(|_| BundleError::Inconsistent("manifest larger than 4 GiB".into()))?;
        let graphs_len: usize = self.graphs.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + manifest.len() + graphs_len + 97);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
        out.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
        out.extend_from_slice(&manifest_len.to_le_bytes());
        out.extend_from_slice(&manifest);
        for g in &self.graphs {
            out.extend_from_slice(g);
        }
        match signer {
            None => out.push(TAG_UNSIGNED),
            Some(key) => {
                let signature = key.sign(&out);
                out.push(TAG_ED25519);
                out.extend_from_slice(key.verifying_key().as_bytes());
                out.extend_from_slice(&signature.to_bytes());
            }
        }
        Ok(out)
    }

    /// Reads and checks a bundle: magic, version, manifest, every graph's hash, then the
    /// signature against `verification`.
    pub fn from_bytes(bytes: &[u8], verification: &Verification) -> Result<Loaded, BundleError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(MAGIC.len(), "magic").map_err(|_| BundleError::BadMagic)? != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let major = u16::from_le_bytes(r.array("format version")?);
        let minor = u16::from_le_bytes(r.array("format version")?);
        if major != FORMAT_MAJOR {
            return Err(BundleError::UnsupportedVersion { major, minor, supported: FORMAT_MAJOR });
        }
        let manifest_len = u32::from_le_bytes(r.array("manifest length")?) as usize;
        let mut manifest_bytes = r.take(manifest_len, "manifest")?.to_vec();
        // Each minor appended fields at the manifest's end; a bundle of an older minor is
        // completed with what it meant (postcard encodes a tuple as it does the struct's
        // fields, in order). One row per minor.
        if minor < 1 {
            let minor_1 = (ShapeFit::None, None::<f32>);
            manifest_bytes.extend(postcard::to_stdvec(&minor_1).map_err(BundleError::Encode)?);
        }
        if minor < 2 {
            let minor_2 = (TestTimeAugmentation::None,);
            manifest_bytes.extend(postcard::to_stdvec(&minor_2).map_err(BundleError::Encode)?);
        }
        let manifest: Manifest =
            postcard::from_bytes(&manifest_bytes).map_err(BundleError::Manifest)?;
        if manifest.stages.is_empty() {
            return Err(BundleError::Inconsistent("the manifest lists no stage".into()));
        }
        let mut graphs = Vec::with_capacity(manifest.stages.len());
        for stage in &manifest.stages {
            let len = usize::try_from(stage.graph_len).map_err(|_| {
                BundleError::Inconsistent(format!("stage {:?} is too large", stage.name))
            })?;
            let graph = r.take(len, "graph")?;
            let actual: [u8; 32] = Sha256::digest(graph).into();
            if actual != stage.graph_sha256 {
                return Err(BundleError::HashMismatch {
                    stage: stage.name.clone(),
                    expected: hex(&stage.graph_sha256),
                    actual: hex(&actual),
                });
            }
            graphs.push(graph.to_vec());
        }
        let signed_len = r.pos;
        let tag = r.take(1, "trailer tag")?[0];
        let signer = match tag {
            TAG_UNSIGNED => None,
            TAG_ED25519 => {
                let key: [u8; 32] = r.array("signer key")?;
                let sig: [u8; 64] = r.array("signature")?;
                let key = VerifyingKey::from_bytes(&key).map_err(|_| BundleError::BadSignature)?;
                key.verify(&bytes[..signed_len], &Signature::from_bytes(&sig))
                    .map_err(|_| BundleError::BadSignature)?;
                Some(key)
            }
            other => return Err(BundleError::UnknownTrailer(other)),
        };
        if r.pos != bytes.len() {
            return Err(BundleError::TrailingBytes(bytes.len() - r.pos));
        }
        match signer {
            None if !verification.allow_unsigned => return Err(BundleError::Unsigned),
            Some(key)
                if !verification.trusted.is_empty() && !verification.trusted.contains(&key) =>
            {
                return Err(BundleError::UntrustedSigner { key: hex(key.as_bytes()) });
            }
            _ => {}
        }
        Ok(Loaded { bundle: Bundle { manifest, graphs }, signer })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], BundleError> {
        let available = self.bytes.len() - self.pos;
        if n > available {
            return Err(BundleError::Truncated { what, offset: self.pos, needed: n, available });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], BundleError> {
        let s = self.take(N, what)?;
        Ok(s.try_into().expect("take returned N bytes"))
    }
}

/// Lower-case hexadecimal of `bytes` (hashes and key fingerprints in messages).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes exactly `N` bytes from `2N` hexadecimal digits (either case); `None` for anything
/// else. Works on bytes, so text with multi-byte characters is refused, never sliced.
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let value = |d: u8| (d as char).to_digit(16);
    let mut out = [0u8; N];
    for (b, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *b = u8::try_from(value(pair[0])? * 16 + value(pair[1])?).ok()?;
    }
    Some(out)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Class;
    use crate::postprocess::OutputKind;
    use crate::preprocess::RoiPolicy;
    use proptest::prelude::*;

    fn stage(name: &str, role: StageRole, size: u32) -> Stage {
        Stage {
            name: name.into(),
            role,
            preprocess: PreprocessConfig {
                roi: (role == StageRole::Segmenter)
                    .then_some(RoiPolicy { context: 2.5, min_side_fraction: 0.1 }),
                ..PreprocessConfig::square(size)
            },
            output: OutputSpec::seed(),
            input_name: "image".into(),
            output_name: "logits".into(),
            precision: Precision::Int8QLinear,
            graph_len: 0,
            graph_sha256: [0; 32],
        }
    }

    fn golden_manifest() -> Manifest {
        Manifest {
            name: "golden".into(),
            version: "1.0.0".into(),
            created_unix_s: 1_764_000_000,
            papilla_version: "0.1.0".into(),
            stages: vec![
                stage("locator", StageRole::Locator, 4),
                stage("segmenter", StageRole::Segmenter, 8),
            ],
            training: Some(TrainingSummary {
                data: vec!["synthetic".into()],
                epochs: 2,
                train_images: 3,
                val_images: 1,
                wall_time_s: 1.5,
                hardware: "test".into(),
                config_json: "{}".into(),
            }),
            scores: vec![TestScores {
                test_set: "synthetic".into(),
                precision: Precision::F32,
                summary: Summary { n: 1, disc_dice: 0.5, cup_dice: 0.25, ..Summary::default() },
            }],
            selftest: None,
            inference: InferenceOptions::default(),
        }
    }

    fn golden() -> Bundle {
        Bundle::new(golden_manifest(), vec![b"graph-one".to_vec(), b"graph-2".to_vec()]).unwrap()
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn golden_bytes_pin_the_layout() {
        // Regenerate with PAPILLA_BLESS=1 only for a deliberate format change (and bump the
        // format version when old readers could not read the new layout).
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/bundle_v1.2_signed.hex");
        let bytes = golden().to_bytes(Some(&key(7))).unwrap();
        if std::env::var_os("PAPILLA_BLESS").is_some() {
            std::fs::write(path, hex(&bytes) + "\n").unwrap();
        }
        let expected = std::fs::read_to_string(path).unwrap();
        assert_eq!(hex(&bytes), expected.trim());
        assert_eq!(&bytes[..8], b"PAPILLA\0");
        assert_eq!(&bytes[8..12], &[1, 0, 2, 0]);
        let m = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        assert_eq!(&bytes[16 + m..16 + m + 9], b"graph-one");
        assert_eq!(bytes.len(), 16 + m + 9 + 7 + 1 + 32 + 64);
        assert_eq!(bytes[16 + m + 16], TAG_ED25519);
        let loaded =
            Bundle::from_bytes(&bytes, &Verification::signed_by(vec![key(7).verifying_key()]))
                .unwrap();
        assert_eq!(loaded.bundle, golden());
        assert_eq!(loaded.bundle.graph(1), Some(&b"graph-2"[..]));
        assert_eq!(loaded.bundle.manifest().stages[0].graph_sha256, sha256(b"graph-one"));
    }

    #[test]
    fn hex_decodes_what_hex_encodes_and_refuses_the_rest() {
        let bytes: [u8; 4] = [0x00, 0x7f, 0xa5, 0xff];
        assert_eq!(from_hex::<4>(&hex(&bytes)), Some(bytes));
        assert_eq!(from_hex::<2>("ABcd"), Some([0xab, 0xcd]));
        // Wrong length, a non-digit, a sign, and a multi-byte character of the right byte length.
        for bad in ["abc", "abcdef", "0g00", "+1ff", "a\u{e9}a"] {
            assert_eq!(from_hex::<2>(bad), None, "{bad}");
        }
        let sixty_four = format!("a\u{e9}{}", "a".repeat(61));
        assert_eq!(sixty_four.len(), 64);
        assert_eq!(from_hex::<32>(&sixty_four), None);
    }

    fn read_hex(name: &str) -> Vec<u8> {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        (0..text.trim().len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_minor_1_bundle_reads_without_tta_and_minor_2_appends_one_byte() {
        let old = read_hex("bundle_v1.1_signed.hex");
        assert_eq!(&old[8..12], &[1, 0, 1, 0]);
        let loaded =
            Bundle::from_bytes(&old, &Verification::signed_by(vec![key(7).verifying_key()]))
                .unwrap();
        assert_eq!(loaded.bundle, golden());
        assert_eq!(loaded.bundle.manifest().inference.tta, TestTimeAugmentation::None);
        let mut flipped = golden_manifest();
        flipped.inference.tta = TestTimeAugmentation::HorizontalFlip;
        let new = Bundle::new(flipped, vec![b"graph-one".to_vec(), b"graph-2".to_vec()])
            .unwrap()
            .to_bytes(None)
            .unwrap();
        let len = |b: &[u8]| u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
        assert_eq!(len(&new), len(&old) + 1);
        assert_eq!(&new[16..16 + len(&old)], &old[16..16 + len(&old)], "a 1.1 reader's bytes");
        assert_eq!(new[16 + len(&old)], 1, "HorizontalFlip");
    }

    #[test]
    fn a_minor_0_bundle_reads_without_a_shape_fit_and_minor_1_only_appends() {
        // The golden bundle of format 1.0, written before `shape_fit` existed.
        let old = read_hex("bundle_v1_signed.hex");
        assert_eq!(&old[8..12], &[1, 0, 0, 0]);
        let loaded =
            Bundle::from_bytes(&old, &Verification::signed_by(vec![key(7).verifying_key()]))
                .unwrap();
        assert_eq!(loaded.bundle, golden());
        assert_eq!(loaded.bundle.manifest().inference.shape_fit, ShapeFit::None);
        assert_eq!(loaded.bundle.manifest().inference.disc_centred_pad, None);
        // A 1.0 reader of a 1.1 bundle reads the same manifest bytes and leaves the additions.
        let mut fitted = golden_manifest();
        fitted.inference.shape_fit = ShapeFit::Ellipse;
        fitted.inference.disc_centred_pad = Some(1.5);
        let new = Bundle::new(fitted, vec![b"graph-one".to_vec(), b"graph-2".to_vec()])
            .unwrap()
            .to_bytes(None)
            .unwrap();
        let len = |b: &[u8]| u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
        assert_eq!(len(&new), len(&old) + 7);
        assert_eq!(&new[16..16 + len(&old)], &old[16..16 + len(&old)]);
        let added = &new[16 + len(&old)..16 + len(&new)];
        let expected = [&[1u8, 1][..], &1.5f32.to_le_bytes(), &[0]].concat();
        assert_eq!(
            added, expected,
            "Ellipse, Some(1.5), then minor 2's TestTimeAugmentation::None"
        );
    }

    #[test]
    fn wrong_magic_and_unknown_major_are_refused() {
        let mut bytes = golden().to_bytes(None).unwrap();
        bytes[0] = b'X';
        assert!(matches!(
            Bundle::from_bytes(&bytes, &Verification::integrity_only()),
            Err(BundleError::BadMagic)
        ));
        assert!(matches!(
            Bundle::from_bytes(b"PAP", &Verification::integrity_only()),
            Err(BundleError::BadMagic)
        ));
        let mut bytes = golden().to_bytes(None).unwrap();
        bytes[8] = 2;
        let err = Bundle::from_bytes(&bytes, &Verification::integrity_only()).unwrap_err();
        assert!(
            matches!(err, BundleError::UnsupportedVersion { major: 2, minor: 2, supported: 1 }),
            "{err}"
        );
    }

    #[test]
    fn every_truncation_is_refused_as_such() {
        let bytes = golden().to_bytes(Some(&key(1))).unwrap();
        for cut in 8..bytes.len() {
            let err =
                Bundle::from_bytes(&bytes[..cut], &Verification::integrity_only()).unwrap_err();
            assert!(
                matches!(err, BundleError::Truncated { .. } | BundleError::Manifest(_)),
                "cut at {cut}: {err}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            Bundle::from_bytes(&longer, &Verification::integrity_only()),
            Err(BundleError::TrailingBytes(1))
        ));
    }

    #[test]
    fn a_flipped_graph_byte_is_a_hash_mismatch_naming_the_stage() {
        let mut bytes = golden().to_bytes(None).unwrap();
        let m = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        bytes[16 + m + 10] ^= 1; // inside the second graph
        let err = Bundle::from_bytes(&bytes, &Verification::integrity_only()).unwrap_err();
        assert!(
            matches!(err, BundleError::HashMismatch { ref stage, .. } if stage == "segmenter"),
            "{err}"
        );
    }

    #[test]
    fn signatures_are_checked_against_trusted_keys() {
        let signed = golden().to_bytes(Some(&key(1))).unwrap();
        let unsigned = golden().to_bytes(None).unwrap();
        let trusted = Verification::signed_by(vec![key(1).verifying_key()]);
        assert!(Bundle::from_bytes(&signed, &trusted).unwrap().signer.is_some());
        assert!(matches!(Bundle::from_bytes(&unsigned, &trusted), Err(BundleError::Unsigned)));
        let other = Verification::signed_by(vec![key(2).verifying_key()]);
        assert!(matches!(
            Bundle::from_bytes(&signed, &other),
            Err(BundleError::UntrustedSigner { .. })
        ));
        // Altering the manifest of a signed bundle (here: the model name) breaks the signature
        // even though the graph hashes still match.
        let mut tampered = signed.clone();
        let at = tampered.windows(6).position(|w| w == b"golden").unwrap();
        tampered[at] = b'G';
        assert!(matches!(Bundle::from_bytes(&tampered, &trusted), Err(BundleError::BadSignature)));
        let mut bad_sig = signed.clone();
        let last = bad_sig.len() - 1;
        bad_sig[last] ^= 0x40;
        assert!(matches!(
            Bundle::from_bytes(&bad_sig, &Verification::integrity_only()),
            Err(BundleError::BadSignature)
        ));
        let mut bad_tag = unsigned;
        let last = bad_tag.len() - 1;
        bad_tag[last] = 9;
        assert!(matches!(
            Bundle::from_bytes(&bad_tag, &Verification::integrity_only()),
            Err(BundleError::UnknownTrailer(9))
        ));
    }

    #[test]
    fn stage_and_graph_counts_must_agree() {
        assert!(matches!(
            Bundle::new(golden_manifest(), vec![vec![1]]),
            Err(BundleError::Inconsistent(_))
        ));
        let mut m = golden_manifest();
        m.stages.clear();
        assert!(matches!(Bundle::new(m, vec![]), Err(BundleError::Inconsistent(_))));
    }

    fn arb_class() -> impl Strategy<Value = Class> {
        prop_oneof![Just(Class::Cup), Just(Class::Rim), Just(Class::Background)]
    }

    fn arb_stage() -> impl Strategy<Value = Stage> {
        (
            ".{0,12}",
            any::<bool>(),
            (1u32..4096, 1u32..4096),
            proptest::array::uniform3(-10f32..10.0),
            proptest::option::of((0.1f32..8.0, 0f32..1.0)),
            proptest::collection::vec(arb_class(), 1..4),
            any::<bool>(),
        )
            .prop_map(|(name, locator, (w, h), mean, roi, classes, logits)| Stage {
                name,
                role: if locator { StageRole::Locator } else { StageRole::Segmenter },
                preprocess: PreprocessConfig {
                    width: w,
                    height: h,
                    mean,
                    roi: roi.map(|(context, min_side_fraction)| RoiPolicy {
                        context,
                        min_side_fraction,
                    }),
                    ..PreprocessConfig::default()
                },
                output: OutputSpec {
                    kind: if logits { OutputKind::Logits } else { OutputKind::Probabilities },
                    classes,
                },
                input_name: "x".into(),
                output_name: "y".into(),
                precision: Precision::F32,
                graph_len: 0,
                graph_sha256: [0; 32],
            })
    }

    fn arb_manifest() -> impl Strategy<Value = (Manifest, Vec<Vec<u8>>)> {
        (
            "\\PC{0,20}",
            any::<i64>(),
            proptest::collection::vec(
                (arb_stage(), proptest::collection::vec(any::<u8>(), 0..64)),
                1..4,
            ),
            proptest::option::of((any::<u32>(), any::<u64>(), -1e9f64..1e9, ".{0,30}")),
            proptest::collection::vec(("[a-z/0-9]{1,16}", 0usize..1000, 0f64..1.0), 0..3),
            proptest::option::of((proptest::collection::vec(any::<u8>(), 0..16), 0f64..1.0)),
        )
            .prop_map(|(name, created, stages, training, scores, selftest)| {
                let (stages, graphs): (Vec<_>, Vec<_>) = stages.into_iter().unzip();
                let manifest = Manifest {
                    name,
                    version: "0.0.1".into(),
                    created_unix_s: created,
                    papilla_version: "0.1.0".into(),
                    stages,
                    training: training.map(|(epochs, images, wall, cfg)| TrainingSummary {
                        data: vec!["a".into()],
                        epochs,
                        train_images: images,
                        val_images: images / 2,
                        wall_time_s: wall,
                        hardware: "cpu".into(),
                        config_json: cfg,
                    }),
                    scores: scores
                        .into_iter()
                        .map(|(test_set, n, d)| TestScores {
                            test_set,
                            precision: Precision::Int8Qdq,
                            summary: Summary {
                                n,
                                disc_dice: d,
                                vcdr_mae: d / 3.0,
                                ..Summary::default()
                            },
                        })
                        .collect(),
                    selftest: selftest.map(|(png, a)| SelfTest {
                        image_png: png.clone(),
                        expected_mask_png: png,
                        min_agreement: a,
                    }),
                    inference: InferenceOptions {
                        shape_fit: if created % 2 == 0 {
                            ShapeFit::None
                        } else {
                            ShapeFit::Ellipse
                        },
                        disc_centred_pad: (created % 3 == 0).then_some(1.75),
                        tta: if created % 5 == 0 {
                            TestTimeAugmentation::HorizontalFlip
                        } else {
                            TestTimeAugmentation::None
                        },
                    },
                };
                (manifest, graphs)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_manifests_round_trip((manifest, graphs) in arb_manifest(), signed in any::<bool>()) {
            let bundle = Bundle::new(manifest, graphs).unwrap();
            let k = key(3);
            let bytes = bundle.to_bytes(signed.then_some(&k)).unwrap();
            let loaded = Bundle::from_bytes(&bytes, &Verification::integrity_only()).unwrap();
            prop_assert_eq!(loaded.signer.is_some(), signed);
            prop_assert_eq!(loaded.bundle, bundle);
        }
    }
}
