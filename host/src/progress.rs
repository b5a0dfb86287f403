//! What a long command reports while it works. Library code only emits [`Event`]s; the binary
//! draws them (`papilla`'s `draw.rs`: a bar on a terminal, plain lines when piped).

/// Which bar an event is about: the command's own, or one nested under it (a training epoch's
/// validation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    Main,
    Nested,
}

/// One thing a command reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event<'a> {
    /// A new phase of `total` steps (0 when not known in advance) replaces the bar's last.
    Begin { bar: Bar, label: &'a str, total: u64 },
    /// `n` more steps done; `status` (loss, rate, ...) is shown beside the bar when given.
    Advance { bar: Bar, n: u64, status: Option<&'a str> },
    /// The phase is over; `summary` stays on screen (one line of the log).
    End { bar: Bar, summary: Option<&'a str> },
    /// A line for the person running the command (a data folder's cleaning report, a warning).
    Note(&'a str),
}

/// Receives a command's events; shared by its worker threads.
pub trait Progress: Sync {
    fn event(&self, event: Event<'_>);

    fn begin(&self, bar: Bar, label: &str, total: u64) {
        self.event(Event::Begin { bar, label, total });
    }
    fn advance(&self, bar: Bar, n: u64) {
        self.event(Event::Advance { bar, n, status: None });
    }
    fn end(&self, bar: Bar, summary: Option<&str>) {
        self.event(Event::End { bar, summary });
    }
    fn note(&self, text: &str) {
        self.event(Event::Note(text));
    }
}

impl<F: Fn(Event<'_>) + Sync> Progress for F {
    fn event(&self, event: Event<'_>) {
        self(event);
    }
}

/// Reports nothing (library callers and tests that do not watch).
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: Event<'_>) {}
}

/// `s` seconds as `1h02m` or `3m05s`, for ETAs.
pub fn fmt_duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_closure_receives_the_events_in_order() {
        let seen = std::sync::Mutex::new(Vec::new());
        let p = |e: Event<'_>| seen.lock().unwrap().push(format!("{e:?}"));
        p.begin(Bar::Main, "load", 2);
        p.advance(Bar::Main, 1);
        p.end(Bar::Main, Some("2 loaded"));
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen[0].contains("\"load\"") && seen[0].contains("total: 2"), "{seen:?}");
        assert!(seen[2].contains("2 loaded"), "{seen:?}");
        assert_eq!(fmt_duration(3725.0), "1h02m");
        assert_eq!(fmt_duration(185.0), "3m05s");
    }
}
