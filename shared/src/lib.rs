//! `papilla-shared`: the one road every fundus image takes in Papilla, on the training host and
//! on the Raspberry Pi alike.
//!
//! decode -> [`preprocess`] (crop, resize, normalise, NCHW) -> model (burn while training, an
//! exported bundle elsewhere) -> [`postprocess`] (argmax, anatomical clean-up, back to the
//! photograph's size) -> [`labels`] (0/128/255 masks) -> [`metrics`] (REFUGE's definitions).
//! The parameters of that road travel inside the model [`bundle`].
//!
//! This crate never depends on burn and does no device I/O; its only file I/O is [`files`]
//! (folder listing and atomic writes, shared by host and device) and, with feature `runtime`,
//! the bundle loader of [`runtime`], which runs exported bundles with tract.

pub mod bundle;
pub mod error;
pub mod files;
pub mod labels;
pub mod metrics;
pub mod overlay;
pub mod photo;
pub mod postprocess;
pub mod preprocess;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod synth;

pub use error::{BundleError, MaskError, MetricsError, PostprocessError, PreprocessError};
pub use labels::{Class, DecodedMask, LabelMap};
