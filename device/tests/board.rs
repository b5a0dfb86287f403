//! On a real board only (`#[ignore]`d): lights each LED in turn and waits for one press of the
//! trigger button, with the pins of a device config.
//!
//! ```sh
//! PAPILLA_DEVICE_CONFIG=/etc/papilla/device.toml \
//!   cargo test --release -p papilla-device --features cdev -- --ignored real_board
//! ```

#[cfg(feature = "cdev")]
#[test]
#[ignore = "needs a board wired as in scripts/device.toml"]
fn real_board_leds_light_in_turn_and_the_button_is_seen() {
    use std::time::{Duration, Instant};

    use papilla_device::board::Led;
    use papilla_device::clock::{Clock, SystemClock};

    let path = std::env::var("PAPILLA_DEVICE_CONFIG").expect("set PAPILLA_DEVICE_CONFIG");
    let cfg = papilla_device::config::DeviceConfig::load(std::path::Path::new(&path)).unwrap();
    let (mut button, mut leds) = papilla_device::board::cdev::open(&cfg.gpio).unwrap();
    for led in Led::ALL {
        eprintln!("{led:?} on");
        leds.show(&[led]);
        std::thread::sleep(Duration::from_millis(400));
    }
    leds.show(&[Led::Ready]);
    eprintln!("press the trigger button within 10 s");
    let clock = SystemClock::default();
    let start = Instant::now();
    let mut pressed = false;
    while start.elapsed() < Duration::from_secs(10) && !pressed {
        pressed = button.poll(clock.now()).unwrap();
        clock.sleep(Duration::from_millis(5));
    }
    leds.all_off();
    assert!(pressed, "no press seen on GPIO{}", cfg.gpio.trigger);
}
