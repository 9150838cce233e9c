//! libFuzzer harness for [`worldfleet_fuzz::codec`] (built by `cargo fuzz`, see the crate README).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| worldfleet_fuzz::codec(data));
