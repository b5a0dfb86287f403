//! Typed errors of the shared road. Each names the file or stage it is about, so a message
//! reaching a technician or a researcher says what to fix.

use thiserror::Error;

/// A ground-truth or predicted mask that cannot be read as cup / rim / background.
#[derive(Debug, Error)]
pub enum MaskError {
    #[error("{file}: cannot decode the mask")]
    Decode {
        file: String,
        #[source]
        source: image::ImageError,
    },
    #[error("{file}: the mask has no pixels")]
    Empty { file: String },
    #[error("{file}: unsupported mask colour mode {colour} (expected 8-bit grey or grey RGB)")]
    UnsupportedColour { file: String, colour: String },
    #[error(
        "{file}: pixel ({x}, {y}) has colour {rgb:?}, not a grey level (masks hold 0 cup, 128 rim, 255 background)"
    )]
    NotGrey { file: String, x: u32, y: u32, rgb: [u8; 3] },
    #[error("{file}: pixel ({x}, {y}) is transparent (alpha {alpha})")]
    Transparent { file: String, x: u32, y: u32, alpha: u8 },
    #[error("{file}: the mask is all background: no optic disc is marked")]
    AllBackground { file: String },
}

/// A preprocessing request that cannot be carried out.
#[derive(Debug, Error, PartialEq)]
pub enum PreprocessError {
    #[error("invalid preprocessing config: {0}")]
    InvalidConfig(String),
    #[error("the image is empty ({width}x{height})")]
    EmptyImage { width: u32, height: u32 },
    #[error("region of interest {roi} is not inside the {width}x{height} image")]
    RoiOutside { roi: String, width: u32, height: u32 },
}

/// Network output that does not match what the model bundle says it is.
#[derive(Debug, Error, PartialEq)]
pub enum PostprocessError {
    #[error("output has shape {shape:?} but the class map expects [N, {channels}, H, W]")]
    Shape { shape: Vec<usize>, channels: usize },
    #[error("output holds {actual} values but its shape {shape:?} needs {expected}")]
    Length { shape: Vec<usize>, expected: usize, actual: usize },
    #[error("output holds a non-finite value at batch {batch}, channel {channel}, ({x}, {y})")]
    NonFinite { batch: usize, channel: usize, x: usize, y: usize },
    #[error("class map is empty or names a class twice: {0:?}")]
    ClassMap(Vec<crate::labels::Class>),
}

/// A prediction and a ground truth that cannot be compared.
#[derive(Debug, Error, PartialEq)]
pub enum MetricsError {
    #[error("prediction is {pred_w}x{pred_h} but the ground truth is {truth_w}x{truth_h}")]
    SizeMismatch { pred_w: u32, pred_h: u32, truth_w: u32, truth_h: u32 },
}

/// A model bundle that cannot be trusted or read.
#[derive(Debug, Error)]
pub enum BundleError {
    #[error("not a Papilla model bundle (wrong magic bytes)")]
    BadMagic,
    #[error(
        "bundle format {major}.{minor} is not supported (this build reads {supported}.x); update Papilla"
    )]
    UnsupportedVersion { major: u16, minor: u16, supported: u16 },
    #[error(
        "bundle is truncated: {what} needs {needed} bytes at offset {offset}, {available} left"
    )]
    Truncated { what: &'static str, offset: usize, needed: usize, available: usize },
    #[error("bundle manifest cannot be decoded")]
    Manifest(#[source] postcard::Error),
    #[error("bundle manifest cannot be encoded")]
    Encode(#[source] postcard::Error),
    #[error("bundle manifest is inconsistent: {0}")]
    Inconsistent(String),
    #[error(
        "graph of stage {stage:?} is corrupted: SHA-256 {actual} does not match the manifest's {expected}"
    )]
    HashMismatch { stage: String, expected: String, actual: String },
    #[error("bundle has an unknown trailer tag {0:#04x}")]
    UnknownTrailer(u8),
    #[error("bundle has {0} unexpected bytes after its end")]
    TrailingBytes(usize),
    #[error("bundle signature is invalid: the bundle was altered or the signature forged")]
    BadSignature,
    #[error("bundle is signed by key {key}, which is not among the trusted keys")]
    UntrustedSigner { key: String },
    #[error("bundle is not signed, and only signed bundles are accepted")]
    Unsigned,
}

/// An error and its causes on one line, `outer: cause: root cause`: how a binary prints an
/// error once. Messages hold their own context only; the cause is in `source()`.
#[derive(Debug)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

/// [`Chain`] as a `String`, for records and logs that keep the message.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    Chain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Error)]
    #[error("x.papilla: cannot read the model bundle")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_chain_prints_each_cause_once() {
        let e = Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"));
        assert_eq!(chain(&e), "x.papilla: cannot read the model bundle: no such file");
        assert_eq!(chain(&BundleError::BadMagic), BundleError::BadMagic.to_string());
    }
}
