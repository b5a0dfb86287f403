//! The camera's buttons and lights, over `embedded_hal::digital` 1.0 pins so the service runs
//! the same with mock pins in tests, rppal on a Raspberry Pi (feature `rpi`) or the kernel GPIO
//! character device on any Linux board (feature `cdev`).
//!
//! Wiring (BCM numbers in the config; header pins for the 40-pin header of every Pi since the
//! B+): trigger button GPIO17 (pin 11) to ground, LEDs through 330 Ω to ground from GPIO5
//! (pin 29) ready, GPIO6 (pin 31) busy, GPIO13 (pin 33) refer, GPIO19 (pin 35) error.

#[cfg(feature = "cdev")]
pub mod cdev;
pub mod mock;
#[cfg(feature = "rpi")]
pub mod rpi;

use std::convert::Infallible;
use std::time::Duration;

use embedded_hal::digital::{ErrorType, InputPin, OutputPin};
use tracing::warn;

/// One of the four indicator lights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Led {
    /// Waiting for the trigger.
    Ready,
    /// An exam is running.
    Busy,
    /// The last exam's vCDR reached the referral threshold.
    Refer,
    /// The last exam was refused or failed (the log says why).
    Error,
}

impl Led {
    pub const ALL: [Led; 4] = [Led::Ready, Led::Busy, Led::Refer, Led::Error];
}

/// A pin that is not wired: setting it does nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPin;

impl ErrorType for NoPin {
    type Error = Infallible;
}
impl OutputPin for NoPin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}
impl InputPin for NoPin {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(false)
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(true)
    }
}

/// The four lights. A light whose pin fails is logged and skipped: an indicator fault must not
/// stop exams.
#[derive(Debug)]
pub struct Leds<O> {
    pins: [O; 4],
    active_low: bool,
    state: [bool; 4],
}

impl<O: OutputPin> Leds<O> {
    /// Pins in the order ready, busy, refer, error.
    pub fn new(pins: [O; 4], active_low: bool) -> Self {
        let mut leds = Self { pins, active_low, state: [true; 4] };
        leds.all_off();
        leds
    }

    pub fn set(&mut self, led: Led, on: bool) {
        let i = led as usize;
        let high = on != self.active_low;
        let pin = &mut self.pins[i];
        let r = if high { pin.set_high() } else { pin.set_low() };
        match r {
            Ok(()) => self.state[i] = on,
            Err(e) => {
                warn!(?led, error = ?embedded_hal::digital::Error::kind(&e), "LED pin failed")
            }
        }
    }

    /// Lights exactly the given LEDs.
    pub fn show(&mut self, on: &[Led]) {
        for led in Led::ALL {
            self.set(led, on.contains(&led));
        }
    }

    pub fn all_off(&mut self) {
        self.show(&[]);
    }

    pub fn is_on(&self, led: Led) -> bool {
        self.state[led as usize]
    }
}

/// A push button read through a pin, debounced: a press counts once the level has stayed
/// pressed for `debounce`, and the next press needs a release first.
#[derive(Debug)]
pub struct Button<I> {
    pin: I,
    active_low: bool,
    debounce: Duration,
    /// When the raw level last changed, and to what.
    raw: Option<(bool, Duration)>,
    /// The debounced level.
    pressed: bool,
}

impl<I: InputPin> Button<I> {
    pub fn new(pin: I, active_low: bool, debounce: Duration) -> Self {
        Self { pin, active_low, debounce, raw: None, pressed: false }
    }

    /// Samples the pin at `now`; true exactly once per debounced press.
    pub fn poll(&mut self, now: Duration) -> Result<bool, <I as ErrorType>::Error> {
        let level = self.pin.is_high()? != self.active_low;
        match self.raw {
            Some((l, _)) if l == level => {}
            _ => self.raw = Some((level, now)),
        }
        let (level, since) = self.raw.expect("set above");
        if level != self.pressed && now.saturating_sub(since) >= self.debounce {
            self.pressed = level;
            return Ok(level);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};

    #[test]
    fn leds_drive_active_low_pins_inverted_and_start_dark() {
        // Active-low: "off" is high. new() turns all four off, then show(Ready) lights one.
        let mk =
            |states: &[State]| Mock::new(&states.iter().map(|s| T::set(*s)).collect::<Vec<_>>());
        let mut ready = mk(&[State::High, State::Low, State::High]);
        let mut busy = mk(&[State::High, State::High, State::High]);
        let mut refer = mk(&[State::High, State::High, State::High]);
        let mut error = mk(&[State::High, State::High, State::High]);
        let mut leds = Leds::new([ready.clone(), busy.clone(), refer.clone(), error.clone()], true);
        leds.show(&[Led::Ready]);
        assert!(leds.is_on(Led::Ready) && !leds.is_on(Led::Busy));
        leds.all_off();
        assert!(!leds.is_on(Led::Ready));
        for m in [&mut ready, &mut busy, &mut refer, &mut error] {
            m.done();
        }
    }

    #[test]
    fn button_ignores_bounces_and_counts_one_press() {
        // Pulled up, pressed = low. Samples every 5 ms: a 10 ms glitch, then a bouncy press held
        // for 60 ms, then release. Debounce 20 ms.
        let levels = [
            1, 1, 0, 0, 1, 1, 1, // glitch of two samples (10 ms): no press
            0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // bounce, then held
            1, 1, 1, 1, 1, 1, // released
        ];
        let tx: Vec<T> =
            levels.iter().map(|&l| T::get(if l == 1 { State::High } else { State::Low })).collect();
        let mut pin = Mock::new(&tx);
        let mut b = Button::new(pin.clone(), true, Duration::from_millis(20));
        let presses: Vec<usize> = (0..levels.len())
            .filter(|&i| b.poll(Duration::from_millis(5 * i as u64)).unwrap())
            .collect();
        // Held low from sample 9 (45 ms); pressed once it has stayed low 20 ms: sample 13.
        assert_eq!(presses, vec![13]);
        pin.done();
    }
}
