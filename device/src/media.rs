//! Model updates from removable media: the service looks into a folder (the mount point of a
//! USB stick) for `*.papilla` files and installs a verified, self-tested bundle that is newer
//! than the model in use, through the same A/B slots as `install-model`.
//!
//! Each bundle is installed at most once: the SHA-256 of every bundle installed this way is
//! kept in `ROOT/models/media-installed` (`<sha256> <version> <file name>` per line), so a stick
//! left in the camera, or a rollback, never brings the same file back. A refused bundle (older,
//! untrusted, damaged, a copy still being written) is logged once per content and tried again
//! only when the file changes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use papilla_shared::bundle::Verification;
use papilla_shared::files;
use papilla_shared::runtime::Engine;
use sha2::{Digest, Sha256};

use crate::slots::{InstallPolicy, Slot, SlotError, Slots};
use crate::store::write_atomic;

/// What a look into the folder found.
#[derive(Debug)]
pub enum MediaEvent {
    /// Installed into `slot` and made current; [`MediaWatch::engine`] is now the new model,
    /// loaded and self-tested.
    Installed { file: PathBuf, slot: Slot, version: String },
    /// Not installed, with the reason (the folder's other bundles are still looked at).
    Refused { file: PathBuf, reason: String },
}

/// Watches one folder for bundles.
#[derive(Debug)]
pub struct MediaWatch {
    folder: PathBuf,
    slots: Slots,
    ledger: PathBuf,
    verification: Verification,
    threads: usize,
    interval: Duration,
    next_look: Option<Duration>,
    /// Files already looked at, by (path, length, modification time): not hashed again.
    looked_at: BTreeSet<(PathBuf, u64, Option<SystemTime>)>,
    /// Contents (SHA-256) installed from media, ever.
    installed: BTreeSet<String>,
    /// The model last installed from media, which replaces the one the service started with.
    engine: Option<Box<Engine>>,
}

impl MediaWatch {
    /// Watches `folder` every `interval`, installing into the slots under `root`.
    pub fn new(
        folder: &Path,
        root: &Path,
        verification: Verification,
        threads: usize,
        interval: Duration,
    ) -> Self {
        let ledger = root.join("models").join("media-installed");
        let installed = std::fs::read_to_string(&ledger)
            .map(|text| {
                text.lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            folder: folder.to_owned(),
            slots: Slots::new(root),
            ledger,
            verification,
            threads,
            interval,
            next_look: None,
            looked_at: BTreeSet::new(),
            installed,
            engine: None,
        }
    }

    /// The model installed from media since the service started, if any.
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_deref()
    }

    /// Looks into the folder if `interval` has passed since the last look; installs the first
    /// new bundle it finds (in name order) and returns what happened to each bundle it tried.
    /// A missing folder (no stick inserted) is not an event.
    pub fn poll(&mut self, now: Duration) -> Vec<MediaEvent> {
        if self.next_look.is_some_and(|t| now < t) {
            return Vec::new();
        }
        self.next_look = Some(now + self.interval);
        // Hidden files (macOS's `._x.papilla` on a stick) are never bundles.
        let Ok(listed) = files::list_files(&self.folder) else { return Vec::new() };
        let files: Vec<(PathBuf, u64, Option<SystemTime>)> = listed
            .into_iter()
            .filter(|p| files::has_extension(p, &[papilla_shared::bundle::EXTENSION]))
            .filter_map(|p| {
                let meta = std::fs::metadata(&p).ok()?;
                Some((p, meta.len(), meta.modified().ok()))
            })
            .collect();
        let mut events = Vec::new();
        for key in files {
            if !self.looked_at.insert(key.clone()) {
                continue;
            }
            let file = key.0;
            let refused = |reason: String| MediaEvent::Refused { file: file.clone(), reason };
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    events.push(refused(format!("cannot read: {e}")));
                    continue;
                }
            };
            let digest = papilla_shared::bundle::hex(&Sha256::digest(&bytes));
            if self.installed.contains(&digest) {
                continue;
            }
            match self.install(&bytes, &file, &digest) {
                Ok(event) => {
                    events.push(event);
                    break;
                }
                Err(e) => events.push(refused(papilla_shared::error::chain(&e))),
            }
        }
        events
    }

    fn install(
        &mut self,
        bytes: &[u8],
        file: &Path,
        digest: &str,
    ) -> Result<MediaEvent, SlotError> {
        // A bundle equal in version to the one in use is a repair for `install-model`, not an
        // update: from a stick only newer models go in.
        let policy = InstallPolicy { allow_downgrade: false, newer_only: true };
        let (slot, engine) =
            self.slots.install_bytes(bytes, file, &self.verification, self.threads, policy)?;
        let version = engine.manifest().version.clone();
        self.installed.insert(digest.to_owned());
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut ledger = std::fs::read_to_string(&self.ledger).unwrap_or_default();
        ledger
            .push_str(&format!("{digest} {version} {}\n", name.replace(char::is_whitespace, "_")));
        write_atomic(&self.ledger, ledger.as_bytes())?;
        self.engine = Some(Box::new(engine));
        Ok(MediaEvent::Installed { file: file.to_owned(), slot, version })
    }
}
