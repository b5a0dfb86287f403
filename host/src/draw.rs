//! Draws the library's progress events on stderr: indicatif bars that update in place on a
//! terminal; plain lines (every tenth of a phase, and its summary) when stderr is piped, a log
//! file or CI, so logs stay readable and stdout (`--json`) is never touched.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use papilla_host::progress::{Bar, Event, Progress};

/// The drawer for this process's stderr.
pub fn stderr() -> Box<dyn Progress> {
    let terminal = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
    if terminal { Box::new(Bars::new()) } else { Box::new(Lines::default()) }
}

fn slot(bar: Bar) -> usize {
    match bar {
        Bar::Main => 0,
        Bar::Nested => 1,
    }
}

/// Bars on a terminal.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<[Option<ProgressBar>; 2]>,
}

impl Bars {
    fn new() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new([None, None]),
        }
    }
}

fn style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "{prefix:>12} [{bar:32}] {pos}/{len} ETA {eta} {msg}"
    } else {
        "{prefix:>12} {spinner} {pos} {msg} ({elapsed})"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress for Bars {
    fn event(&self, event: Event<'_>) {
        let Ok(mut bars) = self.bars.lock() else { return };
        match event {
            Event::Begin { bar, label, total } => {
                // Hidden until the multi-bar owns it: a bar drawn on its own target first
                // leaves that frame behind on the terminal.
                let len = (total > 0).then_some(total);
                let b = ProgressBar::with_draw_target(len, ProgressDrawTarget::hidden());
                let b = match (&bars[0], bar) {
                    (Some(main), Bar::Nested) => self.multi.insert_after(main, b),
                    _ => self.multi.add(b),
                };
                b.set_style(style(total > 0));
                b.set_prefix(label.to_owned());
                if let Some(old) = bars[slot(bar)].replace(b) {
                    old.finish_and_clear();
                }
            }
            Event::Advance { bar, n, status } => {
                if let Some(b) = &bars[slot(bar)] {
                    if let Some(s) = status {
                        b.set_message(s.to_owned());
                    }
                    b.inc(n);
                }
            }
            Event::End { bar, summary } => {
                if let Some(b) = bars[slot(bar)].take() {
                    b.finish_and_clear();
                    self.multi.remove(&b);
                }
                if let Some(s) = summary {
                    let _ = self.multi.println(s);
                }
            }
            Event::Note(text) => {
                let _ = self.multi.println(text);
            }
        }
    }
}

/// Plain lines when stderr is not a terminal.
#[derive(Default)]
struct Lines {
    phases: Mutex<[Phase; 2]>,
}

#[derive(Default)]
struct Phase {
    label: String,
    total: u64,
    done: u64,
    /// The last tenth of the phase printed.
    printed: u64,
}

impl Progress for Lines {
    fn event(&self, event: Event<'_>) {
        let Ok(mut phases) = self.phases.lock() else { return };
        match event {
            Event::Begin { bar, label, total } => {
                phases[slot(bar)] = Phase { label: label.to_owned(), total, done: 0, printed: 0 };
            }
            Event::Advance { bar, n, status } => {
                let p = &mut phases[slot(bar)];
                p.done += n;
                // A nested phase (validation) reports only its summary: ten lines an epoch
                // would bury the epoch's own.
                if bar == Bar::Main && p.total > 0 {
                    let tenth = p.done * 10 / p.total;
                    if tenth > p.printed {
                        p.printed = tenth;
                        let status = status.map(|s| format!(" {s}")).unwrap_or_default();
                        eprintln!("{} [{}/{}]{status}", p.label, p.done, p.total);
                    }
                }
            }
            Event::End { summary, .. } => {
                if let Some(s) = summary {
                    eprintln!("{s}");
                }
            }
            Event::Note(text) => eprintln!("{text}"),
        }
    }
}
