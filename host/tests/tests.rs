//! Integration tests of the `papilla` binary (one test binary per crate).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;
mod data_loaders;
#[cfg(feature = "gpu")]
mod gpu;
mod gpu_kit;
mod judge;
mod score_cli;
#[cfg(feature = "tch")]
mod tch;
mod train_cli;
