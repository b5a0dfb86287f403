//! `papilla-host`: the commands a researcher runs on the training host. The binary `papilla`
//! is a thin shell over this library; every image goes through `papilla-shared`.

pub mod cli;
pub mod masks;
pub mod score;
