//! The file handling host and device share: which names are photographs, a folder's files in
//! name order, and writes that never leave half a file behind (issue 15: four listers, five
//! extension checks and six temp-and-rename writers had grown apart).
//!
//! Errors are plain [`std::io::Error`]s: each caller names the path and what it was doing.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// File extensions taken as photographs (any case), by host and device alike.
pub const PHOTO_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Whether `path`'s extension is one of `exts` (compared without regard to case).
pub fn has_extension(path: &Path, exts: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Whether `path` is named as a photograph (`.jpg`, `.jpeg` or `.png`, any case).
pub fn is_photo_name(path: &Path) -> bool {
    has_extension(path, &PHOTO_EXTENSIONS)
}

/// Whether the file name starts with a dot: hidden files, and the temporary files of
/// [`temp_path`] and of copies in progress, are never taken as data.
pub fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// The plain files of `dir` (not folders, not hidden files), in name order.
pub fn list_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && !is_hidden(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Whether a replaced file must survive a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Renamed into place: a crash leaves the old file or the new one, never half of one.
    Atomic,
    /// Also fsynced (the file before the rename, its folder after): what the device's store and
    /// model slots promise.
    Synced,
}

/// The name a file is written under before [`commit`] renames it into place: hidden, beside
/// it, with the whole name kept (`state.json` and `state.bpk` never share one).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Renames the finished temporary file `tmp` (see [`temp_path`]) to `path`.
pub fn commit(tmp: &Path, path: &Path, durability: Durability) -> io::Result<()> {
    if durability == Durability::Synced {
        File::open(tmp)?.sync_all()?;
    }
    std::fs::rename(tmp, path)?;
    if durability == Durability::Synced {
        sync_parent(path)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    let tmp = temp_path(path);
    File::create(&tmp)?.write_all(bytes)?;
    commit(&tmp, path, durability)
}

/// Syncs `dir`, so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_names_are_recognised_in_any_case() {
        for name in ["a.jpg", "b.JPEG", "c.Png"] {
            assert!(is_photo_name(Path::new(name)), "{name}");
        }
        for name in ["a.bmp", "b", "c.jpg.tmp", "jpg"] {
            assert!(!is_photo_name(Path::new(name)), "{name}");
        }
        assert!(has_extension(Path::new("m.BMP"), &["bmp", "png"]));
    }

    #[test]
    fn listing_skips_folders_and_hidden_files_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.jpg", "a.png", ".a.png.tmp", "c.txt"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.jpg")).unwrap();
        let names: Vec<String> = list_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.png", "b.jpg", "c.txt"]);
        assert!(list_files(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for (i, durability) in [Durability::Atomic, Durability::Synced].into_iter().enumerate() {
            write_atomic(&path, format!("v{i}").as_bytes(), durability).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("v{i}"));
        }
        let tmp = temp_path(&path);
        assert_eq!(tmp.file_name().unwrap(), ".state.json.tmp");
        std::fs::write(&tmp, b"v9").unwrap();
        commit(&tmp, &path, Durability::Synced).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "v9");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only state.json is left");
        // A write into a missing folder fails.
        assert!(write_atomic(&dir.path().join("no/such"), b"x", Durability::Atomic).is_err());
    }
}
