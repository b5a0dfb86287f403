//! The commands behind the binary; each returns its exit code or a [`DeviceError`], which
//! knows its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use embedded_hal::digital::{InputPin, OutputPin};
use papilla_shared::error::{Chain, chain};
use papilla_shared::runtime::Framing;
use thiserror::Error;

use crate::board::{Button, Leds, NoPin};
use crate::camera::CaptureError;
use crate::cli::{
    BenchArgs, ConfigArgs, ExportArgs, ExportFormat, InstallArgs, RootArgs, SegmentArgs, StatusArgs,
};
use crate::clock::SystemClock;
use crate::config::ConfigError;
use crate::config::{DeviceConfig, GpioBackend};
use crate::exam::ExamOptions;
use crate::media::MediaWatch;
use crate::photo::DecodeOptions;
use crate::record::Outcome;
use crate::segment::SegmentError;
use crate::service::{Service, ServiceOptions};
use crate::slots::{InstallPolicy, SlotError, Slots};
use crate::store::{Store, StoreError, read_index};

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_NO_MODEL: u8 = 3;
pub const EXIT_STORE: u8 = 4;
pub const EXIT_HARDWARE: u8 = 5;

/// Why a command failed. Each message holds its own context, the cause is in `source()`
/// ([`papilla_shared::error::Chain`] prints them once); [`DeviceError::exit_code`] is what the
/// process ends with.
#[derive(Debug, Error)]
pub enum DeviceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}: {message}", path.display())]
    Trust { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Model(#[from] SegmentError),
    #[error("no model installed in {}", root.display())]
    NotInstalled { root: PathBuf },
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Camera(#[from] CaptureError),
    #[error("{0}")]
    Hardware(String),
    #[error("cannot listen for stop signals")]
    Signals(#[source] std::io::Error),
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the results")]
    Write(#[source] std::io::Error),
    #[error("cannot write the results as CSV")]
    Csv(#[from] csv::Error),
    #[error("{0}")]
    Failed(String),
}

impl DeviceError {
    /// The documented exit code (README, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Trust { .. } | Self::Usage(_) => EXIT_CONFIG,
            Self::Model(_) | Self::NotInstalled { .. } | Self::Slot(SlotError::NoModel { .. }) => {
                EXIT_NO_MODEL
            }
            Self::Store(_) => EXIT_STORE,
            Self::Camera(_) | Self::Hardware(_) | Self::Signals(_) => EXIT_HARDWARE,
            Self::Slot(_) | Self::Io { .. } | Self::Write(_) | Self::Csv(_) | Self::Failed(_) => {
                EXIT_FAILED
            }
        }
    }
}

type Result<T> = std::result::Result<T, DeviceError>;

fn config(path: &Path) -> Result<DeviceConfig> {
    Ok(DeviceConfig::load(path)?)
}

fn config_with_root(args: &RootArgs) -> Result<DeviceConfig> {
    let mut cfg = config(&args.config)?;
    if let Some(r) = &args.root {
        cfg.root = r.clone();
    }
    Ok(cfg)
}

fn verification(cfg: &DeviceConfig, path: &Path) -> Result<papilla_shared::bundle::Verification> {
    cfg.verification().map_err(|message| DeviceError::Trust { path: path.to_owned(), message })
}

fn decode_options(cfg: &DeviceConfig) -> DecodeOptions {
    DecodeOptions {
        min_side: cfg.storage.decode_min_side,
        max_pixels: cfg.storage.max_pixels,
        ..DecodeOptions::default()
    }
}

/// `segment`: exit 0 when every photograph was segmented, 1 when any failed (the rest still run).
pub fn segment(args: &SegmentArgs) -> Result<u8> {
    use crate::segment;
    let bundle = segment::resolve_bundle(args.bundle.as_deref(), Some(&args.root))?;
    let engine = segment::load(&bundle, args.threads)?;
    let opts = ExamOptions {
        decode: DecodeOptions { min_side: args.decode_min_side, ..Default::default() },
        framing: Framing::from_disc_centred(args.disc_centred),
        refer_vcdr: args.refer_vcdr,
        gate: None,
    };
    let mut failed = 0;
    for image in &args.images {
        match segment::exam(&engine, image, &args.out, &opts) {
            Ok(r) if args.json => {
                println!("{}", serde_json::to_string(&r).expect("a record serialises"))
            }
            Ok(r) => println!(
                "{}: vCDR {:.3}, disc {} px, cup {} px, {}{} -> {}, {}",
                image.display(),
                r.findings.vcdr,
                r.findings.disc_area_px,
                r.findings.cup_area_px,
                if r.findings.refer { "REFER" } else { "no referral" },
                if r.findings.disc_found { "" } else { " (no optic disc found)" },
                r.mask.display(),
                r.overlay.display()
            ),
            Err(e) => {
                failed += 1;
                eprintln!("papilla-device: error: {}", Chain(&e));
            }
        }
    }
    Ok(if failed == 0 { EXIT_OK } else { EXIT_FAILED })
}

/// `run`: the service until SIGTERM/SIGINT.
pub fn run(args: &ConfigArgs) -> Result<u8> {
    let cfg = config(&args.config)?;
    let verification = verification(&cfg, &args.config)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(DeviceError::Signals)?;
    }
    let mut store = Store::open(&cfg.root, cfg.storage.min_free_mb << 20)?;
    let active = Slots::new(&cfg.root).open(&verification, cfg.threads)?;
    tracing::info!(slot = ?active.slot, path = %active.path.display(), agreement = active.selftest_agreement, "model loaded, self-test passed");
    let mut source = crate::camera::open(&cfg.camera)?;
    let options = ServiceOptions {
        decode: decode_options(&cfg),
        quality: cfg.quality.clone(),
        refer_vcdr: cfg.refer_vcdr,
        // A button is sampled every 10 ms (debounce needs several samples); a watched folder
        // every poll_ms, which is also how long a new file must keep its size.
        poll: if source.on_trigger() {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(cfg.camera.poll_ms.max(5))
        },
    };
    let hw = DeviceError::Hardware;
    let media = cfg.update.media_folder.as_ref().map(|folder| {
        tracing::info!(folder = %folder.display(), "looking for model updates on removable media");
        MediaWatch::new(
            folder,
            &cfg.root,
            verification.clone(),
            cfg.threads,
            Duration::from_secs(cfg.update.poll_s.max(1)),
        )
    });
    let parts = Parts {
        engine: &active.engine,
        store: &mut store,
        source: source.as_mut(),
        stop,
        options,
        media,
    };
    let summary = match cfg.gpio.backend {
        GpioBackend::None => serve::<NoPin, NoPin>(parts, None, Leds::new([NoPin; 4], false)),
        #[cfg(feature = "rpi")]
        GpioBackend::Rpi => {
            let (b, l) = crate::board::rpi::open(&cfg.gpio).map_err(hw)?;
            serve(parts, Some(b), l)
        }
        #[cfg(feature = "cdev")]
        GpioBackend::Cdev => {
            let (b, l) = crate::board::cdev::open(&cfg.gpio).map_err(hw)?;
            serve(parts, Some(b), l)
        }
        #[allow(unreachable_patterns)]
        other => {
            return Err(hw(format!(
                "gpio.backend {other:?} is not in this build: rebuild with `--features {}`",
                format!("{other:?}").to_lowercase()
            )));
        }
    };
    Ok(if summary.failed > 0 { EXIT_FAILED } else { EXIT_OK })
}

/// The service's parts that do not depend on the GPIO backend.
struct Parts<'a> {
    engine: &'a papilla_shared::runtime::Engine,
    store: &'a mut Store,
    source: &'a mut dyn crate::camera::FrameSource,
    stop: Arc<AtomicBool>,
    options: ServiceOptions,
    media: Option<MediaWatch>,
}

fn serve<I: InputPin, O: OutputPin>(
    parts: Parts<'_>,
    button: Option<Button<I>>,
    leds: Leds<O>,
) -> crate::service::RunSummary {
    let Parts { engine, store, source, stop, options, media } = parts;
    let mut service = Service {
        engine,
        store,
        source,
        button,
        leds,
        clock: SystemClock::default(),
        stop,
        options,
        media,
    };
    service.run(|ev| {
        println!("{}", serde_json::to_string(ev).expect("an event serialises"));
        let _ = std::io::stdout().flush();
    })
}

/// `status`.
pub fn status(args: &StatusArgs) -> Result<u8> {
    let cfg = config(&args.config.config)?;
    let verification = verification(&cfg, &args.config.config)?;
    let slots = Slots::new(&cfg.root);
    let current = slots.current();
    let model = current.map(|slot| {
        let path = slots.path(slot);
        let read =
            std::fs::read(&path).map_err(|e| format!("{}: cannot read: {e}", path.display()));
        match read.and_then(|b| {
            Slots::check(&b, &path, &verification, cfg.threads).map_err(|e| chain(&e))
        }) {
            Ok((engine, agreement, signer)) => serde_json::json!({
                "slot": slot, "name": engine.manifest().name, "version": engine.manifest().version,
                "selftest_agreement": agreement, "signer": signer, "ok": true,
            }),
            Err(e) => serde_json::json!({ "slot": slot, "ok": false, "error": e }),
        }
    });
    let entries = read_index(&cfg.root)?;
    let exams = crate::status::exams(&entries, crate::exam::now_unix_ms());
    let storage = fs4::available_space(&cfg.root).ok().map(|free| {
        let per_exam = crate::status::bytes_per_exam(&cfg.root.join("exams"), &entries, 20);
        crate::status::storage(free, cfg.storage.min_free_mb << 20, per_exam, &exams.today)
    });
    let trust = serde_json::json!({
        "keys": cfg.trust.keys.len(), "allow_unsigned": cfg.trust.allow_unsigned,
    });
    let s = serde_json::json!({
        "root": cfg.root,
        "model": model,
        "trust": trust,
        "exams": {
            // Totals first: the fields of earlier versions keep their meaning.
            "completed": exams.total.completed,
            "refused": exams.total.refused,
            "failed": exams.total.failed,
            "last_completed": exams.last_completed,
            "today": exams.today,
            "refused_by_reason": exams.total.refused_by_reason,
            "last_error": exams.last_error,
        },
        "free_mb": storage.as_ref().map(|s| s.free_mb),
        "storage": storage,
    });
    if args.json {
        println!("{s}");
    } else {
        match &model {
            Some(m) if m["ok"] == true => println!(
                "model: {} {} (slot {}), self-test agreement {:.4}",
                m["name"].as_str().unwrap_or(""),
                m["version"].as_str().unwrap_or(""),
                m["slot"].as_str().unwrap_or(""),
                m["selftest_agreement"].as_f64().unwrap_or(0.0),
            ),
            Some(m) => println!(
                "model: slot {} UNUSABLE: {}\n  what to do: install a signed bundle \
                 (papilla-device install-model) or roll back to the other slot",
                m["slot"].as_str().unwrap_or(""),
                m["error"].as_str().unwrap_or("")
            ),
            None => println!(
                "model: none installed\n  what to do: papilla-device install-model FILE.papilla"
            ),
        }
        let signer = model.as_ref().and_then(|m| m["signer"].as_str());
        println!(
            "trust: {} key{}{}; {}",
            cfg.trust.keys.len(),
            if cfg.trust.keys.len() == 1 { "" } else { "s" },
            if cfg.trust.allow_unsigned { ", unsigned bundles allowed" } else { "" },
            signer.map_or("the model is unsigned".to_owned(), |k| format!("model signed by {k}"))
        );
        print!("{}", crate::status::human(&exams, storage.as_ref()));
        println!("data: {}", cfg.root.display());
    }
    Ok(match &model {
        Some(m) if m["ok"] == true => EXIT_OK,
        Some(_) => EXIT_FAILED,
        None => EXIT_NO_MODEL,
    })
}

/// `selftest`: the current slot's model only (no fallback).
pub fn selftest(args: &ConfigArgs) -> Result<u8> {
    let cfg = config(&args.config)?;
    let verification = verification(&cfg, &args.config)?;
    let slots = Slots::new(&cfg.root);
    let slot =
        slots.current().ok_or_else(|| DeviceError::NotInstalled { root: cfg.root.clone() })?;
    let path = slots.path(slot);
    let bytes = std::fs::read(&path).map_err(|source| DeviceError::Io {
        path: path.clone(),
        what: "cannot read the installed model",
        source,
    })?;
    let (_, agreement, _) = Slots::check(&bytes, &path, &verification, cfg.threads)?;
    println!("self-test passed: {agreement:.4} of pixels agree ({})", path.display());
    Ok(EXIT_OK)
}

/// `install-model`.
pub fn install(args: &InstallArgs) -> Result<u8> {
    let cfg = config_with_root(&args.root)?;
    let verification = verification(&cfg, &args.root.config)?;
    let policy = InstallPolicy { allow_downgrade: args.allow_downgrade, newer_only: false };
    let (slot, _) =
        Slots::new(&cfg.root).install_with(&args.file, &verification, cfg.threads, policy)?;
    println!(
        "installed {} into slot {slot:?}; the previous model stays for `rollback`",
        args.file.display()
    );
    Ok(EXIT_OK)
}

/// `rollback`.
pub fn rollback(args: &RootArgs) -> Result<u8> {
    let cfg = config_with_root(args)?;
    let verification = verification(&cfg, &args.config)?;
    let slot = Slots::new(&cfg.root).rollback(&verification, cfg.threads)?;
    println!("now using slot {slot:?}");
    Ok(EXIT_OK)
}

/// `export-results`.
pub fn export(args: &ExportArgs) -> Result<u8> {
    let cfg = config_with_root(&args.root)?;
    let since = crate::exam::parse_date(&args.since).map_err(DeviceError::Usage)?;
    let entries = read_index(&cfg.root)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|source| DeviceError::Io {
            path: p.clone(),
            what: "cannot create the results file",
            source,
        })?),
        None => Box::new(std::io::stdout().lock()),
    };
    let io = DeviceError::Write;
    let rows = entries.iter().filter(|e| e.unix_ms >= since);
    match args.format {
        ExportFormat::Jsonl => {
            for e in rows {
                let mut v = serde_json::to_value(e).expect("an entry serialises");
                v["time"] = crate::exam::iso8601(e.unix_ms).into();
                writeln!(out, "{v}").map_err(io)?;
            }
        }
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "id",
                "time",
                "source",
                "outcome",
                "reason",
                "vcdr",
                "disc_area_px",
                "cup_area_px",
                "refer",
                "model",
            ])?;
            for e in rows {
                let (outcome, reason) = match &e.outcome {
                    Outcome::Completed => ("completed", ""),
                    Outcome::Refused(r) => ("refused", r.as_str()),
                    Outcome::Failed(r) => ("failed", r.as_str()),
                };
                let vcdr = if e.outcome == Outcome::Completed {
                    format!("{:.4}", e.vcdr)
                } else {
                    String::new()
                };
                w.write_record([
                    e.id.to_string(),
                    crate::exam::iso8601(e.unix_ms),
                    e.source.clone(),
                    outcome.into(),
                    reason.into(),
                    vcdr,
                    e.disc_area_px.to_string(),
                    e.cup_area_px.to_string(),
                    e.refer.to_string(),
                    e.model.clone(),
                ])?;
            }
            w.flush().map_err(io)?;
        }
    }
    Ok(EXIT_OK)
}

/// `bench`.
pub fn bench(args: &BenchArgs) -> Result<u8> {
    let bundle = crate::segment::resolve_bundle(args.bundle.as_deref(), None)?;
    let engine = crate::segment::load(&bundle, args.threads)?;
    let scratch: PathBuf =
        std::env::temp_dir().join(format!("papilla-bench-{}", std::process::id()));
    let opts = DecodeOptions { min_side: args.decode_min_side, ..Default::default() };
    if let Some(n) = args.soak {
        return soak(args, &engine, n, opts, &scratch);
    }
    let runs = args.runs.max(1);
    // A bar on a terminal only: piped, the table (or --json) is all that is printed.
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(runs as u64 + 1)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("exams [{bar:32}] {pos}/{len} (ETA {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let r = crate::bench::run(&engine, &args.image, runs, args.threads, &opts, &scratch, &|| {
        bar.inc(1)
    });
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&scratch);
    let r = r.map_err(DeviceError::Failed)?;
    if args.json {
        println!("{}", serde_json::to_string(&r).expect("a report serialises"));
    } else {
        print!("{}", crate::bench::table(&r));
    }
    Ok(EXIT_OK)
}

/// `bench --soak N`: one line (or JSON object) per sample, as it is taken.
fn soak(
    args: &BenchArgs,
    engine: &papilla_shared::runtime::Engine,
    n: usize,
    opts: DecodeOptions,
    scratch: &Path,
) -> Result<u8> {
    if !args.json {
        println!("exams completed rss_mib open_fds index_bytes exam_ms");
    }
    let samples = crate::soak::run(engine, &args.image, n, args.every, opts, scratch, |s| {
        if args.json {
            println!("{}", serde_json::to_string(s).expect("a sample serialises"));
        } else {
            let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            println!(
                "{} {} {} {} {} {:.1}",
                s.exams,
                s.completed,
                opt(s.rss_mib.map(|m| format!("{m:.1}"))),
                opt(s.open_fds.map(|f| f.to_string())),
                s.index_bytes,
                s.exam_ms
            );
        }
        let _ = std::io::stdout().flush();
    });
    let _ = std::fs::remove_dir_all(scratch);
    let samples = samples.map_err(DeviceError::Failed)?;
    let all_done = samples.last().is_some_and(|s| s.completed == n);
    Ok(if all_done { EXIT_OK } else { EXIT_FAILED })
}
