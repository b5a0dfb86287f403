//! Integration tests of the `papilla` binary (one test binary per crate).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod score_cli;
