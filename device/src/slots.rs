//! Two model slots, so a technician can install an update and always get back to a model that
//! worked.
//!
//! ```text
//! ROOT/models/slot-a.papilla   ROOT/models/slot-b.papilla
//! ROOT/models/current          "a" or "b": the slot in use
//! ```
//!
//! `install` verifies the bundle (hashes; the signature against the config's trusted keys),
//! loads it, runs its self-test, writes it into the slot not in use (temporary file, fsync,
//! rename) and then switches `current` the same way. A power cut at any point leaves `current`
//! naming a complete, verified bundle. An install refuses a model older (semver) than the one in
//! use unless downgrades are allowed, as RAUC and Mender do: an old signed bundle stays signed,
//! so a signature alone cannot keep a withdrawn model off the camera. `rollback` is the way back.
//! At start-up a model that fails to load or fails its self-test makes the service fall back to
//! the other slot.

use std::path::{Path, PathBuf};

use papilla_shared::bundle::{Bundle, Loaded, Verification};
use papilla_shared::runtime::{Engine, RuntimeError};
use serde::Serialize;
use thiserror::Error;

use crate::store::{StoreError, sync_dir, write_atomic};

#[derive(Debug, Error)]
pub enum SlotError {
    #[error("{}: cannot read", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot load the model", path.display())]
    Model {
        path: PathBuf,
        #[source]
        source: RuntimeError,
    },
    #[error("{}: refused: {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no usable model installed in {} ({tried})", dir.display())]
    NoModel { dir: PathBuf, tried: String },
}

/// One of the two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    fn letter(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

/// What an install may do beyond a verified, self-tested bundle.
#[derive(Clone, Copy, Debug, Default)]
pub struct InstallPolicy {
    /// Install a model older than the one in use.
    pub allow_downgrade: bool,
    /// Refuse the version in use too (updates from removable media).
    pub newer_only: bool,
}

/// Orders two model versions (semver: 0.10.0 > 0.9.1, 1.0.0-rc.1 < 1.0.0).
pub fn compare_versions(a: &str, b: &str) -> Result<std::cmp::Ordering, semver::Error> {
    Ok(semver::Version::parse(a)?.cmp(&semver::Version::parse(b)?))
}

/// The model folder of a device.
#[derive(Clone, Debug)]
pub struct Slots {
    dir: PathBuf,
}

/// A model loaded from a slot and shown to pass its self-test.
#[derive(Debug)]
pub struct Active {
    pub slot: Slot,
    pub path: PathBuf,
    pub engine: Engine,
    /// Fraction of self-test pixels that matched.
    pub selftest_agreement: f64,
    /// Signed by this key (hex), if signed.
    pub signer: Option<String>,
}

impl Slots {
    pub fn new(root: &Path) -> Self {
        Self { dir: root.join("models") }
    }

    pub fn path(&self, slot: Slot) -> PathBuf {
        self.dir.join(format!("slot-{}.papilla", slot.letter()))
    }

    /// The slot `current` names; `None` before the first install.
    pub fn current(&self) -> Option<Slot> {
        match std::fs::read_to_string(self.dir.join("current")).ok()?.trim() {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }

    fn set_current(&self, slot: Slot) -> Result<(), SlotError> {
        write_atomic(&self.dir.join("current"), slot.letter().as_bytes())?;
        Ok(())
    }

    /// Verifies, loads and self-tests bundle bytes; `path` names them in errors.
    pub fn check(
        bytes: &[u8],
        path: &Path,
        verification: &Verification,
        threads: usize,
    ) -> Result<(Engine, f64, Option<String>), SlotError> {
        let loaded = Bundle::from_bytes(bytes, verification)
            .map_err(|e| SlotError::Model { path: path.to_owned(), source: e.into() })?;
        Self::check_loaded(loaded, path, threads)
    }

    /// Loads and self-tests a bundle already read and verified.
    fn check_loaded(
        loaded: Loaded,
        path: &Path,
        threads: usize,
    ) -> Result<(Engine, f64, Option<String>), SlotError> {
        let refused = |reason: String| SlotError::Refused { path: path.to_owned(), reason };
        let model = |source| SlotError::Model { path: path.to_owned(), source };
        let engine = Engine::new(&loaded.bundle, threads).map_err(model)?;
        let result = engine.self_test().map_err(model)?.ok_or_else(|| {
            refused("the bundle has no self-test (export it with `papilla export`)".into())
        })?;
        if !result.passed() {
            return Err(refused(format!(
                "self-test failed: {:.4} of pixels agree, {:.4} required",
                result.agreement, result.required
            )));
        }
        let signer = loaded.signer.map(|k| papilla_shared::bundle::hex(k.as_bytes()));
        Ok((engine, result.agreement, signer))
    }

    /// Installs a bundle into the slot not in use and makes it current; returns that slot.
    /// Refuses a downgrade ([`Slots::install_with`] with `allow_downgrade` installs one).
    pub fn install(
        &self,
        file: &Path,
        verification: &Verification,
        threads: usize,
    ) -> Result<Slot, SlotError> {
        self.install_with(file, verification, threads, InstallPolicy::default())
            .map(|(slot, _)| slot)
    }

    /// The version of the model in use, if a readable one is installed.
    pub fn current_version(&self) -> Option<String> {
        let bytes = std::fs::read(self.path(self.current()?)).ok()?;
        let loaded = Bundle::from_bytes(&bytes, &Verification::integrity_only()).ok()?;
        Some(loaded.bundle.manifest().version.clone())
    }

    /// [`Slots::install`] under `policy`; also returns the installed model, loaded and
    /// self-tested.
    pub fn install_with(
        &self,
        file: &Path,
        verification: &Verification,
        threads: usize,
        policy: InstallPolicy,
    ) -> Result<(Slot, Engine), SlotError> {
        let bytes = std::fs::read(file)
            .map_err(|source| SlotError::Read { path: file.to_owned(), source })?;
        self.install_bytes(&bytes, file, verification, threads, policy)
    }

    /// [`Slots::install_with`] of bundle bytes already read from `file` (which names them in
    /// errors).
    pub fn install_bytes(
        &self,
        bytes: &[u8],
        file: &Path,
        verification: &Verification,
        threads: usize,
        policy: InstallPolicy,
    ) -> Result<(Slot, Engine), SlotError> {
        // Signature and version first: an older bundle is refused without loading the model
        // and running its self-test (an inference, seconds on a Pi).
        let loaded = Bundle::from_bytes(bytes, verification)
            .map_err(|e| SlotError::Model { path: file.to_owned(), source: e.into() })?;
        if !policy.allow_downgrade
            && let Some(installed) = self.current_version()
        {
            let refused = |reason: String| SlotError::Refused { path: file.to_owned(), reason };
            let new = &loaded.bundle.manifest().version;
            match compare_versions(new, &installed) {
                Ok(std::cmp::Ordering::Less) => {
                    return Err(refused(format!(
                        "model {new} is older than the installed {installed}: pass --allow-downgrade to install it anyway (`rollback` returns to the previous slot)"
                    )));
                }
                Ok(std::cmp::Ordering::Equal) if policy.newer_only => {
                    return Err(refused(format!("model {new} is the one in use")));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(refused(format!(
                        "cannot tell whether {new} is older than the installed {installed} ({e}): pass --allow-downgrade to install it anyway"
                    )));
                }
            }
        }
        let (engine, _, _) = Self::check_loaded(loaded, file, threads)?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|source| SlotError::Read { path: self.dir.clone(), source })?;
        let target = self.current().map_or(Slot::A, Slot::other);
        write_atomic(&self.path(target), bytes)?;
        self.set_current(target)?;
        sync_dir(&self.dir)?;
        Ok((target, engine))
    }

    /// Switches to the other slot, after checking that its model passes.
    pub fn rollback(&self, verification: &Verification, threads: usize) -> Result<Slot, SlotError> {
        let current = self.current().ok_or_else(|| SlotError::NoModel {
            dir: self.dir.clone(),
            tried: "nothing installed".into(),
        })?;
        let target = current.other();
        let path = self.path(target);
        let bytes = std::fs::read(&path)
            .map_err(|source| SlotError::Read { path: path.clone(), source })?;
        Self::check(&bytes, &path, verification, threads)?;
        self.set_current(target)?;
        Ok(target)
    }

    /// Loads the current model; if it fails to verify, load or pass its self-test, the other
    /// slot's (and `current` is switched to it, so the next start does not try again).
    pub fn open(&self, verification: &Verification, threads: usize) -> Result<Active, SlotError> {
        let first = self.current().unwrap_or(Slot::A);
        let mut tried = Vec::new();
        for slot in [first, first.other()] {
            let path = self.path(slot);
            let Ok(bytes) = std::fs::read(&path) else {
                tried.push(format!("slot {}: empty", slot.letter()));
                continue;
            };
            match Self::check(&bytes, &path, verification, threads) {
                Ok((engine, agreement, signer)) => {
                    if self.current() != Some(slot) {
                        tracing::warn!(
                            slot = slot.letter(),
                            "falling back to the other model slot"
                        );
                        self.set_current(slot)?;
                    }
                    return Ok(Active {
                        slot,
                        path,
                        engine,
                        selftest_agreement: agreement,
                        signer,
                    });
                }
                Err(e) => {
                    let e = papilla_shared::error::chain(&e);
                    tracing::error!(error = %e, "model slot unusable");
                    tried.push(format!("slot {}: {e}", slot.letter()));
                }
            }
        }
        Err(SlotError::NoModel { dir: self.dir.clone(), tried: tried.join("; ") })
    }
}
