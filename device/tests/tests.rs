//! papilla-device integration tests: the service loop with mock pins, model slots, and the
//! binary under power cuts. They use a small test bundle trained on synthetic photographs
//! (`tests/fixtures/synthetic-c2f.papilla`, from `scripts/make-test-bundle.sh`) and synthetic
//! photographs, so they pass with the shipped model deleted; only
//! `the_shipped_model_is_signed_by_the_release_key_the_example_config_trusts` reads the shipped
//! model. Nothing needs a board, a camera or a network.

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
