//! papilla-device integration tests: the service loop with mock pins, model slots, and the
//! binary under power cuts. They use the shipped model (models/papilla-default.papilla) and
//! synthetic photographs; nothing needs a board, a camera or a network.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod bad_photos;
mod board;
mod cli;
mod common;
mod fuzz;
mod media;
mod powercut;
mod service;
mod slots;
mod soak;
