//! `papilla-host`: the commands a researcher runs on the training host. The binary `papilla`
//! is a thin shell over this library; every image goes through `papilla-shared`.

pub mod app;
pub mod augment;
pub mod backend;
pub mod charts;
pub mod cli;
pub mod data;
pub mod export;
pub mod inference;
pub mod masks;
pub mod model;
pub mod onnx;
pub mod plot;
pub mod progress;
pub mod report;
pub mod score;
pub mod training;
