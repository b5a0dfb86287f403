//! Reading mask files from disk with errors that name the file.

use std::path::{Path, PathBuf};

use papilla_shared::labels::{self, MaskRole};
use papilla_shared::{DecodedMask, MaskError};
use thiserror::Error;

/// A mask file that cannot be used.
#[derive(Debug, Error)]
pub enum MaskFileError {
    #[error("{}: cannot read", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Mask(#[from] MaskError),
}

/// Reads and decodes one mask file (BMP or PNG, 0/128/255).
pub fn read_mask(path: &Path, role: MaskRole) -> Result<DecodedMask, MaskFileError> {
    let bytes = std::fs::read(path)
        .map_err(|source| MaskFileError::Io { path: path.to_owned(), source })?;
    Ok(labels::decode_mask_bytes(&bytes, &path.display().to_string(), role)?)
}

/// True for the extensions Papilla reads masks from.
pub fn is_mask_file(path: &Path) -> bool {
    papilla_shared::files::has_extension(path, &["bmp", "png"])
}
