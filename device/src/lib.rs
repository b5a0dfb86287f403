//! `papilla-device`: the service on the Raspberry Pi inside a portable fundus camera.
//!
//! Its exam runs the same `papilla-shared` road as the host. Capture, GPIO, storage and model
//! updates arrive with the device issue; today the crate defines the command line.

pub mod cli;
