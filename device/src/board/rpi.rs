//! Raspberry Pi GPIO through rppal (feature `rpi`). rppal implements the embedded-hal 1.0
//! digital traits for its pins; it works up to the Pi 5 but is no longer maintained, so the
//! `cdev` backend is the long-term road.

use std::time::Duration;

use rppal::gpio::{Gpio, InputPin, OutputPin};

use super::{Button, Leds};
use crate::config::GpioConfig;

/// Opens the configured pins. Errors name the pin.
pub fn open(cfg: &GpioConfig) -> Result<(Button<InputPin>, Leds<OutputPin>), String> {
    let gpio = Gpio::new().map_err(|e| format!("cannot open the GPIO: {e}"))?;
    let get = |n: u8| gpio.get(n).map_err(|e| format!("GPIO{n}: {e}"));
    let trigger = get(cfg.trigger)?.into_input_pullup();
    let leds = [cfg.ready, cfg.busy, cfg.refer, cfg.error];
    let mut outs = Vec::with_capacity(4);
    for n in leds {
        let mut p = get(n)?.into_output();
        // Leave the lights dark when the service exits.
        p.set_reset_on_drop(true);
        outs.push(p);
    }
    let outs: [OutputPin; 4] = outs.try_into().map_err(|_| "four LED pins".to_owned())?;
    Ok((
        Button::new(trigger, cfg.button_active_low, Duration::from_millis(cfg.debounce_ms)),
        Leds::new(outs, cfg.leds_active_low),
    ))
}
