//! `papilla-device`: the service on the Raspberry Pi inside a portable fundus camera.
//!
//! Every exam runs the same `papilla-shared` road as the host (the shared runtime). The
//! hardware sits behind traits ([`camera::FrameSource`], `embedded_hal::digital` pins in
//! [`board`], [`clock::Clock`]), so the whole service runs in tests on any machine.
//!
//! Modules: [`config`] (TOML settings), [`camera`] (frame sources), [`board`] (button and
//! LEDs), [`photo`] (safe decoding), [`quality`] (the quality gate), [`record`] (what an exam leaves, as data), [`exam`] (one exam),
//! [`store`] (power-safe exam storage), [`slots`] (model updates), [`media`] (updates from a USB
//! stick), [`service`] (the loop),
//! [`segment`] (one-shot exams), [`bench`] (per-stage timings), [`soak`] (long runs).

pub mod bench;
pub mod board;
pub mod camera;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod exam;
pub mod fuzzing;
pub mod media;
/// The shared photograph decoder, with the camera's options as its default.
pub use papilla_shared::photo;
pub mod quality;
pub mod record;
pub mod segment;
pub mod service;
pub mod slots;
pub mod soak;
pub mod status;
pub mod store;
