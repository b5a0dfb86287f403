#![no_main]
// papilla_device::fuzzing::photo: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = papilla_device::fuzzing::photo(data);
});
