//! `papilla-device`: the service on the Raspberry Pi inside a portable fundus camera.
//!
//! Its exam runs the same `papilla-shared` road as the host (the shared runtime). Built so far:
//! one-shot exams ([`segment`]). Capture, GPIO, storage and model updates are still to come.

pub mod cli;
pub mod segment;
