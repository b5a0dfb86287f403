//! The service's settings: one TOML file, unknown keys rejected, every default set here.
//!
//! ```toml
//! root = "/var/lib/papilla"      # models/ (two slots) and exams/ live here
//! threads = 4                    # tract's matrix-product threads (the Pi has 4 cores)
//! refer_vcdr = 0.6               # refer at or above this vertical cup-to-disc ratio
//!
//! [trust]
//! keys = ["<64 hex digits>"]     # ed25519 public keys allowed to sign model bundles
//! allow_unsigned = false
//!
//! [camera]
//! source = "folder"              # folder | v4l2 | rpicam | replay
//! folder = "/srv/camera"         # folder: watched for new .jpg/.jpeg/.png
//! poll_ms = 250
//! device = "/dev/video0"         # v4l2
//! width = 2592                   # v4l2 and rpicam
//! height = 1944
//! pixel_format = "mjpeg"         # v4l2: mjpeg | yuyv
//! timeout_ms = 10000             # v4l2 and rpicam: a capture that takes longer fails
//!
//! [gpio]
//! backend = "none"               # none | rpi | cdev
//! chip = "/dev/gpiochip0"        # cdev
//! trigger = 17                   # BCM numbers; header pins 11, 29, 31, 33, 35
//! ready = 5
//! busy = 6
//! refer = 13
//! error = 19
//! button_active_low = true       # button to ground, internal pull-up
//! leds_active_low = false
//! debounce_ms = 30
//!
//! [quality]
//! min_fov_fraction = 0.15        # of the frame lit by the fundus (a lens cap gives ~0)
//! min_brightness = 20.0          # mean grey level inside the field of view
//! max_brightness = 225.0
//! max_saturated_fraction = 0.25  # of field-of-view pixels at 250 or more in every channel
//! min_sharpness = 2.5            # see quality.rs (REFUGE test: 4.6 to 12.4)
//!
//! [storage]
//! min_free_mb = 256              # refuse new exams below this much free space
//! decode_min_side = 640          # decode large JPEGs scaled down to no less than this
//! max_pixels = 100000000         # refuse photographs larger than this
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Default config path of the installed service.
pub const DEFAULT_PATH: &str = "/etc/papilla/device.toml";
/// Default device data folder (models/ and exams/), for the config and the CLI alike.
pub const DEFAULT_ROOT: &str = "/var/lib/papilla";
/// Default referral threshold on the vertical cup-to-disc ratio.
pub const DEFAULT_REFER_VCDR: f64 = 0.6;
/// Default inference threads (the Pi 4 has 4 cores).
pub const DEFAULT_THREADS: usize = 4;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    pub root: PathBuf,
    pub threads: usize,
    pub refer_vcdr: f64,
    pub trust: TrustConfig,
    pub camera: CameraConfig,
    pub gpio: GpioConfig,
    pub quality: QualityConfig,
    pub storage: StorageConfig,
    pub update: UpdateConfig,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from(DEFAULT_ROOT),
            threads: DEFAULT_THREADS,
            refer_vcdr: DEFAULT_REFER_VCDR,
            trust: TrustConfig::default(),
            camera: CameraConfig::default(),
            gpio: GpioConfig::default(),
            quality: QualityConfig::default(),
            storage: StorageConfig::default(),
            update: UpdateConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// Hex ed25519 public keys (as written by `papilla keygen` into KEY.pub).
    pub keys: Vec<String>,
    pub allow_unsigned: bool,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Folder,
    V4l2,
    Rpicam,
    /// Replays the photographs of `folder` once, in name order, one per trigger (back to back
    /// without a button), then the service stops; for tests and demonstrations.
    Replay,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    Mjpeg,
    Yuyv,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    pub source: SourceKind,
    pub folder: PathBuf,
    pub poll_ms: u64,
    pub device: PathBuf,
    pub width: u32,
    pub height: u32,
    pub pixel_format: PixelFormat,
    pub timeout_ms: u64,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            source: SourceKind::Folder,
            folder: PathBuf::from("/srv/camera"),
            poll_ms: 250,
            device: PathBuf::from("/dev/video0"),
            width: 2592,
            height: 1944,
            pixel_format: PixelFormat::Mjpeg,
            timeout_ms: 10_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GpioBackend {
    /// No button or lights: only a folder source (which triggers itself) makes sense.
    None,
    Rpi,
    Cdev,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GpioConfig {
    pub backend: GpioBackend,
    pub chip: String,
    pub trigger: u8,
    pub ready: u8,
    pub busy: u8,
    pub refer: u8,
    pub error: u8,
    pub button_active_low: bool,
    pub leds_active_low: bool,
    pub debounce_ms: u64,
}

impl Default for GpioConfig {
    fn default() -> Self {
        Self {
            backend: GpioBackend::None,
            chip: "/dev/gpiochip0".into(),
            trigger: 17,
            ready: 5,
            busy: 6,
            refer: 13,
            error: 19,
            button_active_low: true,
            leds_active_low: false,
            debounce_ms: 30,
        }
    }
}

/// Model updates from removable media ([`crate::media`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateConfig {
    /// A folder looked into for `*.papilla` between exams, e.g. a USB stick's mount point;
    /// absent: no updates from media.
    pub media_folder: Option<PathBuf>,
    /// Seconds between two looks.
    pub poll_s: u64,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self { media_folder: None, poll_s: 5 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    pub min_fov_fraction: f64,
    pub min_brightness: f64,
    pub max_brightness: f64,
    pub max_saturated_fraction: f64,
    pub min_sharpness: f64,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            min_fov_fraction: 0.15,
            min_brightness: 20.0,
            max_brightness: 225.0,
            max_saturated_fraction: 0.25,
            min_sharpness: 2.5,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub min_free_mb: u64,
    pub decode_min_side: u32,
    pub max_pixels: u64,
}

/// Large JPEGs are decoded scaled down by the IDCT to no less than this shorter side: the
/// segmenter's crop of a 640 px photograph is already larger than its input.
pub const DEFAULT_DECODE_MIN_SIDE: u32 = 640;

impl Default for StorageConfig {
    fn default() -> Self {
        Self { min_free_mb: 256, decode_min_side: DEFAULT_DECODE_MIN_SIDE, max_pixels: 100_000_000 }
    }
}

impl DeviceConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and validates TOML text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        cfg.validate()
            .map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.threads == 0 {
            return Err("threads must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.refer_vcdr) {
            return Err(format!("refer_vcdr {} is not in [0, 1]", self.refer_vcdr));
        }
        self.trust_keys()?;
        let q = &self.quality;
        if q.min_brightness >= q.max_brightness {
            return Err("quality.min_brightness must be below quality.max_brightness".into());
        }
        let needs_button = matches!(self.camera.source, SourceKind::V4l2 | SourceKind::Rpicam);
        if needs_button && self.gpio.backend == GpioBackend::None {
            return Err(format!(
                "camera.source {:?} is captured on the trigger button, but gpio.backend is none",
                self.camera.source
            ));
        }
        let g = &self.gpio;
        let pins = [g.trigger, g.ready, g.busy, g.refer, g.error];
        for (i, a) in pins.iter().enumerate() {
            if pins[i + 1..].contains(a) {
                return Err(format!("GPIO{a} is given to two functions"));
            }
        }
        Ok(())
    }

    /// The trusted public keys, parsed.
    pub fn trust_keys(&self) -> Result<Vec<ed25519_dalek::VerifyingKey>, String> {
        self.trust.keys.iter().map(|k| parse_public_key(k)).collect()
    }

    /// What `install-model` and start-up accept. No trusted key and no unsigned bundles is an
    /// error, not "any signer": an empty `trusted` list means any valid signature to the
    /// bundle reader.
    pub fn verification(&self) -> Result<papilla_shared::bundle::Verification, String> {
        if self.trust.keys.is_empty() && !self.trust.allow_unsigned {
            return Err("trust.keys is empty: add the public key that signs your models (KEY.pub from `papilla keygen`), or set trust.allow_unsigned = true".into());
        }
        Ok(papilla_shared::bundle::Verification {
            trusted: self.trust_keys()?,
            allow_unsigned: self.trust.allow_unsigned,
        })
    }
}

/// A hex ed25519 public key (64 digits; surrounding whitespace ignored).
pub fn parse_public_key(text: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let t = text.trim();
    let bad = || format!("trust key {t:?} is not 64 hex digits of an ed25519 public key");
    let bytes = papilla_shared::bundle::from_hex::<32>(t).ok_or_else(bad)?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DeviceConfig, ConfigError> {
        DeviceConfig::parse(text, Path::new("device.toml"))
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg, DeviceConfig::default());
        assert_eq!(cfg.gpio.trigger, 17);
        assert_eq!(cfg.camera.source, SourceKind::Folder);
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_file_name() {
        let e = parse("[camera]\nsorce = \"folder\"\n").unwrap_err().to_string();
        assert!(e.starts_with("device.toml:") && e.contains("sorce"), "{e}");
        let e = parse("thredas = 2\n").unwrap_err().to_string();
        assert!(e.contains("thredas"), "{e}");
    }

    #[test]
    fn inconsistent_settings_are_rejected() {
        let e = parse("[camera]\nsource = \"rpicam\"\n").unwrap_err().to_string();
        assert!(e.contains("gpio.backend is none"), "{e}");
        let e = parse("[gpio]\nbackend = \"rpi\"\nbusy = 17\n").unwrap_err().to_string();
        assert!(e.contains("GPIO17 is given to two functions"), "{e}");
        let e = parse("[trust]\nkeys = [\"abcd\"]\n").unwrap_err().to_string();
        assert!(e.contains("not 64 hex digits"), "{e}");
        assert!(parse("refer_vcdr = 1.5\n").is_err());
    }

    #[test]
    fn the_installed_example_config_parses() {
        let cfg = parse(include_str!("../../scripts/device.toml")).unwrap();
        assert_eq!(cfg.camera.source, SourceKind::Rpicam);
        assert_eq!(cfg.gpio.backend, GpioBackend::Cdev);
        assert_eq!(cfg.trust_keys().unwrap().len(), 3, "the release key and the two before it");
        // Everything else is the documented default.
        let mut d = DeviceConfig::default();
        d.camera.source = SourceKind::Rpicam;
        d.gpio.backend = GpioBackend::Cdev;
        d.trust.keys = cfg.trust.keys.clone();
        assert_eq!(cfg, d);
    }

    #[test]
    fn no_trusted_key_accepts_nothing_rather_than_anything() {
        let e = parse("").unwrap().verification().unwrap_err();
        assert!(e.starts_with("trust.keys is empty"), "{e}");
        let v = parse("[trust]\nallow_unsigned = true\n").unwrap().verification().unwrap();
        assert!(v.allow_unsigned && v.trusted.is_empty());
    }

    #[test]
    fn a_full_config_round_trips() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let mut cfg = DeviceConfig::default();
        cfg.trust.keys = vec![papilla_shared::bundle::hex(key.as_bytes())];
        cfg.camera.source = SourceKind::Rpicam;
        cfg.gpio.backend = GpioBackend::Cdev;
        let text = toml::to_string(&cfg).unwrap();
        let back = parse(&text).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(back.trust_keys().unwrap(), vec![key]);
    }
}
