//! `papilla-host`: the commands a researcher runs on the training host. The binary `papilla`
//! is a thin shell over this library; every image goes through `papilla-shared`.

pub mod app;
pub mod augment;
pub mod average;
pub mod backend;
pub mod charts;
pub mod cli;
pub mod data;
pub mod export;
pub mod history;
pub mod inference;
pub mod loss;
pub mod masks;
pub mod model;
pub mod onnx;
pub mod plot;
pub mod progress;
pub mod report;
pub mod run_dir;
pub mod score;
pub mod train_config;
pub mod training;
