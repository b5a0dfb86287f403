//! Any Linux board: the kernel GPIO character device (`/dev/gpiochipN`) through
//! linux-embedded-hal's `CdevPin` (feature `cdev`). On a Pi 5 the header is `gpiochip4` on
//! kernels before 6.6.45 and `gpiochip0` after.

use std::time::Duration;

use linux_embedded_hal::CdevPin;
use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};

use super::{Button, Leds};
use crate::config::GpioConfig;

const CONSUMER: &str = "papilla-device";

/// Opens the configured lines of `cfg.chip`. Errors name the chip and line.
pub fn open(cfg: &GpioConfig) -> Result<(Button<CdevPin>, Leds<CdevPin>), String> {
    let mut chip = Chip::new(&cfg.chip).map_err(|e| format!("{}: {e}", cfg.chip))?;
    let mut line = |n: u8, flags: LineRequestFlags, default: u8| {
        let l = chip.get_line(u32::from(n)).map_err(|e| format!("{} line {n}: {e}", cfg.chip))?;
        let h = l.request(flags, default, CONSUMER).map_err(|e| format!("line {n}: {e}"))?;
        CdevPin::new(h).map_err(|e| format!("line {n}: {e}"))
    };
    let trigger = line(cfg.trigger, LineRequestFlags::INPUT, 0)?;
    let off = u8::from(cfg.leds_active_low);
    let mut outs = Vec::with_capacity(4);
    for n in [cfg.ready, cfg.busy, cfg.refer, cfg.error] {
        outs.push(line(n, LineRequestFlags::OUTPUT, off)?);
    }
    let outs: [CdevPin; 4] = outs.try_into().map_err(|_| "four LED lines".to_owned())?;
    Ok((
        Button::new(trigger, cfg.button_active_low, Duration::from_millis(cfg.debounce_ms)),
        Leds::new(outs, cfg.leds_active_low),
    ))
}
