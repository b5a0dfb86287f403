//! Pins for tests and for running the service without hardware: a recording output pin and a
//! button that follows a script on the (manual) clock.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use embedded_hal::digital::{ErrorType, InputPin, OutputPin};

use crate::clock::Clock;

/// Every level set on any of the recorded pins, in order: `(pin name, high)`.
pub type PinLog = Arc<Mutex<Vec<(String, bool)>>>;

/// An output pin that records each level into a shared log.
#[derive(Clone, Debug)]
pub struct RecordingPin {
    name: String,
    log: PinLog,
}

impl RecordingPin {
    pub fn new(name: &str, log: &PinLog) -> Self {
        Self { name: name.to_owned(), log: Arc::clone(log) }
    }
}

impl ErrorType for RecordingPin {
    type Error = Infallible;
}

impl OutputPin for RecordingPin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.log.lock().expect("pin log").push((self.name.clone(), false));
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.log.lock().expect("pin log").push((self.name.clone(), true));
        Ok(())
    }
}

/// A button pressed (pin low, pulled up) during each `(start, length)` window of the clock.
#[derive(Clone, Debug)]
pub struct ScriptedButton<C> {
    clock: C,
    presses: Vec<(Duration, Duration)>,
}

impl<C: Clock> ScriptedButton<C> {
    pub fn new(clock: C, presses: Vec<(Duration, Duration)>) -> Self {
        Self { clock, presses }
    }
}

impl<C> ErrorType for ScriptedButton<C> {
    type Error = Infallible;
}

impl<C: Clock> InputPin for ScriptedButton<C> {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        let now = self.clock.now();
        Ok(!self.presses.iter().any(|&(s, l)| now >= s && now < s + l))
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        self.is_high().map(|h| !h)
    }
}
