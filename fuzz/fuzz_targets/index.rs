#![no_main]
// papilla_device::fuzzing::index: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = papilla_device::fuzzing::index(data);
});
