//! Exams on disk, safe against power loss.
//!
//! ```text
//! ROOT/exams/index.bin        append-only: magic, then frames [len u32 LE][crc32 u32 LE][postcard]
//! ROOT/exams/00000042/        one folder per completed exam: photo, mask.bmp, overlay.png, record.json
//! ROOT/exams/.tmp-00000042/   an exam being written (deleted on start)
//! ```
//!
//! An exam's files are written into a temporary folder and each fsynced; the folder is renamed
//! into place and its parent fsynced; then its index entry is appended and fsynced. "Completed"
//! means the entry is on disk. On start the index is read frame by frame: a torn or corrupt
//! tail (a power cut during an append) is cut off, temporary folders are removed, and an exam
//! folder that made it into place but not into the index is indexed from its record, so no
//! completed exam is lost. A failed append is truncated back, so a full disk never corrupts the
//! entries before it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use papilla_shared::files::{self, Durability};
use thiserror::Error;

use crate::record::{ExamRecord, IndexEntry};

const MAGIC: &[u8; 8] = b"PPLIDX1\0";
const FRAME_HEADER: usize = 8;
/// Largest entry accepted; a length beyond it means a corrupt frame.
const MAX_ENTRY: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not an exam index (bad magic)", path.display())]
    NotAnIndex { path: PathBuf },
    #[error("{}: in use by another papilla-device process", path.display())]
    Locked { path: PathBuf },
    #[error("disk full: {available_mb} MB free at {}, at least {required_mb} MB required", path.display())]
    DiskFull { path: PathBuf, available_mb: u64, required_mb: u64 },
}

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
    let path = path.to_owned();
    move |source| StoreError::Io { path, what, source }
}

/// A file to put in an exam folder.
#[derive(Debug)]
pub struct ExamFile<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// The exam store of one device.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    index: File,
    entries: Vec<IndexEntry>,
    min_free_bytes: u64,
    /// What start-up repaired, for the log and tests.
    pub recovery: Recovery,
}

/// What [`Store::open`] found and mended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovery {
    /// Bytes of a torn or corrupt tail cut from the index.
    pub cut_bytes: u64,
    /// Temporary exam folders removed.
    pub removed_tmp: usize,
    /// Exam folders indexed from their record (the power went between rename and append).
    pub reindexed: usize,
}

/// Syncs a directory, so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    files::sync_dir(dir).map_err(io(dir, "cannot sync the folder"))
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename (power-safe).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    files::write_atomic(path, bytes, Durability::Synced).map_err(io(path, "cannot write"))
}

fn frame(entry: &IndexEntry) -> Vec<u8> {
    let payload = postcard::to_allocvec(entry).expect("an index entry serialises");
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Reads frames from `bytes` (after the magic); returns the entries and the end of the last good one.
fn read_frames(bytes: &[u8]) -> (Vec<IndexEntry>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= FRAME_HEADER {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len > MAX_ENTRY || bytes.len() - at - FRAME_HEADER < len {
            break;
        }
        let payload = &bytes[at + FRAME_HEADER..at + FRAME_HEADER + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        match postcard::from_bytes::<IndexEntry>(payload) {
            Ok(e) => entries.push(e),
            Err(_) => break,
        }
        at += FRAME_HEADER + len;
    }
    (entries, at)
}

/// The completed frames of an index file's contents, without repairing anything; the second
/// value is where the last good frame ends (a torn or corrupt tail starts there). Contents
/// shorter than the magic are an index torn while it was created: empty. `path` names the file
/// in the error. The one parser of `index.bin`, for `open`, `read_index` and the fuzzers.
pub fn parse_index(bytes: &[u8], path: &Path) -> Result<(Vec<IndexEntry>, usize), StoreError> {
    if bytes.len() < MAGIC.len() {
        return Ok((Vec::new(), bytes.len()));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(StoreError::NotAnIndex { path: path.to_owned() });
    }
    let (entries, good) = read_frames(&bytes[MAGIC.len()..]);
    Ok((entries, MAGIC.len() + good))
}

/// The completed frames of the index under `root`, without repairing anything: for `status`
/// and `export-results`, which may run beside the service.
pub fn read_index(root: &Path) -> Result<Vec<IndexEntry>, StoreError> {
    let path = root.join("exams").join("index.bin");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::Io { path, what: "cannot read the exam index", source });
        }
    };
    Ok(parse_index(&bytes, &path)?.0)
}

/// The index entry an orphan folder's `record.json` (its contents) gives, if it parses and
/// names the folder's own exam number.
pub fn orphan_entry(record_json: &[u8], id: u64) -> Option<IndexEntry> {
    serde_json::from_slice::<ExamRecord>(record_json)
        .ok()
        .filter(|r| r.id == id)
        .map(|r| r.index_entry())
}

fn folder_name(id: u64) -> String {
    format!("{id:08}")
}

impl Store {
    /// Opens (creating if needed) the store under `root/exams`, repairing what a power cut left.
    pub fn open(root: &Path, min_free_bytes: u64) -> Result<Self, StoreError> {
        let dir = root.join("exams");
        std::fs::create_dir_all(&dir).map_err(io(&dir, "cannot create the exam folder"))?;
        let path = dir.join("index.bin");
        let mut index = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path, "cannot open the exam index"))?;
        // One writer at a time: a second service (or a test) gets a clear error, not a race.
        use fs4::fs_std::FileExt;
        if !index.try_lock_exclusive().map_err(io(&path, "cannot lock the exam index"))? {
            return Err(StoreError::Locked { path });
        }
        let mut bytes = Vec::new();
        index.read_to_end(&mut bytes).map_err(io(&path, "cannot read the exam index"))?;
        let mut recovery = Recovery::default();
        if bytes.len() < MAGIC.len() {
            // New, or torn while the magic was written (nothing was stored yet).
            index.set_len(0).map_err(io(&path, "cannot reset the exam index"))?;
            index.write_all(MAGIC).map_err(io(&path, "cannot write the exam index"))?;
            index.sync_all().map_err(io(&path, "cannot sync the exam index"))?;
            sync_dir(&dir)?;
            bytes = MAGIC.to_vec();
        }
        let (mut entries, good) = parse_index(&bytes, &path)?;
        let end = good as u64;
        if end < bytes.len() as u64 {
            recovery.cut_bytes = bytes.len() as u64 - end;
            tracing::warn!(index = %path.display(), bytes = recovery.cut_bytes, "cutting a torn tail off the exam index");
            index.set_len(end).map_err(io(&path, "cannot cut the torn tail"))?;
            index.sync_all().map_err(io(&path, "cannot sync the exam index"))?;
        }
        index.seek(SeekFrom::End(0)).map_err(io(&path, "cannot seek the exam index"))?;

        // Folders: remove temporaries, index completed folders the index lacks.
        let known: std::collections::HashSet<u64> = entries.iter().map(|e| e.id).collect();
        let mut orphans = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io(&dir, "cannot list the exam folder"))? {
            let p = e.map_err(io(&dir, "cannot list the exam folder"))?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
            if name.starts_with(".tmp-") {
                std::fs::remove_dir_all(&p).map_err(io(&p, "cannot remove a temporary exam"))?;
                recovery.removed_tmp += 1;
            } else if let Ok(id) = name.parse::<u64>()
                && p.is_dir()
                && !known.contains(&id)
            {
                orphans.push((id, p));
            }
        }
        let mut store = Self { dir, index, entries: Vec::new(), min_free_bytes, recovery };
        orphans.sort();
        for (id, p) in orphans {
            let record = p.join("record.json");
            match std::fs::read(&record).ok().and_then(|b| orphan_entry(&b, id)) {
                Some(entry) => {
                    store.append(&entry)?;
                    entries.push(entry);
                    store.recovery.reindexed += 1;
                }
                _ => {
                    // Cannot happen through `commit` (the record is written before the
                    // rename); leave it for a person, outside the numbering.
                    let aside =
                        store.dir.join(format!("unreadable-{name}", name = folder_name(id)));
                    tracing::warn!(folder = %p.display(), "exam folder without a readable record: moved aside");
                    std::fs::rename(&p, &aside).map_err(io(&p, "cannot move aside"))?;
                }
            }
        }
        entries.sort_by_key(|e| e.id);
        store.entries = entries;
        if store.recovery != Recovery::default() {
            tracing::info!(recovery = ?store.recovery, "exam store repaired");
        }
        Ok(store)
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The id the next exam gets.
    pub fn next_id(&self) -> u64 {
        self.entries.last().map_or(1, |e| e.id + 1)
    }

    /// The folder of a completed exam.
    pub fn exam_dir(&self, id: u64) -> PathBuf {
        self.dir.join(folder_name(id))
    }

    /// Free space at the store, in bytes.
    pub fn available(&self) -> Result<u64, StoreError> {
        fs4::available_space(&self.dir).map_err(io(&self.dir, "cannot read the free space"))
    }

    /// Refuses when less than the configured minimum plus `about` bytes is free.
    pub fn check_space(&self, about: u64) -> Result<(), StoreError> {
        let available = self.available()?;
        let required = self.min_free_bytes + about;
        if available < required {
            return Err(StoreError::DiskFull {
                path: self.dir.clone(),
                available_mb: available >> 20,
                required_mb: required.div_ceil(1 << 20),
            });
        }
        Ok(())
    }

    /// Stores a completed exam: its files (in a folder) and then its index entry. On any
    /// error the partial folder is removed and the index is as before.
    pub fn commit(
        &mut self,
        entry: &IndexEntry,
        files: &[ExamFile<'_>],
    ) -> Result<PathBuf, StoreError> {
        let total: u64 = files.iter().map(|f| f.bytes.len() as u64).sum();
        self.check_space(total)?;
        let tmp = self.dir.join(format!(".tmp-{}", folder_name(entry.id)));
        let dest = self.exam_dir(entry.id);
        let result = (|| {
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp).map_err(io(&tmp, "cannot clear"))?;
            }
            std::fs::create_dir(&tmp).map_err(io(&tmp, "cannot create"))?;
            for f in files {
                let p = tmp.join(f.name);
                let mut file = File::create(&p).map_err(io(&p, "cannot create"))?;
                file.write_all(f.bytes).map_err(io(&p, "cannot write"))?;
                file.sync_all().map_err(io(&p, "cannot sync"))?;
            }
            sync_dir(&tmp)?;
            std::fs::rename(&tmp, &dest).map_err(io(&dest, "cannot rename into place"))?;
            sync_dir(&self.dir)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = self.append(entry) {
            // Without its entry the folder would be re-indexed on the next start; remove it so
            // the exam is cleanly "not stored", as the caller is told.
            let _ = std::fs::remove_dir_all(&dest);
            return Err(e);
        }
        self.entries.push(entry.clone());
        Ok(dest)
    }

    /// Records an exam that stored no files (refused or failed).
    pub fn note(&mut self, entry: &IndexEntry) -> Result<(), StoreError> {
        self.append(entry)?;
        self.entries.push(entry.clone());
        Ok(())
    }

    fn append(&mut self, entry: &IndexEntry) -> Result<(), StoreError> {
        let path = self.dir.join("index.bin");
        let at = self.index.seek(SeekFrom::End(0)).map_err(io(&path, "cannot seek"))?;
        let r = self.index.write_all(&frame(entry)).and_then(|()| self.index.sync_data());
        if let Err(source) = r {
            // Take back a partial frame, so later entries are not written after garbage.
            let _ = self.index.set_len(at);
            let _ = self.index.seek(SeekFrom::Start(at));
            return Err(StoreError::Io { path, what: "cannot append to the exam index", source });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;

    fn entry(id: u64) -> IndexEntry {
        IndexEntry {
            id,
            unix_ms: 1_790_000_000_000 + id as i64,
            source: format!("p{id}.jpg"),
            outcome: Outcome::Completed,
            vcdr: 0.4,
            disc_area_px: 1000,
            cup_area_px: 160,
            refer: false,
            model: "m 1".into(),
        }
    }

    #[test]
    fn a_torn_tail_is_cut_and_every_complete_entry_kept() {
        let root = tempfile::tempdir().unwrap();
        {
            let mut s = Store::open(root.path(), 0).unwrap();
            for id in 1..=3 {
                s.note(&entry(id)).unwrap();
            }
        }
        let path = root.path().join("exams/index.bin");
        let full = std::fs::read(&path).unwrap();
        let one = frame(&entry(4));
        // Every possible cut of a fourth frame, and a corrupt byte in it.
        for cut in 0..one.len() {
            let mut b = full.clone();
            b.extend_from_slice(&one[..cut]);
            std::fs::write(&path, &b).unwrap();
            let s = Store::open(root.path(), 0).unwrap();
            assert_eq!(
                s.entries().iter().map(|e| e.id).collect::<Vec<_>>(),
                [1, 2, 3],
                "cut {cut}"
            );
            assert_eq!(s.recovery.cut_bytes, cut as u64);
            assert_eq!(std::fs::read(&path).unwrap(), full);
        }
        let mut b = full.clone();
        let mut bad = one.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        b.extend_from_slice(&bad);
        std::fs::write(&path, &b).unwrap();
        let mut s = Store::open(root.path(), 0).unwrap();
        assert_eq!(s.entries().len(), 3);
        assert_eq!(s.next_id(), 4);
        s.note(&entry(4)).unwrap();
        drop(s);
        assert_eq!(Store::open(root.path(), 0).unwrap().entries().len(), 4);
    }

    #[test]
    fn a_foreign_file_is_not_taken_for_an_index() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("exams")).unwrap();
        std::fs::write(root.path().join("exams/index.bin"), b"something else entirely").unwrap();
        let e = Store::open(root.path(), 0).unwrap_err();
        assert!(e.to_string().contains("not an exam index"), "{e}");
    }

    #[test]
    fn commit_writes_a_folder_and_refuses_when_the_disk_is_full() {
        let root = tempfile::tempdir().unwrap();
        let mut s = Store::open(root.path(), 0).unwrap();
        let dest = s.commit(&entry(1), &[ExamFile { name: "a.txt", bytes: b"hello" }]).unwrap();
        assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"hello");
        // One writer at a time.
        assert!(matches!(Store::open(root.path(), 0).unwrap_err(), StoreError::Locked { .. }));
        drop(s);
        // A store that demands more free space than any disk has.
        let mut full = Store::open(root.path(), u64::MAX / 4).unwrap();
        let e = full.commit(&entry(2), &[ExamFile { name: "a.txt", bytes: b"x" }]).unwrap_err();
        assert!(matches!(e, StoreError::DiskFull { .. }), "{e}");
        assert!(!full.exam_dir(2).exists());
        drop(full);
        assert_eq!(Store::open(root.path(), 0).unwrap().entries().len(), 1);
        // A temporary folder left by a crash is removed on start.
        std::fs::create_dir(root.path().join("exams/.tmp-00000009")).unwrap();
        assert_eq!(Store::open(root.path(), 0).unwrap().recovery.removed_tmp, 1);
    }
}
