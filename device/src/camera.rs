//! Where photographs come from, behind one trait: a watched folder (cameras that drop JPEGs on
//! USB storage or a share), a V4L2 UVC camera, a Pi camera module through `rpicam-still`, and a
//! replay of stored photographs for tests and demonstrations.
//!
//! V4L2 capture runs `v4l2-ctl` (v4l-utils) as a subprocess rather than binding the kernel
//! interface: the Rust V4L2 bindings generate code with libclang at build time, which the
//! cross-build and CI machines do not have. Both subprocess sources have a timeout.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image::RgbImage;
use papilla_shared::files;
use thiserror::Error;

use crate::config::{CameraConfig, PixelFormat, SourceKind};

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("{}: cannot read", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{program}: {message}")]
    Command { program: String, message: String },
    #[error("{0}")]
    Frame(String),
}

/// One captured photograph: the file as the camera wrote it (stored as the exam's photo), or
/// raw pixels from a video device (stored as PNG).
#[derive(Debug)]
pub enum Frame {
    File { name: PathBuf, bytes: Vec<u8> },
    Pixels { name: PathBuf, image: RgbImage },
}

impl Frame {
    pub fn name(&self) -> &Path {
        match self {
            Frame::File { name, .. } | Frame::Pixels { name, .. } => name,
        }
    }
}

/// A camera.
pub trait FrameSource {
    /// True when a frame is taken on the trigger button; false when the source decides (a
    /// folder that receives files).
    fn on_trigger(&self) -> bool;
    /// The next frame: for triggered sources, capture now; otherwise `None` when nothing new
    /// has arrived.
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError>;
    /// A source that can give no more frames (a finished replay). The service stops.
    fn exhausted(&self) -> bool {
        false
    }
    /// Called once an exam from `frame` has ended (`stored` or not), so a folder source can
    /// move the file out of the way.
    fn done(&mut self, _frame: &Path, _stored: bool) {}
}

/// Builds the configured source.
pub fn open(cfg: &CameraConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    Ok(match cfg.source {
        SourceKind::Folder => Box::new(FolderSource::new(&cfg.folder)?),
        SourceKind::Replay => Box::new(ReplaySource::from_folder(&cfg.folder)?),
        SourceKind::Rpicam => Box::new(CommandSource::rpicam(cfg)),
        SourceKind::V4l2 => Box::new(CommandSource::v4l2(cfg)),
    })
}

/// Files of a folder in name order (hidden and temporary files skipped).
fn listing(dir: &Path) -> Result<Vec<PathBuf>, CaptureError> {
    files::list_files(dir).map_err(|source| CaptureError::Io { path: dir.to_owned(), source })
}

/// Watches a folder: each new file is one exam; afterwards it is moved into `done/` (stored)
/// or `rejected/` (refused, failed, or not a photograph), so a restart never takes it twice. A file still growing is
/// left for the next poll.
#[derive(Debug)]
pub struct FolderSource {
    dir: PathBuf,
    /// Size at the previous poll, to wait until a copy has finished.
    pending: Option<(PathBuf, u64)>,
}

impl FolderSource {
    pub fn new(dir: &Path) -> Result<Self, CaptureError> {
        for sub in ["done", "rejected"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|source| CaptureError::Io { path: dir.join(sub), source })?;
        }
        Ok(Self { dir: dir.to_owned(), pending: None })
    }

    fn move_to(&self, file: &Path, sub: &str) {
        let Some(name) = file.file_name() else { return };
        let to = self.dir.join(sub).join(name);
        if let Err(e) = std::fs::rename(file, &to) {
            tracing::warn!(file = %file.display(), error = %e, "cannot move the processed file");
        }
    }
}

impl FrameSource for FolderSource {
    fn on_trigger(&self) -> bool {
        false
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let (photos, others): (Vec<PathBuf>, Vec<PathBuf>) =
            listing(&self.dir)?.into_iter().partition(|p| files::is_photo_name(p));
        for p in others {
            tracing::warn!(file = %p.display(), "not a .jpg/.jpeg/.png photograph: moved to rejected/");
            self.move_to(&p, "rejected");
        }
        if let Some(p) = photos.into_iter().next() {
            let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            // Take a file once its size held still over one poll interval.
            if self.pending.as_ref() != Some(&(p.clone(), size)) {
                self.pending = Some((p, size));
                return Ok(None);
            }
            self.pending = None;
            return match std::fs::read(&p) {
                Ok(bytes) => Ok(Some(Frame::File { name: p, bytes })),
                Err(source) => {
                    // Out of the way, or it would be tried again forever.
                    tracing::error!(file = %p.display(), error = %source, "unreadable: moved to rejected/");
                    self.move_to(&p, "rejected");
                    Ok(None)
                }
            };
        }
        Ok(None)
    }

    fn done(&mut self, frame: &Path, stored: bool) {
        if frame.parent() == Some(self.dir.as_path()) {
            self.move_to(frame, if stored { "done" } else { "rejected" });
        }
    }
}

/// Gives the given photographs, one per trigger, then is exhausted.
#[derive(Debug)]
pub struct ReplaySource {
    files: std::collections::VecDeque<PathBuf>,
}

impl ReplaySource {
    pub fn new(files: Vec<PathBuf>) -> Self {
        Self { files: files.into() }
    }

    /// Every file of `dir`, in name order (bad files included: they test the error path).
    pub fn from_folder(dir: &Path) -> Result<Self, CaptureError> {
        Ok(Self::new(listing(dir)?))
    }
}

impl FrameSource for ReplaySource {
    fn on_trigger(&self) -> bool {
        true
    }
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let Some(p) = self.files.pop_front() else { return Ok(None) };
        let bytes =
            std::fs::read(&p).map_err(|source| CaptureError::Io { path: p.clone(), source })?;
        Ok(Some(Frame::File { name: p, bytes }))
    }
    fn exhausted(&self) -> bool {
        self.files.is_empty()
    }
}

/// What a capture command writes on its standard output.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Output {
    Jpeg,
    Yuyv { width: u32, height: u32 },
}

/// A camera driven by a command that writes one frame to its standard output.
#[derive(Debug)]
pub struct CommandSource {
    program: String,
    args: Vec<String>,
    output: Output,
    timeout: Duration,
    count: u64,
}

impl CommandSource {
    /// A Pi camera module: `rpicam-still` (libcamera), JPEG on stdout, no preview.
    pub fn rpicam(cfg: &CameraConfig) -> Self {
        let args = [
            "--nopreview",
            "--immediate",
            "--encoding",
            "jpg",
            "--quality",
            "95",
            "--output",
            "-",
            "--timeout",
            "1",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.extend([
            "--width".into(),
            cfg.width.to_string(),
            "--height".into(),
            cfg.height.to_string(),
        ]);
        Self::new("rpicam-still", args, Output::Jpeg, cfg.timeout_ms)
    }

    /// A UVC camera through `v4l2-ctl`: one MJPEG frame (a JPEG) or one YUYV frame.
    pub fn v4l2(cfg: &CameraConfig) -> Self {
        let (fourcc, output) = match cfg.pixel_format {
            PixelFormat::Mjpeg => ("MJPG", Output::Jpeg),
            PixelFormat::Yuyv => ("YUYV", Output::Yuyv { width: cfg.width, height: cfg.height }),
        };
        let args = vec![
            "--device".into(),
            cfg.device.display().to_string(),
            format!(
                "--set-fmt-video=width={},height={},pixelformat={fourcc}",
                cfg.width, cfg.height
            ),
            // The first frames of a UVC camera are often dark while its exposure settles.
            "--stream-mmap".into(),
            "--stream-skip=3".into(),
            "--stream-count=1".into(),
            "--stream-to=-".into(),
        ];
        Self::new("v4l2-ctl", args, output, cfg.timeout_ms)
    }

    fn new(program: &str, args: Vec<String>, output: Output, timeout_ms: u64) -> Self {
        Self {
            program: program.into(),
            args,
            output,
            timeout: Duration::from_millis(timeout_ms),
            count: 0,
        }
    }

    /// A source running any command (tests use a shell script in place of the camera).
    pub fn custom(
        program: &str,
        args: Vec<String>,
        yuyv: Option<(u32, u32)>,
        timeout_ms: u64,
    ) -> Self {
        let output = match yuyv {
            Some((width, height)) => Output::Yuyv { width, height },
            None => Output::Jpeg,
        };
        Self::new(program, args, output, timeout_ms)
    }

    fn capture(&self) -> Result<Vec<u8>, CaptureError> {
        let err =
            |message: String| CaptureError::Command { program: self.program.clone(), message };
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot start: {e}")))?;
        let mut stdout = child.stdout.take().ok_or_else(|| err("no stdout".into()))?;
        let mut stderr = child.stderr.take().ok_or_else(|| err("no stderr".into()))?;
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            stdout.read_to_end(&mut buf).map(|_| buf)
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let start = Instant::now();
        let status = loop {
            match child.try_wait().map_err(|e| err(e.to_string()))? {
                Some(s) => break s,
                None if start.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(err(format!("no frame within {} ms", self.timeout.as_millis())));
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let bytes = reader
            .join()
            .map_err(|_| err("reader panicked".into()))?
            .map_err(|e| err(e.to_string()))?;
        let log = err_reader.join().unwrap_or_default();
        // 127 is POSIX's "command not found": from a shell wrapper, or from the child of a
        // spawn whose exec failed (how a missing program shows under qemu-user).
        if status.code() == Some(127) && bytes.is_empty() {
            let last = log.lines().last().unwrap_or("command not found");
            return Err(err(format!("cannot start: {last} (exit 127)")));
        }
        if !status.success() {
            let last = log.lines().last().unwrap_or("").to_owned();
            return Err(err(format!("exited with {status}: {last}")));
        }
        Ok(bytes)
    }
}

impl FrameSource for CommandSource {
    fn on_trigger(&self) -> bool {
        true
    }
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let bytes = self.capture()?;
        self.count += 1;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Some(match self.output {
            Output::Jpeg => {
                Frame::File { name: format!("capture-{stamp}-{}.jpg", self.count).into(), bytes }
            }
            Output::Yuyv { width, height } => Frame::Pixels {
                name: format!("capture-{stamp}-{}.png", self.count).into(),
                image: yuyv_to_rgb(&bytes, width, height).map_err(CaptureError::Frame)?,
            },
        }))
    }
}

/// Converts packed YUYV 4:2:2 (BT.601, limited range, as UVC cameras send it) to RGB.
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32) -> Result<RgbImage, String> {
    let need = width as usize * height as usize * 2;
    if !width.is_multiple_of(2) || data.len() < need {
        return Err(format!(
            "YUYV frame of {} bytes, expected {need} for {width}x{height}",
            data.len()
        ));
    }
    let mut out = Vec::with_capacity(need / 2 * 3);
    for q in data[..need].chunks_exact(4) {
        let (y0, u, y1, v) = (q[0], q[1], q[2], q[3]);
        for y in [y0, y1] {
            let c = 1.164 * (f32::from(y) - 16.0);
            let (d, e) = (f32::from(u) - 128.0, f32::from(v) - 128.0);
            let px = [c + 1.596 * e, c - 0.392 * d - 0.813 * e, c + 2.017 * d];
            out.extend(px.map(|x| x.round().clamp(0.0, 255.0) as u8));
        }
    }
    RgbImage::from_raw(width, height, out).ok_or_else(|| "YUYV conversion".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_converts_known_colours() {
        // Limited-range white, black and BT.601 red (Y 81, U 90, V 240).
        let data = [235, 128, 16, 128, 81, 90, 81, 240];
        let img = yuyv_to_rgb(&data, 2, 2).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [0, 0, 0]);
        let red = img.get_pixel(0, 1).0;
        assert!(red[0] >= 250 && red[1] <= 5 && red[2] <= 5, "{red:?}");
        assert!(yuyv_to_rgb(&data[..6], 2, 2).unwrap_err().contains("expected 8"));
    }

    #[test]
    fn folder_source_waits_for_a_finished_copy_and_moves_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut src = FolderSource::new(dir.path()).unwrap();
        assert!(src.next_frame().unwrap().is_none());
        std::fs::write(dir.path().join("b.jpg"), b"xx").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        // First poll sees b.jpg for the first time: waits; notes.txt goes to rejected/.
        assert!(src.next_frame().unwrap().is_none());
        assert!(dir.path().join("rejected/notes.txt").exists());
        let f = src.next_frame().unwrap().unwrap();
        assert_eq!(f.name(), dir.path().join("b.jpg"));
        src.done(f.name(), true);
        assert!(dir.path().join("done/b.jpg").exists() && !dir.path().join("b.jpg").exists());
        std::fs::write(dir.path().join("c.jpg"), b"yy").unwrap();
        assert!(src.next_frame().unwrap().is_none());
        let f = src.next_frame().unwrap().unwrap();
        src.done(f.name(), false);
        assert!(dir.path().join("rejected/c.jpg").exists());
        assert!(!src.on_trigger());
    }

    #[test]
    fn folder_source_leaves_a_folder_named_like_a_photograph_and_forgets_a_vanished_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut src = FolderSource::new(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("a.jpg")).unwrap();
        std::fs::write(dir.path().join("b.jpg"), b"xx").unwrap();
        assert!(src.next_frame().unwrap().is_none(), "b.jpg is new: wait one poll");
        // Gone between two polls (the camera's own clean-up, a stick pulled out).
        std::fs::remove_file(dir.path().join("b.jpg")).unwrap();
        for _ in 0..3 {
            assert!(src.next_frame().unwrap().is_none());
        }
        assert!(dir.path().join("a.jpg").is_dir(), "a folder is not a photograph to move");
        assert!(!dir.path().join("rejected/a.jpg").exists());
        std::fs::write(dir.path().join("c.jpg"), b"yy").unwrap();
        assert!(src.next_frame().unwrap().is_none());
        assert_eq!(src.next_frame().unwrap().unwrap().name(), dir.path().join("c.jpg"));
    }

    #[test]
    fn command_source_reads_stdout_reports_failures_and_times_out() {
        // A shell script in place of the camera program.
        let sh = |script: &str, yuyv| {
            CommandSource::custom("sh", vec!["-c".into(), script.into()], yuyv, 5000)
        };
        let ok = sh("printf abc", None);
        assert_eq!(ok.capture().unwrap(), b"abc");
        let fail = sh("echo no camera >&2; exit 3", None);
        let e = fail.capture().unwrap_err().to_string();
        assert!(e.starts_with("sh: exited with") && e.ends_with("no camera"), "{e}");
        let slow = CommandSource::custom("sleep", vec!["5".into()], None, 100);
        assert!(slow.capture().unwrap_err().to_string().contains("no frame within 100 ms"));
        let missing = CommandSource::custom("/nonexistent/rpicam-still", vec![], None, 100);
        assert!(missing.capture().unwrap_err().to_string().contains("cannot start"));
        let wrapped = sh("/nonexistent/rpicam-still", None);
        let e = wrapped.capture().unwrap_err().to_string();
        assert!(e.contains("cannot start") && e.contains("(exit 127)"), "{e}");
        let mut yuyv = sh("printf '\\353\\200\\020\\200'", Some((2, 1)));
        match yuyv.next_frame().unwrap().unwrap() {
            Frame::Pixels { image, .. } => assert_eq!(image.get_pixel(0, 0).0, [255, 255, 255]),
            other => panic!("{other:?}"),
        }
    }
}
