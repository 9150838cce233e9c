//! libFuzzer harness for [`worldfleet_fuzz::uid`] (built by `cargo fuzz`, see the crate README).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| worldfleet_fuzz::uid(data));
