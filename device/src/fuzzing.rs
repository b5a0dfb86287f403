//! The parsers that take bytes from outside the device (a USB stick, an SD card, the camera),
//! as fuzz targets: `fuzz/` runs them under libFuzzer (`cargo +nightly fuzz run NAME`) and
//! `tests/fuzz.rs` runs them on stable over the committed corpus and mutations of it, so CI
//! exercises the same code. Each returns whether the input was accepted (the parser's message
//! when not); none may panic, hang or allocate without bound, whatever the bytes.

use std::path::Path;

use papilla_shared::bundle::{Bundle, Verification};
use papilla_shared::labels::{MaskRole, decode_mask_bytes};

use crate::config::DeviceConfig;
use crate::photo::{DecodeOptions, decode};
use crate::store::{orphan_entry, parse_index};

/// Accepted, or refused with the parser's message.
pub type Outcome = Result<(), String>;

/// A fuzz target: any bytes in, an outcome out, never a panic.
pub type Target = fn(&[u8]) -> Outcome;

/// The targets by name (the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`).
pub const TARGETS: [(&str, Target); 5] =
    [("bundle", bundle), ("index", index), ("mask", mask), ("config", config), ("photo", photo)];

/// The fixed signing key `[7; 32]` of the corpus's signed bundles (the golden bundles'), which
/// the field verification of [`bundle`] trusts.
pub fn corpus_signer() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// A model bundle, read as a host tool does (integrity only) and as a device in the field does
/// (signed by the corpus key only).
pub fn bundle(data: &[u8]) -> Outcome {
    let field = Verification::signed_by(vec![corpus_signer().verifying_key()]);
    // The field reader's answer is not the outcome (most inputs are unsigned); it must only
    // return.
    let _ = Bundle::from_bytes(data, &field);
    Bundle::from_bytes(data, &Verification::integrity_only()).map(drop).map_err(|e| e.to_string())
}

/// The exam index `index.bin`, and an orphan folder's `record.json` as start-up recovery
/// reads it.
pub fn index(data: &[u8]) -> Outcome {
    let _ = orphan_entry(data, 1);
    let (entries, good) = parse_index(data, Path::new("index.bin")).map_err(|e| e.to_string())?;
    // The good prefix re-parses to the same entries: recovery cuts the tail there.
    let (again, at) = parse_index(&data[..good], Path::new("index.bin"))
        .map_err(|e| format!("the good prefix does not parse: {e}"))?;
    assert!(again == entries && at == good, "the good prefix of an index parses differently");
    Ok(())
}

/// A mask file (BMP or PNG), as ground truth and as a prediction.
pub fn mask(data: &[u8]) -> Outcome {
    let _ = decode_mask_bytes(data, "fuzz.bmp", MaskRole::Prediction);
    decode_mask_bytes(data, "fuzz.bmp", MaskRole::Truth).map(drop).map_err(|e| e.to_string())
}

/// The device's TOML configuration.
pub fn config(data: &[u8]) -> Outcome {
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
    let cfg = DeviceConfig::parse(text, Path::new("device.toml")).map_err(|e| e.to_string())?;
    // What start-up derives from a valid config must not fail either.
    cfg.verification()?;
    Ok(())
}

/// A photograph, named as a JPEG and as a PNG (the name decides which decoder may run), with
/// the device's default IDCT scaling, and read as the host reads a data set. The pixel limit
/// is 1 megapixel, not a camera's 16: the code paths are the same on either side of the limit,
/// and a fuzzer-grown corpus of inputs declaring 16 megapixels decoded three times each ran at
/// 80 inputs a second under ASAN (10^6 runs would take 3.5 hours).
pub fn photo(data: &[u8]) -> Outcome {
    const MAX_PIXELS: u64 = 1_000_000;
    let opts = DecodeOptions { min_side: 640, max_pixels: MAX_PIXELS, ..DecodeOptions::default() };
    let png = decode(data, Path::new("fuzz.png"), &opts);
    let jpeg = decode(data, Path::new("fuzz.jpg"), &opts);
    // And as the host reads a data set: by content, JPEG, PNG or BMP, colours converted.
    let host = DecodeOptions { max_pixels: MAX_PIXELS, ..DecodeOptions::data_set() };
    let data_set = decode(data, Path::new("fuzz"), &host);
    if let Ok(p) = &data_set {
        assert_eq!(p.image.dimensions(), p.original, "a data set's photograph is not scaled");
    }
    for p in [&png, &jpeg, &data_set].into_iter().flatten() {
        let (w, h) = p.original;
        assert!(p.image.width() <= w && p.image.height() <= h, "decoded larger than declared");
    }
    match (jpeg, png) {
        (Ok(_), _) | (_, Ok(_)) => Ok(()),
        (Err(e), _) => Err(e.to_string()),
    }
}
