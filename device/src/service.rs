//! The service loop: wait for the trigger (or a new file) -> capture -> exam -> quality gate
//! -> store -> lights. A refused or failed exam is recorded with its reason, lights the error
//! LED and the loop goes on. A stop request (SIGTERM, SIGINT) is honoured between exams: the
//! exam in flight is finished and stored (storing is atomic, so a kill instead rolls it back),
//! then the lights go off.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use embedded_hal::digital::{InputPin, OutputPin};
use papilla_shared::error::chain;
use papilla_shared::runtime::{Engine, Framing};
use serde::Serialize;

use crate::board::{Button, Led, Leds};
use crate::camera::{Frame, FrameSource};
use crate::clock::Clock;
use crate::config::QualityConfig;
use crate::exam::{ExamError, ExamOptions, file_name, now_unix_ms};
use crate::media::{MediaEvent, MediaWatch};
use crate::photo::DecodeOptions;
use crate::record::{IndexEntry, Outcome};
use crate::store::Store;

/// Settings of the loop, from the config.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    pub decode: DecodeOptions,
    pub quality: QualityConfig,
    pub refer_vcdr: f64,
    /// How often the button or folder is polled.
    pub poll: Duration,
}

/// What one exam ended as; printed as one JSON line on stdout by `run`.
#[derive(Clone, Debug, Serialize)]
pub struct ExamEvent {
    pub id: u64,
    pub source: String,
    pub outcome: Outcome,
    pub vcdr: Option<f64>,
    pub refer: bool,
    pub total_ms: f64,
}

/// Counts of a finished run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub completed: usize,
    pub refused: usize,
    pub failed: usize,
}

/// The loop's parts. Generic over the pins and the clock, so tests drive it with mocks.
#[derive(Debug)]
pub struct Service<'a, S: ?Sized, I, O, C> {
    /// The model the service starts with (a bundle installed from `media` replaces it).
    pub engine: &'a Engine,
    pub store: &'a mut Store,
    pub source: &'a mut S,
    pub button: Option<Button<I>>,
    pub leds: Leds<O>,
    pub clock: C,
    pub stop: Arc<AtomicBool>,
    pub options: ServiceOptions,
    /// Model updates from removable media, looked for between exams.
    pub media: Option<MediaWatch>,
}

impl<S, I, O, C> Service<'_, S, I, O, C>
where
    S: FrameSource + ?Sized,
    I: InputPin,
    O: OutputPin,
    C: Clock,
{
    /// Runs until a stop request or until the source is exhausted; `on_exam` sees each exam.
    pub fn run(&mut self, mut on_exam: impl FnMut(&ExamEvent)) -> RunSummary {
        let mut summary = RunSummary::default();
        self.leds.show(&[Led::Ready]);
        tracing::info!(model = %model_name(self.engine()), "ready");
        while !self.stop.load(Ordering::SeqCst) {
            self.look_for_updates();
            let frame = if self.source.on_trigger() {
                if self.source.exhausted() {
                    break;
                }
                match self.button.as_mut() {
                    Some(b) => match b.poll(self.clock.now()) {
                        Ok(true) => self.capture(),
                        Ok(false) => {
                            self.clock.sleep(self.options.poll);
                            continue;
                        }
                        Err(e) => {
                            tracing::error!(error = ?embedded_hal::digital::Error::kind(&e), "trigger pin failed");
                            self.clock.sleep(self.options.poll);
                            continue;
                        }
                    },
                    // No button wired: a triggered source fires back to back (replays).
                    None => self.capture(),
                }
            } else {
                match self.source.next_frame() {
                    Ok(Some(f)) => Ok(f),
                    Ok(None) => {
                        self.clock.sleep(self.options.poll);
                        continue;
                    }
                    // A folder that cannot be read is not an exam: say so, light the error
                    // LED and look again later, without filling the index.
                    Err(e) => {
                        tracing::error!(error = %chain(&e), "the camera folder cannot be read");
                        self.leds.show(&[Led::Ready, Led::Error]);
                        self.clock.sleep(self.options.poll.max(Duration::from_secs(1)));
                        continue;
                    }
                }
            };
            self.leds.show(&[Led::Busy]);
            let event = match frame {
                Ok(frame) => {
                    let ev = self.exam(&frame);
                    self.source.done(frame.name(), ev.outcome == Outcome::Completed);
                    ev
                }
                Err(e) => self.record_failure(
                    String::from("capture"),
                    Outcome::Failed(format!("capture failed: {e}")),
                ),
            };
            match &event.outcome {
                Outcome::Completed => summary.completed += 1,
                Outcome::Refused(_) => summary.refused += 1,
                Outcome::Failed(_) => summary.failed += 1,
            }
            let mut on = vec![Led::Ready];
            if event.refer {
                on.push(Led::Refer);
            }
            if event.outcome != Outcome::Completed {
                on.push(Led::Error);
            }
            self.leds.show(&on);
            on_exam(&event);
        }
        self.leds.all_off();
        tracing::info!(?summary, "stopped");
        summary
    }

    /// The model exams run on.
    pub fn engine(&self) -> &Engine {
        self.media.as_ref().and_then(MediaWatch::engine).unwrap_or(self.engine)
    }

    /// Installs a new model from removable media, if one is there; an install blinks all four
    /// lights three times, a refusal lights the error light until the next exam.
    fn look_for_updates(&mut self) {
        let Some(media) = self.media.as_mut() else { return };
        let events = media.poll(self.clock.now());
        for event in &events {
            match event {
                MediaEvent::Installed { file, slot, version } => {
                    tracing::info!(file = %file.display(), ?slot, version, "model installed from removable media");
                    for _ in 0..3 {
                        self.leds.show(&Led::ALL);
                        self.clock.sleep(Duration::from_millis(250));
                        self.leds.all_off();
                        self.clock.sleep(Duration::from_millis(250));
                    }
                    self.leds.show(&[Led::Ready]);
                }
                MediaEvent::Refused { file, reason } => {
                    tracing::warn!(file = %file.display(), reason, "model on removable media not installed");
                    self.leds.show(&[Led::Ready, Led::Error]);
                }
            }
        }
        if events.iter().any(|e| matches!(e, MediaEvent::Installed { .. })) {
            tracing::info!(model = %model_name(self.engine()), "ready");
        }
    }

    fn capture(&mut self) -> Result<Frame, String> {
        match self.source.next_frame() {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err("the camera gave no frame".into()),
            Err(e) => Err(chain(&e)),
        }
    }

    /// A refused or failed exam: logged, noted in the index (if the disk allows).
    fn record_failure(&mut self, source: String, outcome: Outcome) -> ExamEvent {
        let id = self.store.next_id();
        match &outcome {
            // One line a person reads in journalctl, with the fields for machines after it.
            Outcome::Refused(r) => tracing::warn!(
                id,
                source,
                reason = %r,
                "exam {id} ({source}) refused: {r}; take the photograph again"
            ),
            Outcome::Failed(r) => tracing::error!(
                id,
                source,
                error = %r,
                "exam {id} ({source}) failed: {r}; {}",
                crate::status::advice(r)
            ),
            Outcome::Completed => {}
        }
        let entry = IndexEntry {
            id,
            unix_ms: now_unix_ms(),
            source: source.clone(),
            outcome: outcome.clone(),
            vcdr: f64::NAN,
            disc_area_px: 0,
            cup_area_px: 0,
            refer: false,
            model: model_name(self.engine()),
        };
        if let Err(e) = self.store.note(&entry) {
            tracing::error!(error = %chain(&e), "cannot record the failed exam");
        }
        ExamEvent { id, source, outcome, vcdr: None, refer: false, total_ms: 0.0 }
    }

    fn exam(&mut self, frame: &Frame) -> ExamEvent {
        let start = std::time::Instant::now();
        let source = file_name(frame.name());
        let opts = ExamOptions {
            decode: self.options.decode,
            framing: Framing::Fundus,
            refer_vcdr: self.options.refer_vcdr,
            gate: Some(&self.options.quality),
        };
        let out = match crate::exam::run(self.engine(), frame, &opts) {
            Ok(out) => out,
            Err(ExamError::Refused(reason)) => {
                return self.record_failure(source, Outcome::Refused(reason));
            }
            Err(e) => return self.record_failure(source, Outcome::Failed(chain(&e))),
        };
        let mut record = out.record(self.store.next_id(), now_unix_ms(), &source);
        let t = std::time::Instant::now();
        // The record's own store time is unknown until stored: it holds everything before.
        let json = record.to_json();
        match self.store.commit(&record.index_entry(), &out.files(&json)) {
            Ok(dir) => {
                record.findings.times.store_ms = t.elapsed().as_secs_f64() * 1e3;
                let ms = start.elapsed().as_secs_f64() * 1e3;
                tracing::info!(
                    id = record.id,
                    source,
                    vcdr = format!("{:.3}", record.findings.vcdr),
                    refer = record.findings.refer,
                    dir = %dir.display(),
                    ms = format!("{ms:.0}"),
                    "exam {} ({source}): vCDR {:.2}, {}; stored in {ms:.0} ms",
                    record.id,
                    record.findings.vcdr,
                    if record.findings.refer { "REFER" } else { "not referred" }
                );
                ExamEvent {
                    id: record.id,
                    source,
                    outcome: Outcome::Completed,
                    vcdr: Some(record.findings.vcdr),
                    refer: record.findings.refer,
                    total_ms: start.elapsed().as_secs_f64() * 1e3,
                }
            }
            Err(e) => {
                self.record_failure(source, Outcome::Failed(format!("not stored: {}", chain(&e))))
            }
        }
    }
}

fn model_name(engine: &Engine) -> String {
    let m = engine.manifest();
    format!("{} {}", m.name, m.version)
}
